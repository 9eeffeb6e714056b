"""Membership inference: above chance on an overfitted model, at chance on a model that never
saw the members; the label-only attack never needs scores; shadows are cached."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bastion.assess.membership import membership_assessment
from bastion.attacks.inference.roc import auc, roc, tpr_at_fpr
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.core.targets import TorchTarget
from bastion.data import load_dataset
from bastion.defences import DefendedTarget, create_defence
from bastion.zoo.fit import FitSettings, build_model, fit_model

N = 150
RECIPE = FitSettings(arch="mlp", hidden=128, epochs=60, lr=3e-3, batch_size=32)
SHADOW = {"arch": "mlp", "hidden": 128, "epochs": 60, "lr": 3e-3, "batch_size": 32}


def _fit(x: np.ndarray, y: np.ndarray, seed: int) -> TorchTarget:
    model = build_model((64,), 10, RECIPE, seed=seed)
    fit_model(model, torch.from_numpy(x), torch.from_numpy(y), RECIPE, seed=seed)
    return TorchTarget(model, num_classes=10, input_shape=(64,), name="overfit-mlp")


@pytest.fixture(scope="module")
def setup() -> dict[str, Any]:
    """An MLP overfitted on N digits (the members), N held-out digits, adversary data, and
    a second model trained on other digits only."""
    data = load_dataset("digits")
    order = np.random.default_rng(0).permutation(len(data.x_train))
    x, y = data.x_train.reshape(-1, 64)[order], data.y_train[order]
    member = np.r_[np.ones(N, dtype=bool), np.zeros(N, dtype=bool)]
    return {
        "target": _fit(x[:N], y[:N], seed=1),
        "independent": _fit(x[2 * N : 3 * N], y[2 * N : 3 * N], seed=2),
        "x": torch.from_numpy(x[: 2 * N]),
        "y": torch.from_numpy(y[: 2 * N]),
        "member": member,
        "x_aux": torch.from_numpy(x[3 * N : 5 * N]),
        "y_aux": torch.from_numpy(y[3 * N : 5 * N]),
    }


def test_roc_helpers_agree_with_their_definitions() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    positive = np.array([True, True, False, True, False, False])
    assert auc(scores, positive) == pytest.approx(8 / 9)
    fpr, tpr = roc(scores, positive)
    assert fpr[0] == tpr[0] == 0 and fpr[-1] == tpr[-1] == 1
    assert tpr_at_fpr(scores, positive, 0.0) == (2, 3)
    assert tpr_at_fpr(scores, positive, 0.34) == (3, 3)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("loss-threshold", {}),
        ("loss-threshold", {"statistic": "confidence"}),
        ("label-only-membership", {"copies": 8, "noise": 0.1}),
        ("shadow", {"shadows": 2, **SHADOW}),
        ("lira", {"shadows": 6, **SHADOW}),
        ("lira", {"shadows": 4, "online": False, **SHADOW}),
        ("lira", {"shadows": 4, "queries": 3, **SHADOW}),
    ],
    ids=["loss", "confidence", "label-only", "shadow", "lira-online", "lira-offline", "lira-3"],
)
def test_membership_beats_chance_and_not_without_members(
    setup: dict[str, Any], name: str, params: dict[str, Any], tmp_path: Path
) -> None:
    kw = {"x_aux": setup["x_aux"], "y_aux": setup["y_aux"]}
    if name in ("shadow", "lira"):
        params = {**params, "cache_dir": str(tmp_path)}
    target = setup["target"]
    if name == "label-only-membership":
        target = DefendedTarget(target, [create_defence("labels")])
    result = ATTACKS.create(name, **params).run(
        target, setup["x"], setup["y"], setup["member"], **kw
    )
    assert result.auc_ci[0] > 0.5, result.auc
    assert result.queries >= 2 * N * params.get("queries", 1)
    # the same attack against a model that never saw the candidates is at chance
    other = setup["independent"]
    if name == "label-only-membership":
        other = DefendedTarget(other, [create_defence("labels")])
    null = ATTACKS.create(name, **params).run(other, setup["x"], setup["y"], setup["member"], **kw)
    assert 0.4 < null.auc < 0.6, null.auc
    assert result.auc > null.auc + 0.05


def test_lira_caches_its_shadows(setup: dict[str, Any], tmp_path: Path) -> None:
    attack = ATTACKS.create("lira", shadows=2, cache_dir=str(tmp_path), **SHADOW)
    first = attack.run(setup["target"], setup["x"], setup["y"], setup["member"])
    files = sorted(tmp_path.glob("shadow-*.npz"))
    assert len(files) == 2
    stamps = [f.stat().st_mtime_ns for f in files]
    second = attack.run(setup["target"], setup["x"], setup["y"], setup["member"])
    assert np.array_equal(first.scores, second.scores)
    assert [f.stat().st_mtime_ns for f in files] == stamps
    assert second.seconds < first.seconds


def test_lira_trains_shadows_in_processes(setup: dict[str, Any]) -> None:
    quick = {**SHADOW, "epochs": 5}
    serial = ATTACKS.create("lira", shadows=2, **quick).run(
        setup["target"], setup["x"], setup["y"], setup["member"]
    )
    parallel = ATTACKS.create("lira", shadows=2, n_jobs=2, **quick).run(
        setup["target"], setup["x"], setup["y"], setup["member"]
    )
    assert np.allclose(serial.scores, parallel.scores, atol=1e-6)


def test_label_only_membership_reads_labels_only(setup: dict[str, Any]) -> None:
    from bastion.core.errors import AccessError

    labels = DefendedTarget(setup["target"], [create_defence("labels")])
    assert labels.access.value == "label-only"
    with pytest.raises(AccessError):
        ATTACKS.create("loss-threshold").run(labels, setup["x"], setup["y"], setup["member"])


def test_output_hardening_weakens_the_loss_attack(setup: dict[str, Any]) -> None:
    plain = ATTACKS.create("loss-threshold").run(
        setup["target"], setup["x"], setup["y"], setup["member"]
    )
    rounded = DefendedTarget(setup["target"], [create_defence("noise:scale=0.2")])
    hard = ATTACKS.create("loss-threshold").run(rounded, setup["x"], setup["y"], setup["member"])
    assert hard.auc < plain.auc - 0.03


def test_membership_assessment_reports_low_fpr_and_a_log_roc(
    setup: dict[str, Any], tmp_path: Path
) -> None:
    from bastion.core.assessment import Report
    from bastion.report import write_report

    x, y = setup["x"].numpy(), setup["y"].numpy()
    assessment = membership_assessment(
        setup["target"],
        (x[:N], y[:N]),
        (
            np.concatenate([x[N:], setup["x_aux"].numpy()]),
            np.concatenate([y[N:], setup["y_aux"].numpy()]),
        ),
        attacks=["loss-threshold", "lira"],
        attack_params={
            "lira": {"shadows": 2, "n_jobs": 1, "cache_dir": str(tmp_path / "cache"), **SHADOW}
        },
    )
    for name in ("loss-threshold", "lira"):
        assert assessment.metric("auc", attack=name).ci95[0] > 0.5  # type: ignore[index]
        tpr = assessment.metric("tpr", attack=name, fpr=0.01)
        assert tpr.ci95 is not None and tpr.count is not None and tpr.count[1] == N
    (finding,) = assessment.findings
    assert finding.techniques[0] == "AML.T0024.000"
    roc_art = next(a for a in assessment.artifacts if a.kind == "curve")
    assert roc_art.data["log_x"] and roc_art.data["log_y"]
    assert all(min(s["x"]) > 0 for s in roc_art.data["series"])
    write_report(Report([assessment]), tmp_path / "r", ["html", "json", "md", "sarif"])
    assert "Membership inference" in (tmp_path / "r" / "report.html").read_text()


def test_early_stopping_keeps_the_best_epoch_and_leaks_less(setup: dict[str, Any]) -> None:
    x, y, member = setup["x"], setup["y"], setup["member"]
    settings = FitSettings(arch="mlp", hidden=128, epochs=60, lr=3e-3, batch_size=32, patience=3)
    model = build_model((64,), 10, settings, seed=1)
    record: dict[str, Any] = {}
    fit_model(model, x[:N], y[:N], settings, seed=1, record=record)
    assert record["best_epoch"] <= record["epochs"] < 60
    assert record["epochs"] - record["best_epoch"] == 3
    stopped = TorchTarget(model, num_classes=10, input_shape=(64,))
    early = ATTACKS.create("loss-threshold").run(stopped, x, y, member).auc
    full = ATTACKS.create("loss-threshold").run(setup["target"], x, y, member).auc
    assert early < full
    with pytest.raises(ConfigError, match="patience"):
        FitSettings(patience=0).check()
