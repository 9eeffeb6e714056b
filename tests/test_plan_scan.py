"""``bastion scan --plan``: the threat model's assessment plan drives the scan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.core.threat import Access, Norm
from bastion.threats.plan import AssessmentPlan, PlanItem, save_plan

from helpers import run

REPO = Path(__file__).resolve().parents[1]


def _item(asset: str, **kw: object) -> PlanItem:
    base: dict[str, object] = dict(
        asset=asset,
        techniques=("AML.T0043.001",),
        attacks=("pgd", "square"),
        access=Access.SCORES,
        norm=Norm.LINF,
        epsilons=(0.1, 0.3),
        query_budget=50,
        samples=20,
    )
    base.update(kw)
    return PlanItem(**base)  # type: ignore[arg-type]


def test_plan_sets_the_scan(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    plan = save_plan(AssessmentPlan(system="demo", items=(_item("digits"),)), tmp_path / "p.json")
    code, _out, err = run(capsys, "scan", "--plan", str(plan), "--out", str(tmp_path / "r"))
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["assessments"][0]["setting"]["attacks"] == ["pgd", "square"]
    assert report["assessments"][0]["setting"]["samples"] == 20
    assert report["assessments"][0]["setting"]["threat"]["epsilons"] == [0.1, 0.3]
    assert report["assessments"][0]["setting"]["threat"]["queries_per_input"] == 50
    square = [
        a
        for p in report["assessments"][0]["details"]["sweep"]
        for a in p["attacks"]
        if a["attack"] == "square"
    ]
    for a in square:
        # at most 50 queries per input, plus the final check of each
        assert a["queries"] <= a["attacked"] * 51


def test_plan_with_several_assets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    items = (_item("front"), _item("back", attacks=("fgsm",), samples=10))
    plan = save_plan(AssessmentPlan(system="two", items=items), tmp_path / "p.yaml")
    code, _out, err = run(capsys, "scan", "--plan", str(plan), "--out", str(tmp_path / "r"))
    assert code == 0, err
    assert (tmp_path / "r" / "front" / "report.json").exists()
    assert (tmp_path / "r" / "back" / "report.json").exists()
    code, _, err = run(
        capsys, "scan", "--plan", str(plan), "--asset", "back", "--out", str(tmp_path / "s")
    )
    assert code == 0, err
    single = json.loads((tmp_path / "s" / "report.json").read_text())
    assert single["assessments"][0]["setting"]["attacks"] == ["fgsm"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--eps", "0.1"], "--plan sets --eps"),
        (["--asset", "nope"], "no assessment for asset 'nope'"),
    ],
)
def test_plan_errors(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    plan = save_plan(AssessmentPlan(system="demo", items=(_item("digits"),)), tmp_path / "p.json")
    code, _, err = run(capsys, "scan", "--plan", str(plan), *extra)
    assert code == 2
    assert message in err


def test_asset_without_plan(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "scan", "--asset", "x")
    assert code == 2
    assert "--plan" in err


def test_threat_model_to_scan_end_to_end(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    system = REPO / "examples" / "threats" / "fraud-scoring-api.yaml"
    code, _, err = run(capsys, "threats", "model", str(system), "--out", str(tmp_path / "tm"))
    assert code == 0, err
    plan = tmp_path / "tm" / "assessment-plan.json"
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        "fraud-mlp",
        "--plan",
        str(plan),
        "--asset",
        "fraud-model",
        "--out",
        str(tmp_path / "r"),
        "--format",
        "json",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    planned = json.loads(plan.read_text())["items"][0]
    assert report["assessments"][0]["setting"]["threat"]["epsilons"] == planned["epsilons"]
    assert set(report["assessments"][0]["setting"]["attacks"]) == set(planned["attacks"])
    assert (
        report["assessments"][0]["details"]["sweep"][-1]["robust_accuracy"]
        < report["assessments"][0]["details"]["clean_accuracy"]["value"]
    )


def test_plan_epsilons_are_shares_of_the_input_range(demo: object) -> None:
    """A plan does not know the data's bounds: its epsilons scale with them when scanned."""
    import dataclasses

    from bastion.assess.plan import scan_plan
    from bastion.core.targets import TorchTarget
    from bastion.core.threat import absolute_epsilons

    model, data = demo  # type: ignore[misc]
    wide = dataclasses.replace(
        data, x_test=data.x_test * 2, x_train=data.x_train * 2, bounds=(0.0, 2.0)
    )
    target = TorchTarget(
        model.model,
        num_classes=10,
        bounds=(0.0, 2.0),
        input_shape=(1, 8, 8),
        preprocess=lambda x: x / 2,
    )
    plan = AssessmentPlan(system="demo", items=(_item("digits", attacks=("fgsm",), samples=10),))
    ((_, result),) = scan_plan(target, wide, plan)
    assert result.threat.epsilons == (0.2, 0.6)
    absolute = _item("digits", attacks=("fgsm",), samples=10, relative=False)
    ((_, result),) = scan_plan(target, wide, AssessmentPlan(system="demo", items=(absolute,)))
    assert result.threat.epsilons == (0.1, 0.3)
    assert absolute_epsilons((0.1,), Norm.L2, (0.0, 2.0), 64) == (1.6,)
