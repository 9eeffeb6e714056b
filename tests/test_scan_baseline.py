"""``bastion scan --baseline``: a gate that fails on a regression beyond noise, never on noise."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest

from bastion.core.threat import Access, Norm
from bastion.threats.plan import AssessmentPlan, PlanItem, save_plan

from helpers import run

SCAN = ["scan", "--eps", "0.1", "--attacks", "fgsm,pgd", "--steps", "5", "--samples", "60"]
#: bit-depth reduction to one bit: small steps no longer move the digits (the "hardened" build)
SQUEEZED = ["--defence", "squeeze:bits=1"]


@pytest.fixture(scope="module")
def baselines(tmp_path_factory: pytest.TempPathFactory, demo: Any) -> dict[str, Path]:
    """The bare demo model's report and the squeezed one's, each scanned once."""
    from bastion.cli.main import main

    root = tmp_path_factory.mktemp("baselines")
    out = {}
    for name, extra in (("bare", []), ("squeezed", SQUEEZED)):
        folder = root / name
        with contextlib.suppress(SystemExit):
            main([*SCAN, *extra, "--format", "json", "--out", str(folder)])
        out[name] = folder / "report.json"
        assert out[name].is_file()
    return out


def _robust(comparison: dict[str, Any]) -> dict[str, Any]:
    return next(
        c
        for c in comparison["changes"]
        if c["name"] == "robust_accuracy" and "access" not in c["at"]
    )


def test_a_dropped_defence_fails_the_gate(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, baselines: dict[str, Path]
) -> None:
    out = tmp_path / "r"
    code, stdout, err = run(
        capsys, *SCAN, "--baseline", str(baselines["squeezed"]), "--out", str(out)
    )
    assert code == 1, err
    old = json.loads(baselines["squeezed"].read_text())["assessments"][0]["metrics"]
    new = json.loads((out / "report.json").read_text())["assessments"][0]["metrics"]
    old_robust, new_robust = (
        next(m for m in ms if m["name"] == "robust_accuracy") for ms in (old, new)
    )
    assert old_robust["value"] > new_robust["value"]
    lines = [ln for ln in stdout.splitlines() if ln.startswith("regressed:")]
    assert len(lines) == 1
    assert f"{old_robust['value']:.1%} -> {new_robust['value']:.1%}" in lines[0]
    assert "Changes beyond noise against the baseline" in stdout
    comparison = json.loads((out / "comparison.json").read_text())
    assert comparison["failed"] is True
    change = _robust(comparison)
    assert change["verdict"] == "regressed" and change["delta_interval"][1] < 0
    assert change["old_count"] == old_robust["count"] and change["new_count"] == new_robust["count"]
    md = (out / "comparison.md").read_text()
    assert "**Regressed**" in md and "robust accuracy at linf eps=0.1" in md


def test_the_same_model_passes_and_an_improvement_passes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, baselines: dict[str, Path]
) -> None:
    # the baseline's folder is accepted as well as its report.json
    code, stdout, err = run(
        capsys, *SCAN, "--baseline", str(baselines["bare"].parent), "--out", str(tmp_path / "a")
    )
    assert code == 0, err
    assert "against the baseline: 0 regressed, 0 improved, 3 unchanged within noise" in stdout
    assert "Changes beyond noise" not in stdout and "regressed:" not in stdout
    same = json.loads((tmp_path / "a" / "comparison.json").read_text())
    assert same["failed"] is False and all(c["delta"] == 0 for c in same["changes"])

    code, stdout, err = run(
        capsys,
        *SCAN,
        *SQUEEZED,
        "--baseline",
        str(baselines["bare"]),
        "--out",
        str(tmp_path / "b"),
    )
    assert code == 0, err
    better = json.loads((tmp_path / "b" / "comparison.json").read_text())
    assert _robust(better)["verdict"] == "improved" and better["failed"] is False
    assert "improved" in stdout


BAD = {
    "missing": (None, "no such file"),
    "not json": ("{oops", "is not JSON"),
    "schema 1.0": (json.dumps({"schema_version": "1.0", "sweep": []}), "schema 1.0"),
    "a list": ("[1, 2]", "not a bastion report"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_baseline_is_one_line_before_any_work(
    case: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text, message = BAD[case]
    path = tmp_path / "old.json"
    if text is not None:
        path.write_text(text)
    code, out, err = run(capsys, *SCAN, "--baseline", str(path), "--out", str(tmp_path / "r"))
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert message in lines[0] and "baseline" in lines[0]
    assert "Traceback" not in out + err
    assert not (tmp_path / "r").exists()


def test_a_plan_of_several_assets_needs_one_chosen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    items = tuple(
        PlanItem(
            asset=name,
            techniques=("AML.T0043.000",),
            attacks=("fgsm",),
            access=Access.WHITE_BOX,
            norm=Norm.LINF,
            epsilons=(0.1,),
            samples=10,
        )
        for name in ("front", "back")
    )
    plan = save_plan(AssessmentPlan(system="two", items=items), tmp_path / "p.json")
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": "2.0", "assessments": []}))
    code, _, err = run(
        capsys, "scan", "--plan", str(plan), "--baseline", str(old), "--out", str(tmp_path / "r")
    )
    assert code == 2 and "--asset" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "front").exists()
