"""Threat modeling: from a system description to ranked techniques, attack paths, prioritized
mitigations, the harms that would follow (impact) and an assessment plan.

Harms (ATLAS External Harms, ``AML.T0048.*``) are what the business loses when the ranked
techniques succeed. They are not techniques to mitigate or measure, so they are reported
apart, as :class:`HarmImpact`, and never enter the ranking, the mitigations, the gap analysis
or the assessment plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bastion.catalog import Catalog, Technique, load_catalog
from bastion.catalog.coverage import registered_attacks
from bastion.core.registry import ATTACKS
from bastion.core.threat import Access, Norm
from bastion.threats.plan import AssessmentPlan, PlanItem
from bastion.threats.scoring import (
    RiskScored,
    is_consequence,
    score_surfaces,
    score_technique,
)
from bastion.threats.system import Exposure, Level, ModelAsset, SystemDescription

__all__ = [
    "AssetTechnique",
    "HarmImpact",
    "PathScore",
    "PrioritizedMitigation",
    "ThreatModel",
    "build_threat_model",
]

_BAND_ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_SAMPLES = {"critical": 1000, "high": 500, "medium": 200, "low": 100}
# Perturbation sizes worth measuring per data kind, assuming inputs scaled to [0, 1].
# epsilons as shares of the input range (the plan's ``relative``), turned into input units by
# the data's bounds when the plan is scanned
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

    def as_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "name": self.name,
            "asset": self.asset,
            "tactics": list(self.tactics),
            "harms": list(self.harms),
            "enabler": self.enabler,
            "likelihood": self.likelihood,
            "impact": self.impact,
            "risk": self.risk,
            "band": self.band,
            "reasons": list(self.reasons),
            "attacks": list(self.attacks),
        }


@dataclass(frozen=True)
class HarmImpact:
    """A harm outside the system that would follow, for one model asset, and why.

    ``level`` is the business impact the system description gives the properties through which
    the harm follows; ``likelihood`` that of the likeliest technique leading to it; ``via``
    (and ``via_names``) those techniques, highest risk first.
    """

    harm: str
    name: str
    asset: str
    level: Level
    likelihood: int
    properties: tuple[str, ...]
    via: tuple[str, ...]
    via_names: tuple[str, ...]
    description: str

    @property
    def reason(self) -> str:
        pairs = zip(self.via_names[:3], self.via[:3], strict=True)
        shown = ", ".join(f"{name} ({tid})" for name, tid in pairs)
        more = len(self.via) - 3
        return (
            f"follows from {shown}{f' and {more} more' if more > 0 else ''}, which harm "
            f"{' and '.join(self.properties)}; the system rates that impact {self.level.value}"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "harm": self.harm,
            "name": self.name,
            "asset": self.asset,
            "level": self.level.value,
            "likelihood": self.likelihood,
            "properties": list(self.properties),
            "via": list(self.via),
            "reason": self.reason,
            "description": self.description,
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
    impacts: tuple[HarmImpact, ...] = ()

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
            "summary": {
                "techniques": len(self.techniques),
                "by_band": counts,
                "harms": len({i.harm for i in self.impacts}),
            },
            "techniques": [t.as_dict() for t in self.techniques],
            "findings": [f.as_dict() for f in self.findings],
            "impacts": [i.as_dict() for i in self.impacts],
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
    impacts: list[HarmImpact] = []
    surfaces_out: dict[str, dict[str, tuple[int, str]]] = {}
    harms = [t for t in catalog.techniques.values() if is_consequence(t)]
    for model in system.assets.models:
        surfaces = score_surfaces(system, model)
        surfaces_out[model.id] = {k: (v.value, v.reason) for k, v in surfaces.items()}
        mine: list[AssetTechnique] = []
        for tech in catalog.techniques.values():
            if is_consequence(tech):
                continue
            s = score_technique(tech, surfaces, system, model, catalog)
            if not s.applicable:
                continue
            mine.append(
                AssetTechnique(
                    technique=tech.id,
                    name=tech.name,
                    asset=model.id,
                    likelihood=s.likelihood,
                    impact=s.impact,
                    reasons=s.reasons,
                    tactics=tech.tactics,
                    harms=tuple(h.value for h in tech.harms),
                    enabler=tech.enabler,
                    attacks=tuple(a for a in tech.attacks if a in attacks_known),
                )
            )
        findings.extend(mine)
        impacts.extend(_impacts(catalog, harms, system, model, mine))
    findings.sort(key=lambda f: (*_rank(f), f.asset))
    impacts.sort(key=lambda i: (-i.level.score, -i.likelihood, i.harm, i.asset))
    paths = _score_paths(catalog, findings, impacts)
    mitigations = _prioritize(catalog, findings)
    plan = _plan(system, findings)
    return ThreatModel(
        system, tuple(findings), paths, mitigations, plan, surfaces_out, tuple(impacts)
    )


def _impacts(
    catalog: Catalog,
    harms: list[Technique],
    system: SystemDescription,
    model: ModelAsset,
    findings: list[AssetTechnique],
) -> list[HarmImpact]:
    """The harms that follow for ``model``: each through the properties applicable techniques
    harm. A harm whose own sub-harms are in the catalog is the umbrella of those and is left out
    (the sub-harms say more)."""
    umbrellas = {h.parent for h in harms if h.parent}
    direct = sorted((f for f in findings if not f.enabler and f.harms), key=_rank)
    levels = system.impact_for(model)
    out = []
    for harm in harms:
        if harm.id in umbrellas:
            continue
        props = tuple(h.value for h in harm.harms)
        via = [f for f in direct if set(f.harms) & set(props)]
        if not via:
            continue
        through = tuple(p for p in props if any(p in f.harms for f in via))
        out.append(
            HarmImpact(
                harm=harm.id,
                name=harm.name,
                asset=model.id,
                level=max((levels.of(p) for p in through), key=lambda lv: lv.score),
                likelihood=max(f.likelihood for f in via),
                properties=through,
                via=tuple(f.technique for f in via),
                via_names=tuple(f.name for f in via),
                description=harm.description,
            )
        )
    return out


def _rank(f: AssetTechnique) -> tuple[int, int, bool, str]:
    # Highest risk first; at equal risk, the likelier first (it is the one that can be done
    # now), then direct techniques before enablers.
    return (-f.risk, -f.likelihood, f.enabler, f.technique)


def _step_tactic(catalog: Catalog, technique_id: str, last: bool) -> str:
    tactics = catalog.techniques[technique_id].tactics
    if last and "AML.TA0011" in tactics:
        return catalog.tactics["AML.TA0011"].name
    return catalog.tactics[tactics[0]].name if tactics else ""


def _score_paths(
    catalog: Catalog, findings: list[AssetTechnique], impacts: list[HarmImpact]
) -> tuple[PathScore, ...]:
    """Paths whose every step applies to one asset. A step may be a harm (the path's end): it
    applies when that harm follows for the asset, and it adds its business impact, not a
    likelihood (it is not an act of the adversary)."""
    by_asset: dict[str, dict[str, AssetTechnique]] = {}
    for f in findings:
        by_asset.setdefault(f.asset, {})[f.technique] = f
    harms_by_asset: dict[str, dict[str, HarmImpact]] = {}
    for i in impacts:
        harms_by_asset.setdefault(i.asset, {})[i.harm] = i
    out = []
    for path in catalog.paths.values():
        for asset, scored in by_asset.items():
            harms = harms_by_asset.get(asset, {})
            if not all(step in scored or step in harms for step in path.steps):
                continue
            acts = [scored[s] for s in path.steps if s in scored]
            if not acts:
                continue
            steps = tuple(
                (
                    s,
                    scored[s].name if s in scored else harms[s].name,
                    _step_tactic(catalog, s, i == len(path.steps) - 1),
                )
                for i, s in enumerate(path.steps)
            )
            out.append(
                PathScore(
                    path=path.id,
                    name=path.name,
                    description=path.description,
                    asset=asset,
                    steps=steps,
                    likelihood=min(a.likelihood for a in acts),
                    impact=max(
                        [a.impact for a in acts]
                        + [harms[s].level.score for s in path.steps if s in harms]
                    ),
                )
            )
    out.sort(key=lambda p: (-p.risk, -p.likelihood, p.path, p.asset))
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
        # Score by the direct techniques it stops; enablers only count when nothing else does.
        countered = [c for c in countered if not c.enabler] or countered
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
        attacks = sorted(
            {
                a
                for f in mine
                for a in f.attacks
                if ATTACKS.get(a).family == "evasion" and ATTACKS.get(a).supports(norm=norm)
            }
        )
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
