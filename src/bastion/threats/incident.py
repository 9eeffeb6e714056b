"""Incident mapping: from observed signals to candidate techniques and playbook steps."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.catalog import Catalog, load_catalog
from bastion.core.errors import ConfigError
from bastion.threats.model import ThreatModel

__all__ = ["Candidate", "IncidentReport", "ResponseStep", "known_signals", "map_incident"]

_PHASES = ("contain", "evict", "restore")


def known_signals(catalog: Catalog | None = None) -> list[str]:
    """Every signal name the catalog knows."""
    return sorted((catalog or load_catalog(links=False)).signals)


@dataclass(frozen=True)
class Candidate:
    """A technique that would explain some of the observed signals."""

    technique: str
    name: str
    matched: tuple[str, ...]
    coverage: float
    risk: int | None
    playbook: str | None
    enabler: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "name": self.name,
            "matched_signals": list(self.matched),
            "signal_coverage": round(self.coverage, 3),
            "risk": self.risk,
            "playbook": self.playbook,
        }


@dataclass(frozen=True)
class ResponseStep:
    phase: str
    step: str
    controls: tuple[str, ...]
    playbook: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "step": self.step,
            "controls": list(self.controls),
            "playbook": self.playbook,
        }


@dataclass(frozen=True)
class IncidentReport:
    signals: tuple[str, ...]
    candidates: tuple[Candidate, ...]
    steps: tuple[ResponseStep, ...]

    def phase(self, name: str) -> list[ResponseStep]:
        return [s for s in self.steps if s.phase == name]

    def as_dict(self) -> dict[str, Any]:
        return {
            "signals": list(self.signals),
            "candidates": [c.as_dict() for c in self.candidates],
            "playbook": {p: [s.as_dict() for s in self.phase(p)] for p in _PHASES},
        }


def map_incident(
    signals: Sequence[str],
    *,
    catalog: Catalog | None = None,
    threat_model: ThreatModel | None = None,
    top: int = 5,
) -> IncidentReport:
    """Rank techniques by how well they explain ``signals`` and gather their playbook steps.

    A technique scores by the number of observed signals it explains, then by the share of
    its own signals observed; with a ``threat_model`` only techniques applicable to the system
    count, and risk breaks ties. ``ConfigError`` for an unknown signal name.
    """
    catalog = catalog or load_catalog()
    wanted = tuple(dict.fromkeys(s.strip() for s in signals if s.strip()))
    if not wanted:
        raise ConfigError("give at least one signal; known: " + ", ".join(known_signals(catalog)))
    unknown = [s for s in wanted if s not in catalog.signals]
    if unknown:
        raise ConfigError(
            f"unknown signal(s) {', '.join(unknown)}; known: {', '.join(known_signals(catalog))}"
        )
    risks: dict[str, int] | None = None
    if threat_model is not None:
        risks = {t.technique: t.risk for t in threat_model.techniques}
    found = []
    for tech in catalog.techniques.values():
        matched = tuple(s for s in wanted if s in tech.signals)
        if not matched or (risks is not None and tech.id not in risks):
            continue
        found.append(
            Candidate(
                technique=tech.id,
                name=tech.name,
                matched=matched,
                coverage=len(matched) / len(tech.signals),
                risk=None if risks is None else risks[tech.id],
                playbook=tech.playbook,
                enabler=tech.enabler,
            )
        )
    found.sort(key=lambda c: (-len(c.matched), -(c.risk or 0), c.enabler, -c.coverage, c.technique))
    chosen = tuple(found[:top])
    steps: list[ResponseStep] = []
    books = list(dict.fromkeys(c.playbook for c in chosen if c.playbook))
    for phase in _PHASES:
        seen: set[str] = set()
        for book_id in books:
            book = catalog.playbooks[book_id]
            for item in getattr(book, phase):
                if item.step not in seen:
                    seen.add(item.step)
                    steps.append(ResponseStep(phase, item.step, item.controls, book_id))
    return IncidentReport(wanted, chosen, tuple(steps))
