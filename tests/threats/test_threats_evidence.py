"""Scan evidence counts only for the model it measured (schema 1.x and 2.x reports)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.core.errors import ConfigError, DataError
from bastion.threats import SystemDescription, ThreatModel, build_threat_model
from bastion.threats.gaps import (
    ControlSet,
    GapStatus,
    analyse_gaps,
    load_evidence,
    match_evidence,
)

from helpers import one_line_error

runner = CliRunner()
CONTROLS = ControlSet.model_validate(
    {"controls": [{"id": "robust-training", "name": "hardening", "implements": ["AML.M0003"]}]}
)
WHITEBOX = {
    "id": "whitebox",
    "title": "PGD evades the model",
    "severity": "high",
    "techniques": ["AML.T0043.000", "AML.T0015"],
    "summary": "",
    "evidence": {},
    "mitigations": ["AML.M0003"],
    "attacks": ["pgd"],
}


def _report(
    tmp_path: Path,
    name: str,
    *,
    version: str = "1.0",
    target: str | None = None,
    asset: str | None = None,
    with_asset_key: bool = False,
) -> Path:
    data: dict[str, Any] = {
        "schema_version": version,
        "tool": {"name": "bastion", "version": "0.2.0"},
        "target": {"name": target, "kind": "TorchTarget"} if target else {},
        "findings": [WHITEBOX],
    }
    if asset is not None or with_asset_key:
        data["asset"] = asset
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _two_models(fraud_system: SystemDescription) -> ThreatModel:
    data = fraud_system.model_dump(mode="json")
    twin = {**data["assets"]["models"][0], "id": "fraud-model-eu", "artifact": "fraud-eu.onnx"}
    twin["name"] = "EU fraud model"
    data["assets"]["models"].append(twin)
    return build_threat_model(SystemDescription.model_validate(data))


# --- matching -------------------------------------------------------------------------------


def test_schema_2_report_applies_to_its_asset_only(
    fraud_system: SystemDescription, tmp_path: Path
) -> None:
    tm = _two_models(fraud_system)
    report = load_evidence(_report(tmp_path, "r.json", version="2.0", asset="fraud-model-eu"))
    match = match_evidence(tm.system, report)
    assert (match.assets, match.matched_by) == (("fraud-model-eu",), "asset")
    ga = analyse_gaps(tm, CONTROLS, [report])
    assert ga.entry("AML.T0043.000", "fraud-model-eu").status is GapStatus.COVERED_FAILING
    assert ga.entry("AML.T0043.000", "fraud-model").status is GapStatus.COVERED_UNVERIFIED
    assert ga.warnings == ()


def test_schema_1_report_matches_by_target_name(
    fraud_system: SystemDescription, tmp_path: Path
) -> None:
    tm = _two_models(fraud_system)
    by_artifact = load_evidence(_report(tmp_path, "a.json", target="fraud-mlp"))
    by_file = load_evidence(_report(tmp_path, "b.json", target="fraud-eu.onnx"))
    by_id = load_evidence(_report(tmp_path, "c.json", target="fraud-model-eu"))
    assert match_evidence(tm.system, by_artifact).assets == ("fraud-model",)
    assert match_evidence(tm.system, by_file).assets == ("fraud-model-eu",)
    assert match_evidence(tm.system, by_id).assets == ("fraud-model-eu",)
    assert match_evidence(tm.system, by_artifact).matched_by == "target-name"
    # A 2.x report without an asset (scanned without --plan) falls back to its target name.
    unlabelled = load_evidence(
        _report(tmp_path, "d.json", version="2.1", target="fraud-mlp", with_asset_key=True)
    )
    assert match_evidence(tm.system, unlabelled).assets == ("fraud-model",)


def test_a_report_from_another_model_is_not_evidence(
    models: dict[str, ThreatModel], tmp_path: Path
) -> None:
    # The README's mistake: a digits CNN's report given as evidence for the fraud model.
    digits = load_evidence(_report(tmp_path, "digits.json", target="digits-cnn"))
    tm = models["fraud-scoring-api"]
    with pytest.raises(DataError, match="no scan report applies") as info:
        analyse_gaps(tm, CONTROLS, [digits])
    assert "digits.json" in str(info.value)
    assert "digits-cnn" in str(info.value)
    assert "\n" not in str(info.value)
    ga = analyse_gaps(tm, CONTROLS, [digits], allow_unmatched=True)
    assert GapStatus.COVERED_FAILING.value not in {e.status.value for e in ga.entries}
    assert ga.entry("AML.T0043.000").evidence == ()
    (warning,) = ga.warnings
    assert "digits.json" in warning
    assert "'digits-cnn'" in warning
    assert ga.as_dict()["warnings"] == [warning]


def test_unmatched_reports_beside_matched_ones_are_warned_about(
    models: dict[str, ThreatModel], tmp_path: Path
) -> None:
    good = load_evidence(_report(tmp_path, "good.json", target="fraud-mlp"))
    stray = load_evidence(_report(tmp_path, "stray.json", version="2.0", asset="cxr-model"))
    anonymous = load_evidence(_report(tmp_path, "anon.json"))
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, [good, stray, anonymous])
    assert ga.entry("AML.T0043.000").status is GapStatus.COVERED_FAILING
    assert len(ga.warnings) == 2
    assert "stray.json" in ga.warnings[0]
    assert "'cxr-model'" in ga.warnings[0]
    assert "anon.json" in ga.warnings[1]
    assert "--evidence-for" in ga.warnings[1]
    used = {m["report"]: m["assets"] for m in ga.as_dict()["evidence"]}
    assert used[str(tmp_path / "good.json")] == ["fraud-model"]
    assert used[str(tmp_path / "stray.json")] == []


def test_binding_an_unlabelled_report(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    tm = models["fraud-scoring-api"]
    bound = load_evidence(_report(tmp_path, "r.json", target="digits-cnn"), bound_to="fraud-model")
    match = match_evidence(tm.system, bound)
    assert (match.assets, match.matched_by) == (("fraud-model",), "bound")
    assert analyse_gaps(tm, CONTROLS, [bound]).entry("AML.T0043.000").status is (
        GapStatus.COVERED_FAILING
    )
    labelled = _report(tmp_path, "l.json", version="2.0", asset="fraud-model")
    with pytest.raises(ConfigError, match="made for asset 'fraud-model'"):
        load_evidence(labelled, bound_to="other")
    ghost = load_evidence(_report(tmp_path, "g.json"), bound_to="ghost")
    with pytest.raises(ConfigError, match="'ghost', which is not a model"):
        analyse_gaps(tm, CONTROLS, [ghost])


def test_report_schemas_accepted_and_refused(tmp_path: Path) -> None:
    assert load_evidence(_report(tmp_path, "one.json", version="1.3")).asset is None
    # A 1.x report has no asset field: one there is not trusted as a label.
    assert load_evidence(_report(tmp_path, "odd.json", version="1.0", asset="x")).asset is None
    assert load_evidence(_report(tmp_path, "two.json", version="2.0", asset="m")).asset == "m"
    with pytest.raises(DataError, match=r"schema 1\.x or 2\.x"):
        load_evidence(_report(tmp_path, "three.json", version="3.0"))


# --- the command line -----------------------------------------------------------------------


def _gaps(examples_dir: Path, tmp_path: Path, *args: str) -> Any:
    return runner.invoke(
        app,
        [
            "threats",
            "gaps",
            str(examples_dir / "fraud-scoring-api.yaml"),
            "--controls",
            str(examples_dir / "fraud-controls.yaml"),
            "--out",
            str(tmp_path / "gaps"),
            *args,
        ],
    )


def test_cli_refuses_evidence_from_another_model(examples_dir: Path, tmp_path: Path) -> None:
    digits = _report(tmp_path, "digits.json", target="digits-cnn")
    result = _gaps(examples_dir, tmp_path, "--evidence", str(digits))
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "digits.json" in line
    assert "--evidence-for" in line
    assert "--allow-unmatched" in line
    assert not (tmp_path / "gaps" / "gaps.json").exists()


def test_cli_allow_unmatched_warns_and_records(examples_dir: Path, tmp_path: Path) -> None:
    digits = _report(tmp_path, "digits.json", target="digits-cnn")
    result = _gaps(examples_dir, tmp_path, "--evidence", str(digits), "--allow-unmatched")
    assert result.exit_code == 0, result.output
    warnings = [ln for ln in result.stdout.splitlines() if ln.startswith("warning:")]
    assert len(warnings) == 1
    assert "digits.json" in warnings[0]
    assert "not used" in warnings[0]
    data = json.loads((tmp_path / "gaps" / "gaps.json").read_text())
    assert len(data["warnings"]) == 1
    assert "covered-failing" not in {e["status"] for e in data["entries"]}
    assert "warning:" in (tmp_path / "gaps" / "gaps.html").read_text()


@pytest.mark.parametrize("form", ["bare", "explicit"])
def test_cli_evidence_for_binds_a_report(examples_dir: Path, tmp_path: Path, form: str) -> None:
    report = _report(tmp_path, "digits.json", target="digits-cnn")
    args = (
        ["--evidence", str(report), "--evidence-for", "fraud-model"]
        if form == "bare"
        else ["--evidence-for", f"fraud-model={report}"]
    )
    result = _gaps(examples_dir, tmp_path, *args)
    assert result.exit_code == 0, result.output
    assert "warning:" not in result.stdout
    data = json.loads((tmp_path / "gaps" / "gaps.json").read_text())
    assert data["evidence"][0]["matched_by"] == "bound"
    statuses = {(e["technique"], e["status"]) for e in data["entries"]}
    assert ("AML.T0043.000", "covered-failing") in statuses


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--evidence-for", "ghost"], "not a model"),
        (["--evidence-for", "a", "--evidence-for", "b"], "several assets"),
        (["--evidence-for", "fraud-model="], "ASSET=REPORT"),
    ],
)
def test_cli_evidence_for_errors(
    examples_dir: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    report = _report(tmp_path, "r.json")
    result = _gaps(examples_dir, tmp_path, "--evidence", str(report), *args)
    assert result.exit_code != 0
    assert message in one_line_error(result)
