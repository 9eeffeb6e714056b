"""Likelihood, impact and risk of each catalog technique for one model of a system.

The scoring is deliberately simple and explainable (docs/threat-modeling.md):

* Each *surface* an adversary could use (a public API, the weights, the training data, the
  physical scene, ...) gets an exposure score from 0 (absent) to 5 (wide open), derived from
  the system description, with a sentence saying why.
* A technique needs some surfaces (its catalog ``surfaces``: all required, ``a|b`` meaning
  either). Its **likelihood** (1-5) is that of its weakest requirement, one step lower when
  ATLAS has only seen it demonstrated and two when only shown feasible; 0: it does not apply.
* Its **impact** (1-5) is the worst business impact among the properties it harms; techniques
  that only prepare others (enablers) have impact 2.
* **risk** = likelihood x impact (1-25), banded: critical when the adversary can act at will
  (likelihood 5) and the harm is at least high (impact >= 4); otherwise high >= 12,
  medium >= 6, low below. The critical band is what to act on this week, so it is kept to the
  handful of techniques an adversary can use now to do serious damage.

External Harms (the catalog's ``outcome`` techniques, ``AML.T0048.*``) are not scored here:
they are consequences of the other techniques, and :mod:`bastion.threats.model` reports them
as the system's impact rather than as techniques to mitigate.
"""

from __future__ import annotations

from dataclasses import dataclass

from bastion.catalog import Catalog, Technique
from bastion.threats.system import (
    Cadence,
    Caller,
    DataSource,
    Exposure,
    ModelAsset,
    OutputDetail,
    SystemDescription,
)

__all__ = [
    "CRITICAL_IMPACT",
    "CRITICAL_LIKELIHOOD",
    "Score",
    "SurfaceScore",
    "band",
    "is_consequence",
    "score_surfaces",
    "score_technique",
]

ENABLER_IMPACT = 2

_EXPOSURE = {
    Exposure.PUBLIC_API: 5,
    Exposure.PARTNER_API: 3,
    Exposure.INTERNAL: 2,
    Exposure.ON_DEVICE: 1,
}
_CALLER_OPENNESS = {
    Caller.ANONYMOUS: 5,
    Caller.REGISTERED: 5,
    Caller.CUSTOMERS: 3,
    Caller.PARTNERS: 2,
    Caller.EMPLOYEES: 1,
}
_OUTPUTS = {OutputDetail.SCORES: 5, OutputDetail.TOP_K: 4, OutputDetail.LABELS: 1}
_SOURCES = {
    DataSource.USER_FEEDBACK: 4,
    DataSource.SCRAPED: 4,
    DataSource.PUBLIC_DATASET: 3,
    DataSource.THIRD_PARTY_LABELERS: 3,
    DataSource.PURCHASED: 2,
    DataSource.PARTNER: 2,
    DataSource.INTERNAL: 1,
}
# Sources outside the organisation's own collection (a supplier or the public can taint them).
_THIRD_PARTY = (
    DataSource.SCRAPED,
    DataSource.PUBLIC_DATASET,
    DataSource.THIRD_PARTY_LABELERS,
    DataSource.PURCHASED,
    DataSource.PARTNER,
)
# What ATLAS has seen decides how likely a technique is beyond the system's exposure: one seen
# in the wild (realized) keeps its exposure, one only shown in demonstrations or red teams is
# a step less likely, one only shown feasible in research two steps. Without this, every
# technique needing an open surface would tie at the top and the critical band would swell.
_MATURITY_SHIFT = {"feasible": -2, "demonstrated": -1, "realized": 0}
_MATURITY_TEXT = {
    "feasible": "ATLAS rates it feasible (research only): two steps less likely",
    "demonstrated": "ATLAS rates it demonstrated (not yet seen in the wild): one step less likely",
}
# The likelihood at which an adversary can act at will, and the impact at which the harm is
# serious: critical needs both.
CRITICAL_LIKELIHOOD = 5
CRITICAL_IMPACT = 4
_CADENCE_SHIFT = {
    Cadence.NEVER: -1,
    Cadence.YEARLY: 0,
    Cadence.QUARTERLY: 0,
    Cadence.MONTHLY: 0,
    Cadence.WEEKLY: 0,
    Cadence.DAILY: 1,
    Cadence.CONTINUOUS: 1,
}


def is_consequence(technique: Technique) -> bool:
    """Whether ``technique`` is a harm that follows from others (External Harms), not an act."""
    return "outcome" in technique.surfaces


def band(likelihood: int, impact: int) -> str:
    """The risk band of a likelihood and an impact (each 1-5).

    Critical is not a risk threshold: a risk of 20 reached by a likely (4) technique with
    critical impact is high, because "critical" means act this week, which is for what an
    adversary can do at will now (likelihood 5) with at least high impact.
    """
    risk = likelihood * impact
    if likelihood >= CRITICAL_LIKELIHOOD and impact >= CRITICAL_IMPACT:
        return "critical"
    if risk >= 12:
        return "high"
    if risk >= 6:
        return "medium"
    return "low"


def _clamp(value: int, low: int = 1, high: int = 5) -> int:
    return max(low, min(high, value))


class RiskScored:
    """Risk = likelihood x impact, and its band; for scored records with those two fields."""

    likelihood: int
    impact: int

    @property
    def risk(self) -> int:
        return self.likelihood * self.impact

    @property
    def band(self) -> str:
        return band(self.likelihood, self.impact)


@dataclass(frozen=True)
class SurfaceScore:
    value: int
    reason: str


def score_surfaces(system: SystemDescription, model: ModelAsset) -> dict[str, SurfaceScore]:
    """How exposed each attack surface of ``model`` is, 0 (absent) to 5, with reasons."""
    out: dict[str, SurfaceScore] = {}
    endpoints = system.endpoints_for(model.id)
    datasets = system.datasets_for(model)
    pipelines = system.pipelines_for(model.id)

    api, api_reason = 0, "no query endpoint serves it"
    for e in endpoints:
        value = _EXPOSURE[e.exposure]
        openness = max(_CALLER_OPENNESS[c] for c in e.callers)
        if openness <= 3 and e.exposure is not Exposure.ON_DEVICE:
            value -= 1 if openness >= 2 else 2
        limit = e.queries_per_caller_per_day
        if limit is not None:
            value -= 2 if limit <= 100 else 1 if limit <= 10_000 else 0
        value = _clamp(value)
        if value > api:
            limit_text = "no rate limit" if limit is None else f"{limit} queries/caller/day"
            callers = ", ".join(c.value for c in e.callers)
            api, api_reason = (
                value,
                (f"endpoint {e.id!r} is {e.exposure.value} for {callers} ({limit_text})"),
            )
    out["api"] = SurfaceScore(api, api_reason)

    on_device = model.weights_location == "device" or any(
        e.exposure is Exposure.ON_DEVICE for e in endpoints
    )
    if on_device and api < 4:
        out["query"] = SurfaceScore(4, "whoever holds a device can query the model at will")
    else:
        out["query"] = out["api"]

    scores = max((_OUTPUTS[e.outputs] for e in endpoints), default=0)
    detail = sorted({e.outputs.value for e in endpoints})
    out["scores"] = SurfaceScore(
        scores, f"endpoints return {', '.join(detail)}" if detail else "no endpoint returns outputs"
    )

    if model.weights_location == "device":
        out["weights"] = SurfaceScore(4, "weights ship on devices and can be extracted")
    elif model.base_model:
        out["weights"] = SurfaceScore(3, f"fine-tuned from public model {model.base_model!r}")
    elif model.architecture_public:
        out["weights"] = SurfaceScore(2, "architecture is public; weights need a leak or insider")
    else:
        out["weights"] = SurfaceScore(1, "weights stay on servers; needs a leak or insider")

    out["physical"] = SurfaceScore(
        5 if model.physical_inputs else 0,
        "inputs come from sensors observing the physical world"
        if model.physical_inputs
        else "no physical-world inputs",
    )
    out["biometric"] = SurfaceScore(
        5 if model.biometric else 0,
        "recognises people, who can be imitated" if model.biometric else "not biometric",
    )

    if datasets:
        best = max(datasets, key=lambda d: max(_SOURCES[s] for s in d.sources))
        src = max(best.sources, key=lambda s: _SOURCES[s])
        value = _clamp(_SOURCES[src] + _CADENCE_SHIFT[model.retraining])
        out["training-data"] = SurfaceScore(
            value,
            f"dataset {best.id!r} takes {src.value} data; retrained {model.retraining.value}",
        )
    else:
        out["training-data"] = SurfaceScore(1, "no training data sources described")
    outside = [(d, s) for d in datasets for s in d.sources if s in _THIRD_PARTY]
    if outside:
        d, s = max(outside, key=lambda x: _SOURCES[x[1]])
        out["third-party-data"] = SurfaceScore(
            _clamp(_SOURCES[s] + _CADENCE_SHIFT[model.retraining]),
            f"dataset {d.id!r} comes from {s.value} sources",
        )
    else:
        out["third-party-data"] = SurfaceScore(0, "all training data is collected in-house")

    personal = model.biometric or any(d.personal_data for d in datasets)
    out["personal-data"] = SurfaceScore(
        5 if personal else 1,
        "training data holds personal data" if personal else "no personal training data declared",
    )

    chain, why = 2, ["ordinary ML dependencies"]
    if model.base_model or any(p.downloads_pretrained for p in pipelines):
        chain, why = chain + 1, [*why, "a public pretrained model"]
    if any(
        s in (DataSource.PUBLIC_DATASET, DataSource.SCRAPED, DataSource.PURCHASED)
        for d in datasets
        for s in d.sources
    ):
        chain, why = chain + 1, [*why, "outside datasets"]
    if pipelines and not any(p.third_party_dependencies for p in pipelines):
        chain, why = chain - 1, ["dependencies vendored and vetted"]
    out["supply-chain"] = SurfaceScore(_clamp(chain), "uses " + ", ".join(why))

    store = {"restricted": 1, "team": 2, "broad": 3}
    artifacts = max((store[p.artifact_store_access] for p in pipelines), default=2)
    levels = sorted({p.artifact_store_access for p in pipelines}) or ["team"]
    reason = f"artifact stores are {'/'.join(levels)}-access"
    if model.weights_location in ("device", "partner"):
        artifacts, reason = artifacts + 1, reason + f"; copies held on {model.weights_location}s"
    out["artifacts"] = SurfaceScore(_clamp(artifacts), reason)

    openness = max((_CALLER_OPENNESS[c] for e in endpoints for c in e.callers), default=1)
    out["accounts"] = SurfaceScore(
        openness, f"most open caller group: openness {openness}/5" if endpoints else "no callers"
    )

    info = 2 + model.architecture_public + bool(model.base_model)
    info += any(e.exposure is Exposure.PUBLIC_API for e in endpoints)
    info += model.weights_location == "device"
    out["public-info"] = SurfaceScore(
        _clamp(info), "published details, public base model, public API or shipped apps"
    )
    return out


@dataclass(frozen=True)
class Score(RiskScored):
    """A technique scored for one model."""

    likelihood: int
    impact: int
    reasons: tuple[str, ...]

    @property
    def applicable(self) -> bool:
        return self.likelihood > 0


def score_technique(
    technique: Technique,
    surfaces: dict[str, SurfaceScore],
    system: SystemDescription,
    model: ModelAsset,
    catalog: Catalog,
) -> Score:
    """Score ``technique`` against the surfaces of ``model``.

    Consequences (``outcome`` techniques) are not scored: ``Score`` 0 with a reason, since they
    follow from other techniques (see :func:`bastion.threats.model.build_threat_model`).
    """
    likelihood = 5
    reasons: list[str] = []
    kinds = technique.prerequisites.data_kinds
    if "any" not in kinds and model.data_kind not in kinds:
        return Score(0, 0, (f"does not apply to {model.data_kind} data",))
    if is_consequence(technique):
        return Score(0, 0, ("a consequence of other techniques, reported as impact",))
    for requirement in technique.surfaces:
        best_value, best_reason = 0, ""
        for alt in requirement.split("|"):
            s = surfaces[alt]
            value, reason = s.value, f"{alt}: {s.reason}"
            if value > best_value:
                best_value, best_reason = value, reason
        likelihood = min(likelihood, best_value)
        if best_reason:
            reasons.append(best_reason)
    if likelihood <= 0:
        return Score(0, 0, tuple(reasons))
    shift = _MATURITY_SHIFT[technique.maturity]
    if shift:
        likelihood = _clamp(likelihood + shift)
        reasons.append(_MATURITY_TEXT[technique.maturity])
    impact_levels = system.impact_for(model)
    if technique.enabler or not technique.harms:
        impact = ENABLER_IMPACT
    else:
        impact = max(impact_levels.of(h.value).score for h in technique.harms)
    return Score(likelihood, impact, tuple(dict.fromkeys(reasons)))
