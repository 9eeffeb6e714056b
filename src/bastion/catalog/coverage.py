"""How much of ATLAS the catalog describes, and how much of it bastion can execute."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from bastion.catalog._catalog import Catalog
from bastion.catalog.frameworks import AtlasFramework
from bastion.core.registry import ATTACKS, DEFENCES

__all__ = ["CoverageReport", "coverage", "registered_attacks", "registered_defences"]


def registered_attacks() -> list[str]:
    """Names of every registered attack."""
    return ATTACKS.names()


def registered_defences() -> list[str]:
    """Names of every registered defence."""
    return DEFENCES.names()


@dataclass(frozen=True)
class TacticCoverage:
    tactic: str
    name: str
    techniques: int
    executable: int
    linked: int


@dataclass(frozen=True)
class CoverageReport:
    """Coverage figures; ``executable_fraction`` is the honest headline number."""

    atlas_version: str | None
    applicable: int
    in_catalog: int
    missing: tuple[str, ...]
    executable: int
    linked: dict[str, tuple[str, ...]]
    unlinked_executable: tuple[str, ...]
    atlas_mitigations: int
    atlas_mitigations_total: int | None
    aidefend_techniques: int
    defended: dict[str, tuple[str, ...]]
    attacks_registered: tuple[str, ...]
    attacks_not_in_catalog: tuple[str, ...]
    by_tactic: tuple[TacticCoverage, ...] = field(default=())

    @property
    def catalog_fraction(self) -> float:
        return self.in_catalog / self.applicable if self.applicable else 0.0

    @property
    def executable_fraction(self) -> float:
        return len(self.linked) / self.executable if self.executable else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "atlas_version": self.atlas_version,
            "applicable_techniques": self.applicable,
            "in_catalog": self.in_catalog,
            "catalog_fraction": round(self.catalog_fraction, 4),
            "missing": list(self.missing),
            "executable_techniques": self.executable,
            "linked_to_registered_attack": len(self.linked),
            "executable_fraction": round(self.executable_fraction, 4),
            "linked": {k: list(v) for k, v in self.linked.items()},
            "unlinked_executable": list(self.unlinked_executable),
            "atlas_mitigations": self.atlas_mitigations,
            "atlas_mitigations_total": self.atlas_mitigations_total,
            "aidefend_techniques": self.aidefend_techniques,
            "mitigations_with_registered_defence": {k: list(v) for k, v in self.defended.items()},
            "attacks_registered": list(self.attacks_registered),
            "attacks_not_in_catalog": list(self.attacks_not_in_catalog),
            "by_tactic": [vars(t) for t in self.by_tactic],
        }


def coverage(
    catalog: Catalog,
    atlas: AtlasFramework | None = None,
    attacks: Iterable[str] | None = None,
    defences: Iterable[str] | None = None,
) -> CoverageReport:
    """Coverage of ``catalog`` against ATLAS and the registered attacks and defences.

    Without ``atlas`` the applicable set is the catalog itself (a framework copy is needed to
    count what is missing). ``attacks``/``defences`` default to the registries.
    """
    attack_names = set(registered_attacks() if attacks is None else attacks)
    defence_names = set(registered_defences() if defences is None else defences)
    excluded = catalog.excluded_ids()
    if atlas is not None:
        applicable = [tid for tid in atlas.techniques if tid not in excluded]
    else:
        applicable = list(catalog.techniques)
    in_catalog = [tid for tid in applicable if tid in catalog.techniques]
    missing = tuple(tid for tid in applicable if tid not in catalog.techniques)
    executable = [t for t in catalog.techniques.values() if t.executable]
    linked = {
        t.id: tuple(a for a in t.attacks if a in attack_names)
        for t in executable
        if any(a in attack_names for a in t.attacks)
    }
    linked_anywhere = {a for t in catalog.techniques.values() for a in t.attacks}
    by_tactic = []
    for tactic in sorted(catalog.tactics.values(), key=lambda t: t.order):
        members = [t for t in catalog.techniques.values() if tactic.id in t.tactics]
        by_tactic.append(
            TacticCoverage(
                tactic=tactic.id,
                name=tactic.name,
                techniques=len(members),
                executable=sum(t.executable for t in members),
                linked=sum(t.id in linked for t in members),
            )
        )
    atlas_mits = [m for m in catalog.mitigations.values() if m.framework == "atlas"]
    return CoverageReport(
        atlas_version=atlas.version if atlas is not None else None,
        applicable=len(applicable),
        in_catalog=len(in_catalog),
        missing=missing,
        executable=len(executable),
        linked=linked,
        unlinked_executable=tuple(t.id for t in executable if t.id not in linked),
        atlas_mitigations=len(atlas_mits),
        atlas_mitigations_total=len(atlas.mitigations) if atlas is not None else None,
        aidefend_techniques=sum(m.framework == "aidefend" for m in catalog.mitigations.values()),
        defended={
            m.id: tuple(d for d in m.defences if d in defence_names)
            for m in catalog.mitigations.values()
            if any(d in defence_names for d in m.defences)
        },
        attacks_registered=tuple(sorted(attack_names)),
        attacks_not_in_catalog=tuple(sorted(attack_names - linked_anywhere)),
        by_tactic=tuple(by_tactic),
    )
