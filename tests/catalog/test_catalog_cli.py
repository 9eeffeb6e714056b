"""``bastion catalog`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app

from helpers import one_line_error

runner = CliRunner()


def test_list_techniques() -> None:
    result = runner.invoke(app, ["catalog", "list"])
    assert result.exit_code == 0, result.output
    assert "AML.T0043.000" in result.stdout
    assert "techniques" in result.stdout


def test_list_as_json_and_filters() -> None:
    result = runner.invoke(app, ["catalog", "list", "--executable", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data
    assert all(t["executable"] for t in data)
    result = runner.invoke(app, ["catalog", "list", "--tactic", "AML.TA0010", "--json"])
    ids = {t["id"] for t in json.loads(result.stdout)}
    assert {"AML.T0024", "AML.T0024.002", "AML.T0025"} <= ids


@pytest.mark.parametrize("kind", ["mitigations", "tactics", "signals", "paths"])
def test_list_other_kinds(kind: str) -> None:
    result = runner.invoke(app, ["catalog", "list", "--kind", kind])
    assert result.exit_code == 0, result.output


def test_list_unknown_kind_isone_line_error() -> None:
    result = runner.invoke(app, ["catalog", "list", "--kind", "bogus"])
    assert result.exit_code == 2
    assert "unknown kind" in one_line_error(result)


def test_show_technique() -> None:
    result = runner.invoke(app, ["catalog", "show", "AML.T0024.002", "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["name"] == "Extract AI Model"
    assert "AML.M0004" in data["mitigations"]
    result = runner.invoke(app, ["catalog", "show", "AID-H-001"])
    assert result.exit_code == 0
    assert "Adversarial Robustness Training" in result.stdout


def test_show_unknown_isone_line_error() -> None:
    result = runner.invoke(app, ["catalog", "show", "AML.T9999"])
    assert result.exit_code == 2
    assert "AML.T9999" in one_line_error(result)


def test_search() -> None:
    result = runner.invoke(app, ["catalog", "search", "membership"])
    assert result.exit_code == 0
    assert "AML.T0024.000" in result.stdout
    result = runner.invoke(app, ["catalog", "search", "qwertyuiop"])
    assert result.exit_code == 1


def test_coverage_with_atlas(atlas_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "coverage", "--atlas", str(atlas_path), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["in_catalog"] == data["applicable_techniques"]
    assert 0 < data["executable_fraction"] < 1
    result = runner.invoke(app, ["catalog", "coverage"])
    assert result.exit_code == 0
    assert "registered bastion attack" in result.stdout


def test_verify_against_frameworks(atlas_path: Path, aidefend_path: Path) -> None:
    args = ["catalog", "verify", "--atlas", str(atlas_path), "--aidefend", str(aidefend_path)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "OK" in result.stdout


def test_verify_needs_a_framework_and_reports_missing_files(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "verify"])
    assert result.exit_code == 2
    assert "--atlas" in one_line_error(result)
    result = runner.invoke(app, ["catalog", "verify", "--atlas", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "not found" in one_line_error(result)
