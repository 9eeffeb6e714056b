"""Constrained tabular evasion: every adversarial row is a row the adversary could submit.

The built-in fraud set is continuous, so the stepped, binary and one-hot rules are tested on a
discretized copy of it (made below), with a small MLP trained on that copy.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bastion.assess.constrained import constrained_assessment
from bastion.attacks.evasion import PGD, ConstrainedPGD
from bastion.core.constraints import Constraints
from bastion.core.errors import ConfigError, DataError
from bastion.core.targets import TorchTarget
from bastion.core.threat import Threat
from bastion.data import Dataset, load_dataset
from bastion.zoo.models import MLP, Recipe, train_classifier

from helpers import run

REPO = Path(__file__).resolve().parents[1]
IMMUTABLE = ["account_age_days", "card_age_days", "device_age_days", "email_age_days"]
BINARY = ["foreign", "online", "chip_used", "pin_used"]
MERCHANT = ["merchant_low", "merchant_mid", "merchant_high"]
HOUR_STEP = 1 / 23
CARDS_STEP = 0.25
AMOUNT_EPS = 0.05

RULES = {
    "immutable": IMMUTABLE,
    "one_hot": {"merchant": MERCHANT},
    "features": {
        "hour": {"step": HOUR_STEP},
        "num_cards": {"step": CARDS_STEP, "max": 0.75},
        "amount": {"epsilon": AMOUNT_EPS},
        **{name: {"integer": True} for name in BINARY},
    },
}


def _discretize(data: Dataset) -> Dataset:
    """The fraud set with the hour on 24 levels, the card count on 4, four binary flags, and
    the merchant's risk as a one-hot low/mid/high group (thresholds from the training split)."""
    names = list(data.feature_names)
    col = {n: i for i, n in enumerate(names)}
    ref = data.x_train
    cuts = np.quantile(ref[:, col["merchant_risk"]], [1 / 3, 2 / 3])
    medians = {n: np.median(ref[:, col[n]]) for n in BINARY}

    def make(x: np.ndarray) -> np.ndarray:
        x = x.copy()
        x[:, col["hour"]] = np.round(x[:, col["hour"]] * 23) / 23
        x[:, col["num_cards"]] = np.minimum(np.round(x[:, col["num_cards"]] * 4) / 4, 0.75)
        for n in BINARY:
            x[:, col[n]] = (x[:, col[n]] > medians[n]).astype(np.float32)
        level = (x[:, col["merchant_risk"]] > cuts[0]).astype(int) + (
            x[:, col["merchant_risk"]] > cuts[1]
        ).astype(int)
        keep = [i for i in range(len(names)) if i != col["merchant_risk"]]
        onehot = np.eye(3, dtype=np.float32)[level]
        return np.concatenate([x[:, keep], onehot], axis=1).astype(np.float32)

    columns = [n for n in names if n != "merchant_risk"] + MERCHANT
    return dataclasses.replace(
        data,
        name="fraud-discrete",
        x_train=make(data.x_train),
        x_test=make(data.x_test),
        feature_names=columns,
    ).check()


@pytest.fixture(scope="module")
def fraud() -> tuple[TorchTarget, Dataset]:
    data = _discretize(load_dataset("fraud"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        module = MLP(len(data.feature_names), 2, hidden=32)
    train_classifier(module, data, Recipe("fraud", "mlp", epochs=12))
    target = TorchTarget(module, num_classes=2, input_shape=data.input_shape, name="fraud-small")
    return target, data


def _tensors(data: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)


def _fraud_recall(pred: torch.Tensor, y: torch.Tensor) -> float:
    return float(((pred == 1) & (y == 1)).sum() / (y == 1).sum())


def _assert_valid(
    x_adv: torch.Tensor, x: torch.Tensor, names: list[str], norm: str, eps: float
) -> None:
    """Every constraint, checked here independently of the library's own checker."""
    col = {n: i for i, n in enumerate(names)}
    delta = (x_adv - x).double()
    tol = 1e-6
    assert float(x_adv.min()) >= 0 and float(x_adv.max()) <= 1
    for n in IMMUTABLE:
        assert float(delta[:, col[n]].abs().max()) == 0.0, n
    hour = x_adv[:, col["hour"]].double() / HOUR_STEP
    assert float((hour - hour.round()).abs().max()) < 1e-4
    cards = x_adv[:, col["num_cards"]].double() / CARDS_STEP
    assert float((cards - cards.round()).abs().max()) < 1e-4
    assert float(x_adv[:, col["num_cards"]].max()) <= 0.75 + tol
    for n in BINARY:
        values = x_adv[:, col[n]].double()
        assert bool(((values.abs() < tol) | ((values - 1).abs() < tol)).all()), n
    group = x_adv[:, [col[n] for n in MERCHANT]].double()
    assert bool(((group.abs() < tol) | ((group - 1).abs() < tol)).all())
    assert bool((group.sum(dim=1).round() == 1).all())
    assert float(delta[:, col["amount"]].abs().max()) <= AMOUNT_EPS + tol
    if norm == "linf":
        assert float(delta.abs().max()) <= eps + tol
    else:
        assert float(delta.norm(dim=1).max()) <= eps * (1 + 1e-5) + tol


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.5)])
def test_every_adversarial_row_respects_every_constraint(
    norm: str, eps: float, fraud: tuple[TorchTarget, Dataset]
) -> None:
    target, data = fraud
    x, y = _tensors(data)  # the whole test set
    rules = Constraints.parse(RULES).with_columns(data.feature_names)
    result = ConstrainedPGD(constraints=rules, steps=20).run(target, x, y, eps=eps, norm=norm)
    _assert_valid(result.x_adv, x, data.feature_names, norm, eps)
    resolved = rules.resolve(x.shape[1], target.bounds)
    assert set(resolved.violations(result.x_adv, x, result.threat.norm, eps).values()) == {0}
    col = {n: i for i, n in enumerate(data.feature_names)}
    discrete = [col[n] for n in (*BINARY, *MERCHANT)]
    flipped = int(((result.x_adv - x)[:, discrete].abs() > 0.5).any(dim=1).sum())
    if norm == "linf":
        # an Linf epsilon below the range cannot flip a binary or one-hot feature
        assert flipped == 0
    else:
        # under L2 epsilon 1.5 it can, and the attack does use them
        assert flipped > 50
        stepped = int(((result.x_adv - x)[:, col["hour"]].abs() > 1e-6).sum())
        assert stepped > 50


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.1), ("l2", 1.0)])
def test_the_constrained_attack_still_lowers_fraud_recall(
    norm: str, eps: float, fraud: tuple[TorchTarget, Dataset]
) -> None:
    target, data = fraud
    x, y = _tensors(data)
    clean = _fraud_recall(target.predict(x), y)
    result = ConstrainedPGD(constraints=RULES | {"columns": data.feature_names}, steps=20).run(
        target, x, y, eps=eps, norm=norm
    )
    adversarial = _fraud_recall(result.predictions, y)
    assert clean > 0.3
    assert adversarial < clean / 2, (clean, adversarial)


def test_unconstrained_pgd_breaks_the_constraints_the_checker_catches(
    fraud: tuple[TorchTarget, Dataset],
) -> None:
    target, data = fraud
    x, y = _tensors(data)
    result = PGD(steps=10).run(target, x, y, eps=1.5, norm="l2")
    resolved = Constraints.parse(RULES).with_columns(data.feature_names).resolve(x.shape[1], (0, 1))
    broken = resolved.violations(result.x_adv, x, result.threat.norm, 1.5)
    assert broken["immutable"] > 0 and broken["grid"] > 0 and broken["one_hot"] > 0
    with pytest.raises(AssertionError):
        _assert_valid(result.x_adv, x, data.feature_names, "l2", 1.5)


def test_the_assessment_reports_recall_violations_and_feature_changes(
    fraud: tuple[TorchTarget, Dataset],
) -> None:
    target, data = fraud
    assessment = constrained_assessment(
        target, data, RULES, Threat(epsilons=(0.05, 0.1)), attack_params={"steps": 15}
    )
    assert assessment.family == "constrained-evasion"
    for eps in (0.05, 0.1):
        assert assessment.metric("constraint_violations", epsilon=eps).value == 0
    clean = assessment.metric("recall", **{"class": "fraud"}).value
    after = assessment.metric("recall", **{"class": "fraud", "epsilon": 0.1}).value
    assert after < clean / 2
    table = next(a for a in assessment.artifacts if a.name == "feature-changes-0.1")
    rows = {r[0]: r for r in table.data["rows"]}
    assert set(rows) == set(data.feature_names)
    for n in IMMUTABLE:
        assert rows[n][1] == "immutable" and rows[n][2] == "0.0%"
    assert rows["amount"][1] == "epsilon 0.05" and float(rows["amount"][4]) <= AMOUNT_EPS + 1e-6
    assert rows["hour"][1].startswith("step") and rows["hour"][2] != "0.0%"
    assert not assessment.warnings
    assert assessment.findings[0].severity.value in ("high", "medium")


@pytest.mark.parametrize(
    ("rules", "message"),
    [
        ({"immutable": ["no_such_feature"]}, "unknown feature"),
        ({"one_hot": {"solo": ["foreign"]}}, "at least 2 columns"),
        ({"features": {"amount": {"min": -1.0}}}, "outside the input bounds"),
        ({"features": {"amount": {"min": 0.8, "max": 0.2}}}, "above max"),
        ({"features": {"hour": {"integer": True, "step": 0.1}}}, "integer or step"),
        ({"features": {"hour": {"epsilon": -0.1}}}, "greater than 0"),
        ({"features": {"hour": {"stepp": 0.1}}}, "hour.stepp"),
        ({"one_hot": {"m": MERCHANT}, "immutable": ["merchant_low"]}, "list the group's name"),
        ({"one_hot": {"a": MERCHANT[:2], "b": MERCHANT[1:]}}, "one-hot groups"),
        (["not", "a", "mapping"], "mapping"),
    ],
)
def test_bad_constraints_are_one_line_errors(
    rules: Any, message: str, fraud: tuple[TorchTarget, Dataset]
) -> None:
    _, data = fraud
    with pytest.raises(ConfigError, match=message) as info:
        Constraints.parse(rules).with_columns(data.feature_names).resolve(22, (0.0, 1.0))
    assert "\n" not in str(info.value)


def test_data_that_breaks_its_own_constraints_is_refused(
    fraud: tuple[TorchTarget, Dataset],
) -> None:
    target, data = fraud
    x, y = _tensors(data)
    before = target.queries
    off_grid = RULES | {"features": {"amount": {"step": 0.3}}}
    with pytest.raises(DataError, match="off its grid"):
        ConstrainedPGD(constraints=off_grid | {"columns": data.feature_names}).run(
            target, x[:8], y[:8], eps=0.1
        )
    bad = {"one_hot": {"flags": BINARY}, "columns": data.feature_names}
    with pytest.raises(DataError, match="not one-hot"):
        ConstrainedPGD(constraints=bad).run(target, x[:8], y[:8], eps=0.1)
    # refused before the model answered anything
    assert target.queries == before


def test_constraints_load_from_yaml_and_json(tmp_path: Path) -> None:
    shipped = Constraints.load(REPO / "examples" / "constraints" / "fraud.yaml")
    fraud_names = load_dataset("fraud").feature_names
    resolved = shipped.with_columns(fraud_names).resolve(20, (0.0, 1.0))
    assert "account_age_days" in resolved.describe()["immutable"]
    as_json = tmp_path / "rules.json"
    as_json.write_text(json.dumps(RULES))
    assert Constraints.load(as_json) == Constraints.parse(RULES)
    broken = tmp_path / "broken.yaml"
    broken.write_text("immutable: [a, b\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        Constraints.load(broken)
    with pytest.raises(ConfigError, match="no constraints file"):
        Constraints.load(tmp_path / "missing.yaml")


def test_scan_with_constraints_writes_the_feature_table(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    shipped = str(REPO / "examples" / "constraints" / "fraud.yaml")
    args = ["scan", "--target", "fraud-mlp", "--constraints", shipped, "--out", str(tmp_path)]
    code, out, err = run(capsys, *args, "--samples", "60", "--eps", "0.1", "--steps", "10")
    assert code == 0, err
    data = json.loads((tmp_path / "report.json").read_text())
    scan_part, constrained = data["assessments"]
    assert scan_part["setting"]["attacks"] == ["constrained-pgd"]
    assert constrained["family"] == "constrained-evasion"
    violations = [m for m in constrained["metrics"] if m["name"] == "constraint_violations"]
    assert violations and all(m["value"] == 0 for m in violations)
    table = next(a for a in constrained["artifacts"] if a["kind"] == "table")
    rows = {r[0]: r for r in table["data"]["rows"]}
    assert rows["account_age_days"][1:3] == ["immutable", "0.0%"]
    html = (tmp_path / "report.html").read_text()
    assert "What the adversary changed" in html and "account_age_days" in html
    assert "recall of fraud" in out


def test_scan_constraints_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("immutable: [no_such_feature]\n")
    shipped = str(REPO / "examples" / "constraints" / "fraud.yaml")
    out = str(tmp_path / "r")
    cases = [
        (["--target", "fraud-mlp", "--constraints", str(bad)], "unknown feature"),
        (["--target", "fraud-mlp", "--constraints", str(tmp_path / "no.yaml")], "no constraints"),
        (["--target", "fraud-mlp", "--constraints", shipped, "--attacks", "pgd"], "cannot respect"),
        (["--constraints", shipped], "tabular"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "scan", *args, "--out", out, "--samples", "8", "--steps", "2")
        assert code == 2, err
        assert message in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err
