"""Threat modeling: from a system description to ranked techniques, attack paths, prioritized
mitigations and an assessment plan."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.catalog import Catalog, load_catalog
from bastion.catalog.coverage import registered_attacks
from bastion.core.registry import ATTACKS
from bastion.core.threat import Access, Norm
from bastion.threats.plan import AssessmentPlan, PlanItem
from bastion.threats.scoring import RiskScored, Score, score_surfaces, score_technique
from bastion.threats.system import Exposure, ModelAsset, SystemDescription

__all__ = [
    "AssetTechnique",
    "PathScore",
    "PrioritizedMitigation",
    "ThreatModel",
    "build_threat_model",
]

_BAND_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_SAMPLES = {"critical": 1000, "high": 500, "medium": 200, "low": 100}
# Perturbation sizes worth measuring per data kind, assuming inputs scaled to [0, 1].
_EPSILONS: dict[str, tuple[Norm, tuple[float, ...]]] = {
    "image": (Norm.LINF, (2 / 255, 4 / 255, 8 / 255)),
    "video": (Norm.LINF, (2 / 255, 4 / 255, 8 / 255)),
    "tabular": (Norm.LINF, (0.01, 0.05, 0.1)),
    "timeseries": (Norm.LINF, (0.01, 0.05, 0.1)),
    "audio": (Norm.LINF, (0.001, 0.002, 0.005)),
}
_DEFAULT_BUDGET = 10_000


@dataclass(frozen=True)
class AssetTechnique(RiskScored):
    """One catalog technique scored against one model asset."""

    technique: str
    name: str
    asset: str
    likelihood: int
    impact: int
    reasons: tuple[str, ...]
    tactics: tuple[str, ...]
    harms: tuple[str, ...]
    enabler: bool
    attacks: tuple[str, ...]
    consequence: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "name": self.name,
            "asset": self.asset,
            "tactics": list(self.tactics),
            "harms": list(self.harms),
            "enabler": self.enabler,
            "consequence": self.consequence,
            "likelihood": self.likelihood,
            "impact": self.impact,
            "risk": self.risk,
            "band": self.band,
            "reasons": list(self.reasons),
            "attacks": list(self.attacks),
        }


@dataclass(frozen=True)
class PathScore(RiskScored):
    """An attack path that applies to one model asset."""

    path: str
    name: str
    description: str
    asset: str
    steps: tuple[tuple[str, str, str], ...]  # (technique id, technique name, tactic name)
    likelihood: int
    impact: int

    @property
    def chain(self) -> str:
        return " -> ".join(f"{name} ({tactic})" for _, name, tactic in self.steps)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "description": self.description,
            "asset": self.asset,
            "steps": [{"technique": t, "name": n, "tactic": ta} for t, n, ta in self.steps],
            "likelihood": self.likelihood,
            "impact": self.impact,
            "risk": self.risk,
            "band": self.band,
        }


@dataclass(frozen=True)
class PrioritizedMitigation:
    """A mitigation ranked by the total risk of the applicable techniques it counters."""

    id: str
    name: str
    framework: str
    phase: tuple[str, ...]
    counters: tuple[str, ...]
    score: int
    top_band: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "framework": self.framework,
            "phase": list(self.phase),
            "counters": list(self.counters),
            "score": self.score,
            "top_band": self.top_band,
        }


@dataclass(frozen=True)
class ThreatModel:
    """The result of threat-modeling a system."""

    system: SystemDescription
    findings: tuple[AssetTechnique, ...]
    paths: tuple[PathScore, ...]
    mitigations: tuple[PrioritizedMitigation, ...]
    plan: AssessmentPlan
    surfaces: dict[str, dict[str, tuple[int, str]]] = field(default_factory=dict)

    @property
    def techniques(self) -> tuple[AssetTechnique, ...]:
        """The highest-risk asset for each technique, highest risk first."""
        best: dict[str, AssetTechnique] = {}
        for f in self.findings:
            if f.technique not in best or f.risk > best[f.technique].risk:
                best[f.technique] = f
        return tuple(sorted(best.values(), key=_rank))

    def technique(self, technique_id: str) -> AssetTechnique | None:
        """The worst-case score of ``technique_id`` across assets (``None``: not applicable)."""
        return next((t for t in self.techniques if t.technique == technique_id), None)

    def for_asset(self, asset_id: str) -> list[AssetTechnique]:
        return sorted((f for f in self.findings if f.asset == asset_id), key=_rank)

    def as_dict(self) -> dict[str, Any]:
        counts = {b: 0 for b in _BAND_ORDER}
        for t in self.techniques:
            counts[t.band] += 1
        return {
            "schema_version": "1.0",
            "system": {"name": self.system.name, "description": self.system.description},
            "impact": self.system.impact.model_dump(mode="json"),
            "summary": {"techniques": len(self.techniques), "by_band": counts},
            "techniques": [t.as_dict() for t in self.techniques],
            "findings": [f.as_dict() for f in self.findings],
            "paths": [p.as_dict() for p in self.paths],
            "mitigations": [m.as_dict() for m in self.mitigations],
            "surfaces": {
                asset: {k: {"score": v, "reason": r} for k, (v, r) in s.items()}
                for asset, s in self.surfaces.items()
            },
            "plan": self.plan.model_dump(mode="json"),
        }


def build_threat_model(system: SystemDescription, catalog: Catalog | None = None) -> ThreatModel:
    """Score every catalog technique against every model in ``system`` and derive the rest."""
    catalog = catalog or load_catalog()
    attacks_known = set(registered_attacks())
    findings: list[AssetTechnique] = []
    surfaces_out: dict[str, dict[str, tuple[int, str]]] = {}
    for model in system.assets.models:
        surfaces = score_surfaces(system, model)
        surfaces_out[model.id] = {k: (v.value, v.reason) for k, v in surfaces.items()}
        scored: dict[str, Score] = {}
        outcome_based = []
        for tech in catalog.techniques.values():
            if "outcome" in tech.surfaces:
                outcome_based.append(tech)
                continue
            scored[tech.id] = score_technique(tech, surfaces, system, model, catalog)
        outcome = max(
            (
                s.likelihood
                for tid, s in scored.items()
                if s.applicable and not catalog.techniques[tid].enabler
            ),
            default=0,
        )
        for tech in outcome_based:
            scored[tech.id] = score_technique(tech, surfaces, system, model, catalog, outcome)
        for tid, s in scored.items():
            if not s.applicable:
                continue
            tech = catalog.techniques[tid]
            findings.append(
                AssetTechnique(
                    technique=tid,
                    name=tech.name,
                    asset=model.id,
                    likelihood=s.likelihood,
                    impact=s.impact,
                    reasons=s.reasons,
                    tactics=tech.tactics,
                    harms=tuple(h.value for h in tech.harms),
                    enabler=tech.enabler,
                    attacks=tuple(a for a in tech.attacks if a in attacks_known),
                    consequence="outcome" in tech.surfaces,
                )
            )
    findings.sort(key=lambda f: (*_rank(f), f.asset))
    paths = _score_paths(catalog, findings)
    mitigations = _prioritize(catalog, findings)
    plan = _plan(system, findings)
    return ThreatModel(system, tuple(findings), paths, mitigations, plan, surfaces_out)


def _rank(f: AssetTechnique) -> tuple[int, bool, bool, str]:
    # Highest risk first; at equal risk, direct techniques before enablers and consequences.
    return (-f.risk, f.consequence, f.enabler, f.technique)


def _step_tactic(catalog: Catalog, technique_id: str, last: bool) -> str:
    tactics = catalog.techniques[technique_id].tactics
    if last and "AML.TA0011" in tactics:
        return catalog.tactics["AML.TA0011"].name
    return catalog.tactics[tactics[0]].name if tactics else ""


def _score_paths(catalog: Catalog, findings: list[AssetTechnique]) -> tuple[PathScore, ...]:
    by_asset: dict[str, dict[str, AssetTechnique]] = {}
    for f in findings:
        by_asset.setdefault(f.asset, {})[f.technique] = f
    out = []
    for path in catalog.paths.values():
        for asset, scored in by_asset.items():
            if not all(step in scored for step in path.steps):
                continue
            steps = tuple(
                (s, scored[s].name, _step_tactic(catalog, s, i == len(path.steps) - 1))
                for i, s in enumerate(path.steps)
            )
            out.append(
                PathScore(
                    path=path.id,
                    name=path.name,
                    description=path.description,
                    asset=asset,
                    steps=steps,
                    likelihood=min(scored[s].likelihood for s in path.steps),
                    impact=max(scored[s].impact for s in path.steps),
                )
            )
    out.sort(key=lambda p: (-p.risk, p.path, p.asset))
    return tuple(out)


def _prioritize(
    catalog: Catalog, findings: list[AssetTechnique]
) -> tuple[PrioritizedMitigation, ...]:
    worst: dict[str, AssetTechnique] = {}
    for f in findings:
        if f.technique not in worst or f.risk > worst[f.technique].risk:
            worst[f.technique] = f
    out = []
    for mit in catalog.mitigations.values():
        countered = [worst[t] for t in worst if set(catalog.lineage(t)) & set(mit.techniques)]
        # Score by the direct techniques it stops; enablers and consequences only break ties.
        countered = [c for c in countered if not (c.enabler or c.consequence)] or countered
        if not countered:
            continue
        top = min((c.band for c in countered), key=_BAND_ORDER.__getitem__)
        out.append(
            PrioritizedMitigation(
                id=mit.id,
                name=mit.name,
                framework=mit.framework,
                phase=tuple(p.value for p in mit.phase),
                counters=tuple(c.technique for c in sorted(countered, key=lambda c: -c.risk)),
                score=sum(c.risk for c in countered),
                top_band=top,
            )
        )
    out.sort(key=lambda m: (_BAND_ORDER[m.top_band], -m.score, m.id))
    return tuple(out)


def _adversary_access(system: SystemDescription, model: ModelAsset) -> Access:
    surfaces = score_surfaces(system, model)
    if surfaces["weights"].value >= 4:
        return Access.WHITE_BOX
    if surfaces["scores"].value >= 4:
        return Access.SCORES
    return Access.LABELS


def _plan(system: SystemDescription, findings: list[AssetTechnique]) -> AssessmentPlan:
    items = []
    for model in system.assets.models:
        mine = [f for f in findings if f.asset == model.id and f.attacks]
        if not mine or model.data_kind not in _EPSILONS:
            continue
        norm, epsilons = _EPSILONS[model.data_kind]
        attacks = sorted({a for f in mine for a in f.attacks if ATTACKS.get(a).supports(norm=norm)})
        if not attacks:
            continue
        top = min((f.band for f in mine), key=_BAND_ORDER.__getitem__)
        limits = [
            e.queries_per_caller_per_day
            for e in system.endpoints_for(model.id)
            if e.exposure is not Exposure.ON_DEVICE
        ]
        budget = _DEFAULT_BUDGET
        if limits and all(x is not None for x in limits):
            budget = min(_DEFAULT_BUDGET, max(x for x in limits if x is not None))
        access = _adversary_access(system, model)
        items.append(
            PlanItem(
                asset=model.id,
                techniques=tuple(sorted({f.technique for f in mine})),
                attacks=tuple(attacks),
                access=access,
                norm=norm,
                epsilons=epsilons,
                query_budget=budget,
                samples=_SAMPLES[top],
                priority=top,  # type: ignore[arg-type]
                reason=(
                    f"highest risk among executable techniques is {top}; a real adversary has "
                    f"{access.value} access, white-box attacks bound the worst case"
                ),
            )
        )
    items.sort(key=lambda i: _BAND_ORDER[i.priority])
    return AssessmentPlan(system=system.name, items=tuple(items))
