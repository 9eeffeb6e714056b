"""The threat catalog: ATLAS techniques and mitigations, and AIDEFEND defensive techniques,
described in bastion's own words.

The catalog is the only place where MITRE ATLAS and AIDEFEND ids are spelled out with their
names; attacks, defences and findings refer to entries by id. :func:`load_catalog` gives the
whole catalog; the small functions below are the stable look-ups the rest of bastion uses.
"""

from __future__ import annotations

from bastion.catalog._catalog import Catalog, build_catalog, load_catalog
from bastion.catalog._models import (
    AttackPath,
    Harm,
    Mitigation,
    Phase,
    Playbook,
    PlaybookStep,
    Prerequisites,
    Signal,
    Surface,
    Tactic,
    Technique,
)
from bastion.catalog.coverage import CoverageReport, coverage
from bastion.catalog.frameworks import (
    AidefendFramework,
    AtlasFramework,
    VerifyReport,
    load_aidefend,
    load_atlas,
    verify,
)

__all__ = [
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
]

CatalogEntry = Technique | Mitigation
"""What :func:`get_technique` and :func:`get_mitigation` return: both have id, name, description."""


def techniques() -> dict[str, Technique]:
    """Every technique in the catalog, by ATLAS id."""
    return dict(load_catalog().techniques)


def mitigations() -> dict[str, Mitigation]:
    """Every mitigation (ATLAS ``AML.M*``) and defensive technique (AIDEFEND ``AID-*``), by id."""
    return dict(load_catalog().mitigations)


def get_technique(technique_id: str) -> Technique:
    """The technique with this ATLAS id; ``ConfigError`` if the catalog has none."""
    return load_catalog().technique(technique_id)


def get_mitigation(mitigation_id: str) -> Mitigation:
    """The mitigation with this id; ``ConfigError`` if the catalog has none."""
    return load_catalog().mitigation(mitigation_id)
