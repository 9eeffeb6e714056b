"""Control gap analysis: statuses, evidence handling, validation, rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from bastion.core.errors import ConfigError, DataError
from bastion.threats import ThreatModel
from bastion.threats.gaps import (
    ControlSet,
    GapStatus,
    analyse_gaps,
    load_controls,
    load_evidence,
)
from bastion.threats.render import render_gaps_html, write_gaps
from bastion.threats.schemas import shipped_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "threats"


def _report(
    tmp_path: Path,
    findings: list[dict[str, Any]],
    name: str = "report.json",
    target: str | None = "fraud-mlp",
) -> Path:
    """A scan report in the shape bastion scan writes (schema 1.x: the target names the model;
    fraud-mlp is the fraud model's declared artifact)."""
    data = {
        "schema_version": "1.0",
        "tool": {"name": "bastion", "version": "0.1.0"},
        "target": {"name": target} if target else {},
        "dataset": {},
        "threat": {},
        "clean_accuracy": {},
        "sweep": [],
        "findings": findings,
        "warnings": [],
    }
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _finding(fid: str, severity: str, techniques: list[str], attacks: list[str]) -> dict[str, Any]:
    return {
        "id": fid,
        "title": fid,
        "severity": severity,
        "techniques": techniques,
        "summary": "",
        "evidence": {"robust_accuracy": 0.5},
        "mitigations": ["AML.M0003"],
        "attacks": attacks,
    }


CONTROLS = ControlSet.model_validate(
    {
        "controls": [
            {"id": "robust-training", "name": "Adversarial training", "implements": ["AML.M0003"]},
            {"id": "rate-limit", "name": "Query limits", "implements": ["AML.M0004"]},
            {
                "id": "label-review",
                "name": "Label review",
                "implements": ["AML.M0007"],
                "status": "planned",
            },
        ]
    }
)


def test_one_technique_of_each_status(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    report = _report(
        tmp_path,
        [
            _finding("blackbox", "low", ["AML.T0043.001", "AML.T0015"], ["square"]),
            _finding("whitebox", "high", ["AML.T0043.000", "AML.T0015"], ["pgd"]),
        ],
    )
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, [load_evidence(report)])
    # Hardening declared and the black-box scan found only low severity.
    assert ga.entry("AML.T0043.001").status is GapStatus.COVERED_MEASURED
    # Hardening declared but the white-box scan still found high severity.
    assert ga.entry("AML.T0043.000").status is GapStatus.COVERED_FAILING
    # Query limits declared against extraction, but no scan measured extraction.
    assert ga.entry("AML.T0024.002").status is GapStatus.COVERED_UNVERIFIED
    # Only a planned control counters training-data poisoning.
    poisoning = ga.entry("AML.T0059")
    assert poisoning.status is GapStatus.UNCOVERED
    assert poisoning.planned == ("label-review",)
    assert "planned" in poisoning.action
    assert poisoning.recommended
    failing = ga.entry("AML.T0043.000")
    assert failing.evidence[0]["severity"] == "high"
    assert "high" in failing.action


def test_worst_severity_wins_across_reports(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    good = _report(tmp_path, [_finding("a", "info", ["AML.T0015"], ["pgd"])], "good.json")
    bad = _report(tmp_path, [_finding("b", "critical", ["AML.T0015"], ["pgd"])], "bad.json")
    reports = [load_evidence(good), load_evidence(bad)]
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, reports)
    assert ga.entry("AML.T0015").status is GapStatus.COVERED_FAILING
    assert len(ga.reports) == 2


def test_absent_finding_for_an_exercised_technique_counts_as_measured(
    models: dict[str, ThreatModel], tmp_path: Path
) -> None:
    # The scan ran square (linked to AML.T0015) and reported only on the sub-technique: no
    # finding about AML.T0015 itself means the control held there.
    report = _report(tmp_path, [_finding("bb", "low", ["AML.T0043.001"], ["square"])])
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, [load_evidence(report)])
    entry = ga.entry("AML.T0015")
    assert entry.status is GapStatus.COVERED_MEASURED
    assert entry.evidence[-1]["finding"] is None


def test_without_evidence_nothing_is_measured(models: dict[str, ThreatModel]) -> None:
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS)
    counts = ga.counts()
    assert counts["covered-measured"] == 0
    assert counts["covered-failing"] == 0
    assert counts["covered-unverified"] > 0
    assert counts["uncovered"] > 0
    assert ga.entry("AML.T0015").status is GapStatus.COVERED_UNVERIFIED
    assert "bastion scan" in ga.entry("AML.T0015").action
    assert sum(counts.values()) == len(ga.entries)


def test_consequences_are_not_gap_rows(models: dict[str, ThreatModel]) -> None:
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS)
    assert not [e for e in ga.entries if e.technique.startswith("AML.T0048")]


def test_plan_is_ordered_by_open_risk(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    report = _report(tmp_path, [_finding("bb", "low", ["AML.T0043.001"], ["square"])])
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, [load_evidence(report)])
    priorities = [e.priority for e in ga.plan]
    assert priorities == sorted(priorities, reverse=True)
    assert all(e.status is not GapStatus.COVERED_MEASURED for e in ga.plan)
    assert ga.plan[0].status in (GapStatus.UNCOVERED, GapStatus.COVERED_FAILING)


def test_asset_scoped_controls(models: dict[str, ThreatModel]) -> None:
    scoped = ControlSet.model_validate(
        {
            "controls": [
                {
                    "id": "hardening-elsewhere",
                    "name": "Hardening of another model",
                    "implements": ["AML.M0003"],
                    "assets": ["some-other-model"],
                },
                {"id": "direct", "name": "Explicit", "techniques": ["AML.T0029"]},
            ]
        }
    )
    ga = analyse_gaps(models["fraud-scoring-api"], scoped)
    assert ga.entry("AML.T0015").status is GapStatus.UNCOVERED
    assert ga.entry("AML.T0029").controls == ("direct",)


def test_example_controls_validate(examples_dir: Path) -> None:
    path = examples_dir / "fraud-controls.yaml"
    jsonschema.validate(yaml.safe_load(path.read_text()), shipped_schema("controls"))
    controls = load_controls(path)
    assert {c.id for c in controls.controls} >= {"gateway-rate-limit", "adversarial-training"}


@pytest.mark.parametrize(
    ("controls", "message"),
    [
        ({"controls": [{"id": "x", "name": "x", "implements": ["AML.M9999"]}]}, "AML.M9999"),
        ({"controls": [{"id": "x", "name": "x", "techniques": ["AML.T9999"]}]}, "AML.T9999"),
        ({"controls": [{"id": "x", "name": "x"}]}, "names no mitigation"),
        (
            {
                "controls": [
                    {"id": "x", "name": "x", "implements": ["AML.M0003"]},
                    {"id": "x", "name": "y", "implements": ["AML.M0004"]},
                ]
            },
            "twice",
        ),
        ({"controls": [{"id": "x", "name": "x", "status": "maybe"}]}, "status"),
    ],
)
def test_invalid_controls(tmp_path: Path, controls: dict[str, Any], message: str) -> None:
    path = tmp_path / "controls.yaml"
    path.write_text(yaml.safe_dump(controls))
    with pytest.raises(ConfigError, match=message):
        load_controls(path)


def test_invalid_evidence(tmp_path: Path) -> None:
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema_version": "0.3", "findings": []}))
    with pytest.raises(DataError, match=r"schema 1\.x"):
        load_evidence(old)
    missing = tmp_path / "missing.json"
    missing.write_text(json.dumps({"findings": []}))
    with pytest.raises(DataError, match="missing"):
        load_evidence(missing)
    bad = _report(tmp_path, [{"id": "f", "severity": "apocalyptic", "techniques": []}])
    with pytest.raises(DataError, match="severity"):
        load_evidence(bad)
    with pytest.raises(ConfigError, match="not found"):
        load_evidence(tmp_path / "nope.json")


def test_gap_outputs(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    report = _report(tmp_path, [_finding("wb", "high", ["AML.T0043.000"], ["pgd"])])
    ga = analyse_gaps(models["fraud-scoring-api"], CONTROLS, [load_evidence(report)])
    html = render_gaps_html(ga)
    assert html.startswith("<!DOCTYPE html>")
    for status in ("covered-failing", "covered-unverified", "uncovered"):
        assert f'class="{status}"' in html
    assert "AI Attack Staging" in html  # rows grouped by tactic
    written = write_gaps(ga, tmp_path / "gaps")
    data = json.loads(written["json"].read_text())
    assert data["summary"] == ga.counts()
    assert data["plan"][0]["status"] in ("uncovered", "covered-failing")
    assert {e["status"] for e in data["entries"]} >= {"covered-failing", "uncovered"}
