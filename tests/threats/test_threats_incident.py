"""Incident mapping: signals to candidate techniques and playbook steps."""

from __future__ import annotations

import pytest

from bastion.catalog import load_catalog
from bastion.core.errors import ConfigError
from bastion.threats import ThreatModel
from bastion.threats.incident import known_signals, map_incident

CATALOG = load_catalog()


def test_extraction_signals_point_at_exfiltration_via_the_api() -> None:
    report = map_incident(["query-volume-spike", "synthetic-query-distribution"])
    top = report.candidates[0]
    assert top.technique.startswith("AML.T0024")
    assert set(top.matched) == {"query-volume-spike", "synthetic-query-distribution"}
    assert "AML.T0024.002" in {c.technique for c in report.candidates}
    for phase in ("contain", "evict", "restore"):
        steps = report.phase(phase)
        assert steps, phase
        for step in steps:
            assert all(c in CATALOG.mitigations for c in step.controls)


def test_integrity_signals_point_at_tampering_and_supply_chain() -> None:
    report = map_incident(["manifest-verification-failed", "unexpected-artifact-change"])
    ids = {c.technique for c in report.candidates}
    assert ids & {"AML.T0010", "AML.T0018"}
    books = {s.playbook for s in report.steps}
    assert books & {"supply-chain", "tampering"}


def test_evasion_signals() -> None:
    report = map_incident(["detector-flagged-inputs", "near-duplicate-queries"], top=3)
    assert len(report.candidates) == 3
    assert {c.technique for c in report.candidates} & {"AML.T0015", "AML.T0043", "AML.T0043.001"}
    assert any("robustness" in s.step for s in report.phase("restore"))


def test_candidates_are_ranked_by_signals_explained() -> None:
    report = map_incident(["query-volume-spike", "cost-spike", "resource-exhaustion"], top=10)
    counts = [len(c.matched) for c in report.candidates]
    assert counts == sorted(counts, reverse=True)
    assert report.candidates[0].technique == "AML.T0034"


def test_threat_model_restricts_and_ranks(models: dict[str, ThreatModel]) -> None:
    tm = models["vehicle-perception"]
    report = map_incident(["sensor-disagreement"], threat_model=tm, top=20)
    assert report.candidates
    assert all(c.risk is not None for c in report.candidates)
    applicable = {t.technique for t in tm.techniques}
    assert {c.technique for c in report.candidates} <= applicable
    # The fraud API has no physical inputs: physical-world techniques drop out.
    fraud = map_incident(["sensor-disagreement"], threat_model=models["fraud-scoring-api"], top=20)
    assert "AML.T0041" not in {c.technique for c in fraud.candidates}


def test_unknown_and_empty_signals_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown signal") as info:
        map_incident(["query-volume-spike", "ghost-in-the-machine"])
    assert "ghost-in-the-machine" in str(info.value)
    assert "query-volume-spike" in str(info.value)  # lists the valid names
    with pytest.raises(ConfigError, match="at least one"):
        map_incident([" "])


def test_known_signals_are_the_catalog_signals() -> None:
    assert known_signals() == sorted(CATALOG.signals)
    assert "accuracy-drop" in known_signals()


def test_report_as_dict() -> None:
    data = map_incident(["accuracy-drop"]).as_dict()
    assert data["signals"] == ["accuracy-drop"]
    assert set(data["playbook"]) == {"contain", "evict", "restore"}
    assert data["candidates"][0]["matched_signals"] == ["accuracy-drop"]
