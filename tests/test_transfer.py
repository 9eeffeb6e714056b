"""The transfer attack: crafted on a surrogate, measured on a victim that gives labels only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

import bastion
from bastion.assess import default_attacks, scan
from bastion.attacks.evasion import TransferAttack
from bastion.core.errors import ConfigError
from bastion.core.targets import SklearnTarget, TorchTarget
from bastion.core.threat import Access, Norm, Threat
from bastion.report.json import load_schema

from helpers import accuracy, run


@pytest.fixture(scope="module")
def mlp(_cache_dir: Any) -> TorchTarget:
    target, _ = bastion.load_demo("digits-mlp", device="cpu")
    assert isinstance(target, TorchTarget)
    return target


@pytest.fixture
def labels_only(logreg: Any) -> SklearnTarget:
    target = SklearnTarget(logreg, num_classes=10, input_shape=(1, 8, 8), output_kind="labels")
    assert target.access is Access.LABELS
    return target


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.5)])
def test_transfer_from_the_mlp_fools_the_cnn_and_a_label_only_logreg(
    norm: str,
    eps: float,
    mlp: TorchTarget,
    cnn: TorchTarget,
    labels_only: SklearnTarget,
    digits: Any,
) -> None:
    x, y = digits[0][:120], digits[1][:120]
    for victim in (cnn, labels_only):
        clean = accuracy(victim, x, y)
        before = victim.queries
        result = TransferAttack(surrogate=mlp, steps=20).run(victim, x, y, eps=eps, norm=norm)
        robust = float((result.predictions == y).float().mean())
        assert clean > 0.9
        assert robust < clean - 0.5, (victim.name, clean, robust)
        # the victim answered only the check of the first craft and the final measurement
        assert result.queries == victim.queries - before <= 2 * len(x)
        assert result.queries_per_sample is not None
        assert int(result.queries_per_sample.max()) == 1


def test_transfer_beats_random_noise_of_the_same_size(
    mlp: TorchTarget, labels_only: SklearnTarget, digits: Any
) -> None:
    x, y = digits[0][:120], digits[1][:120]
    noise = torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(0))) * 0.2
    noisy = accuracy(labels_only, (x + noise).clamp(0, 1), y)
    result = TransferAttack(surrogate=mlp, tries=1).run(labels_only, x, y, eps=0.2)
    assert float((result.predictions == y).float().mean()) < noisy - 0.4


def test_a_surrogate_spec_is_loaded_by_the_target_loaders(
    labels_only: SklearnTarget, digits: Any
) -> None:
    attack = TransferAttack(surrogate="digits-mlp", tries=1)
    result = attack.run(labels_only, digits[0][:40], digits[1][:40], eps=0.2)
    assert result.success.float().mean() > 0.5
    assert attack.get_params()["surrogate"] == "digits-mlp"
    assert attack.resolve(labels_only).name == "digits-mlp"


def test_without_a_surrogate_it_is_a_clear_error(labels_only: SklearnTarget, digits: Any) -> None:
    with pytest.raises(ConfigError, match="transfer needs a surrogate"):
        TransferAttack().run(labels_only, digits[0][:4], digits[1][:4], eps=0.1)
    assert labels_only.queries == 0


def test_a_surrogate_of_another_task_is_refused(labels_only: SklearnTarget, digits: Any) -> None:
    with pytest.raises(ConfigError, match="classes"):
        TransferAttack(surrogate="fraud-mlp").run(
            labels_only, digits[0][:4], digits[1][:4], eps=0.1
        )
    with pytest.raises(ConfigError, match="evasion attack"):
        TransferAttack(surrogate="digits-mlp", attack="transfer").run(
            labels_only, digits[0][:4], digits[1][:4], eps=0.1
        )


def test_scans_run_transfer_only_when_given_a_surrogate(
    labels_only: SklearnTarget, mlp: TorchTarget, demo: Any
) -> None:
    assert "transfer" not in [e.name for e in default_attacks(labels_only, Norm.LINF)]
    given = {"transfer": {"surrogate": mlp}}
    assert "transfer" in [e.name for e in default_attacks(labels_only, Norm.LINF, given)]
    _, data = demo
    result = scan(labels_only, data, Threat(epsilons=(0.2,)), samples=60, attack_params=given)
    assert "transfer" in result.attacks
    assert result.sweep[0].robust_accuracy < result.clean_accuracy - 0.4
    finding = next(f for f in result.findings if "transfer" in f.attacks)
    assert finding.severity.rank >= bastion.Severity.MEDIUM.rank
    assessment = result.to_assessment()
    assert "digits-mlp" in str(assessment.setting["attack_params"]["transfer"]["surrogate"])
    assert finding.techniques[0] == "AML.T0043.002"


def test_scan_with_a_surrogate_adds_the_transfer_attack(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = [
        "scan",
        "--target",
        "digits-logreg",
        "--surrogate",
        "digits-mlp",
        "--out",
        str(tmp_path),
    ]
    code, out, err = run(capsys, *args, "--samples", "40", "--eps", "0.2", "--max-queries", "40")
    assert code == 0, err
    assert "transfer" in out
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(data, load_schema())
    setting = data["assessments"][0]["setting"]
    assert setting["attacks"] == ["transfer", "square"]
    assert "digits-mlp" in setting["attack_params"]["transfer"]["surrogate"]
    transfer = data["assessments"][0]["details"]["sweep"][0]["attacks"][0]
    assert transfer["attack"] == "transfer" and transfer["fooled"] > 0.5 * transfer["attacked"]
    assert "AML.T0043.002" in {t for f in data["findings"] for t in f["techniques"]}


def test_scan_surrogate_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = str(tmp_path / "r")
    cases = [
        (["--surrogate", str(tmp_path / "missing.onnx")], "no such file"),
        (["--surrogate-arch", "pkg.mod:make"], "give one"),
        (["--attacks", "transfer"], "transfer needs a surrogate"),
        (["--target", "digits-logreg", "--surrogate", "fraud-mlp"], "classes"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "scan", *args, "--out", out, "--samples", "8", "--steps", "2")
        assert code == 2, err
        assert message in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
