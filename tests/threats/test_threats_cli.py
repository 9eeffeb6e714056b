"""``bastion threats`` on the command line: good paths and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli import main as cli_main
from bastion.cli.main import app

from helpers import one_line_error

runner = CliRunner()


def test_model_writes_all_outputs(examples_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "tm"
    result = runner.invoke(
        app, ["threats", "model", str(examples_dir / "fraud-scoring-api.yaml"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "AML.T0015" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "assessment-plan.json",
        "navigator-layer.json",
        "threat-model.html",
        "threat-model.json",
        "threat-model.md",
    ]
    layer = json.loads((out / "navigator-layer.json").read_text())
    assert layer["domain"] == "atlas-atlas"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("name: [unclosed\n", "not valid YAML"),
        ("name: x\nassets: {models: []}\n", "invalid system description"),
        ("name: x\nassets:\n  models: [{id: m, data_kind: smell}]\n", "data_kind"),
    ],
)
def test_model_bad_input_is_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "system.yaml"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["threats", "model", str(path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert message in one_line_error(result)
    assert not (tmp_path / "o").exists()


def test_gaps_with_controls_and_evidence(examples_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    report.write_text(
        json.dumps(
            {
                "schema_version": "1.0",
                "target": {"name": "fraud-mlp"},
                "findings": [
                    {
                        "id": "evasion-pgd",
                        "title": "PGD evades the model",
                        "severity": "high",
                        "techniques": ["AML.T0043.000", "AML.T0015"],
                        "summary": "",
                        "evidence": {},
                        "mitigations": ["AML.M0003"],
                        "attacks": ["pgd"],
                    }
                ],
            }
        )
    )
    out = tmp_path / "gaps"
    result = runner.invoke(
        app,
        [
            "threats",
            "gaps",
            str(examples_dir / "fraud-scoring-api.yaml"),
            "--controls",
            str(examples_dir / "fraud-controls.yaml"),
            "--evidence",
            str(report),
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads((out / "gaps.json").read_text())
    statuses = {(e["technique"], e["status"]) for e in data["entries"]}
    assert ("AML.T0043.000", "covered-failing") in statuses
    assert (out / "gaps.html").read_text().startswith("<!DOCTYPE html>")


def test_gaps_bad_inputs(examples_dir: Path, tmp_path: Path) -> None:
    system = str(examples_dir / "fraud-scoring-api.yaml")
    result = runner.invoke(app, ["threats", "gaps", system, "--controls", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2
    assert "controls file not found" in one_line_error(result)
    bad = tmp_path / "report.json"
    bad.write_text('{"findings": []}')
    controls = str(examples_dir / "fraud-controls.yaml")
    result = runner.invoke(
        app, ["threats", "gaps", system, "--controls", controls, "--evidence", str(bad)]
    )
    assert result.exit_code == 2
    assert "scan report" in one_line_error(result)


def test_incident_good_path() -> None:
    result = runner.invoke(
        app, ["threats", "incident", "--signals", "query-volume-spike,synthetic-query-distribution"]
    )
    assert result.exit_code == 0, result.output
    assert "AML.T0024" in result.stdout
    for phase in ("contain", "evict", "restore"):
        assert phase in result.stdout


def test_incident_json_with_system(examples_dir: Path) -> None:
    result = runner.invoke(
        app,
        [
            "threats",
            "incident",
            "-s",
            "accuracy-drop",
            "-s",
            "feedback-flood",
            "--system",
            str(examples_dir / "voice-commands.yaml"),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["signals"] == ["accuracy-drop", "feedback-flood"]
    assert all(c["risk"] is not None for c in data["candidates"])


def test_incident_unknown_signal_is_one_line() -> None:
    result = runner.invoke(app, ["threats", "incident", "--signals", "alien-invasion"])
    assert result.exit_code == 2
    line = one_line_error(result)
    assert "unknown signal" in line
    assert "alien-invasion" in line


def test_incident_help_lists_signals() -> None:
    result = runner.invoke(app, ["threats", "incident", "--help"], env={"COLUMNS": "400"})
    assert result.exit_code == 0
    for name in ("query-volume-spike", "near-duplicate-queries", "manifest-verification-failed"):
        assert name in result.stdout


def test_schema_and_validate(examples_dir: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["threats", "schema", "system"])
    assert result.exit_code == 0
    assert json.loads(result.stdout)["title"] == "bastion system description"
    result = runner.invoke(app, ["threats", "schema", "nonsense"])
    assert result.exit_code == 2
    assert "unknown schema" in one_line_error(result)
    ok = runner.invoke(app, ["threats", "validate", str(examples_dir / "medical-imaging.yaml")])
    assert ok.exit_code == 0
    assert "valid system" in ok.stdout
    controls = str(examples_dir / "fraud-controls.yaml")
    ok = runner.invoke(app, ["threats", "validate", controls, "--kind", "controls"])
    assert ok.exit_code == 0
    bad = runner.invoke(app, ["threats", "validate", controls, "--kind", "system"])
    assert bad.exit_code == 2
    one_line_error(bad)


def test_entry_point_keeps_the_exit_code(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # main() runs the app outside standalone mode; the error code must still reach the shell.
    monkeypatch.setattr(sys, "argv", ["bastion", "threats", "incident", "--signals", "nope"])
    with pytest.raises(SystemExit) as info:
        cli_main.main()
    assert info.value.code == 2
    assert "unknown signal" in capsys.readouterr().err
