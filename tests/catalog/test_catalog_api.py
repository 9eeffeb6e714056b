"""The public API of the catalog and threats packages is what we intend it to be."""

from __future__ import annotations

import bastion.catalog
import bastion.threats


def test_catalog_exports() -> None:
    assert set(bastion.catalog.__all__) == {
        "AidefendFramework",
        "AtlasFramework",
        "AttackPath",
        "Catalog",
        "CatalogEntry",
        "CoverageReport",
        "Harm",
        "Mitigation",
        "Phase",
        "Playbook",
        "PlaybookStep",
        "Prerequisites",
        "Signal",
        "Surface",
        "Tactic",
        "Technique",
        "VerifyReport",
        "build_catalog",
        "coverage",
        "get_mitigation",
        "get_technique",
        "load_aidefend",
        "load_atlas",
        "load_catalog",
        "mitigations",
        "techniques",
        "verify",
    }
    for name in bastion.catalog.__all__:
        assert hasattr(bastion.catalog, name), name


def test_threats_exports() -> None:
    assert set(bastion.threats.__all__) == {
        "AssessmentPlan",
        "AssetTechnique",
        "PathScore",
        "PlanItem",
        "PrioritizedMitigation",
        "SystemDescription",
        "ThreatModel",
        "build_threat_model",
        "load_plan",
        "load_system",
        "save_plan",
    }
    for name in bastion.threats.__all__:
        assert hasattr(bastion.threats, name), name


def test_catalog_surfaces_enum_matches_the_loader() -> None:
    from bastion.catalog import Surface
    from bastion.catalog._catalog import _SURFACES

    assert {s.value for s in Surface} == _SURFACES


def test_search_matches_word_forms() -> None:
    from bastion.catalog import load_catalog

    catalog = load_catalog()
    found = {e.id for e in catalog.search("extraction")}
    assert "AML.T0024.002" in found
    assert {e.id for e in catalog.search("poisoning")} & {"AML.T0020", "AML.T0018.000"}
