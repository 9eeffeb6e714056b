"""Control gap analysis: which applicable techniques are countered, measured, or open.

Inputs: a threat model, the controls a team declares (``controls.yaml``, validated by
:class:`ControlSet`), and optional scan reports (``report.json``) as measured evidence.
For every applicable technique and model asset the result is one of:

* ``covered-measured``: an implemented control counters it and a scan exercised it and found
  at most low/info severity;
* ``covered-failing``: an implemented control counters it, but a scan found medium or worse,
  so the control does not (yet) do its job;
* ``covered-unverified``: an implemented control counters it, but no scan measured it;
* ``uncovered``: no implemented control counters it.

Evidence counts only for the model it measured. A report applies to an asset when its
``asset`` (schema 2.x: the plan's asset id, set by ``bastion scan --plan``) is that asset's id;
when it has none, when its ``target.name`` is a name the system description gives the model
(its ``artifact``, ``name`` or ``id``); or when the user binds it (``--evidence-for``). Anything
else is unmatched: not used, and said so in ``warnings``, because a digits CNN's findings say
nothing about a fraud model.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.catalog import Catalog, load_catalog
from bastion.core.errors import ConfigError, DataError
from bastion.core.findings import Severity
from bastion.threats._io import load_model_file, read_mapping, validation_message
from bastion.threats.model import AssetTechnique, ThreatModel
from bastion.threats.system import ID_PATTERN, ModelAsset, SystemDescription

__all__ = [
    "Control",
    "ControlSet",
    "EvidenceFinding",
    "EvidenceMatch",
    "EvidenceReport",
    "GapAnalysis",
    "GapEntry",
    "GapStatus",
    "analyse_gaps",
    "load_controls",
    "load_evidence",
    "match_evidence",
]


class GapStatus(str, Enum):
    COVERED_MEASURED = "covered-measured"
    COVERED_FAILING = "covered-failing"
    COVERED_UNVERIFIED = "covered-unverified"
    UNCOVERED = "uncovered"


# How much of a technique's risk is still open, by status (used to order the plan).
_OPEN_SHARE = {
    GapStatus.UNCOVERED: 1.0,
    GapStatus.COVERED_FAILING: 1.0,
    GapStatus.COVERED_UNVERIFIED: 0.5,
    GapStatus.COVERED_MEASURED: 0.1,
}


class Control(BaseModel):
    """A control the team has (or plans), and what it implements."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=ID_PATTERN)
    name: str
    description: str = ""
    implements: tuple[str, ...] = Field(
        default=(), description="catalog mitigation ids (AML.M*, AID-*)"
    )
    techniques: tuple[str, ...] = Field(
        default=(), description="ATLAS technique ids it counters beyond its mitigations"
    )
    assets: tuple[str, ...] | None = Field(
        default=None, description="model asset ids it protects; omit for all"
    )
    status: Literal["implemented", "planned"] = "implemented"
    owner: str = ""


class ControlSet(BaseModel):
    """The controls declared for a system."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["1.0"] = "1.0"
    system: str = ""
    controls: tuple[Control, ...] = ()

    def check(self, catalog: Catalog) -> None:
        """``ConfigError`` for ids the catalog does not know, or repeated control ids."""
        seen: set[str] = set()
        for c in self.controls:
            if c.id in seen:
                raise ConfigError(f"control id {c.id!r} is declared twice")
            seen.add(c.id)
            if not c.implements and not c.techniques:
                raise ConfigError(f"control {c.id!r} names no mitigation and no technique")
            for m in c.implements:
                if m not in catalog.mitigations:
                    raise ConfigError(f"control {c.id!r} implements unknown mitigation {m!r}")
            for t in c.techniques:
                if t not in catalog.techniques:
                    raise ConfigError(f"control {c.id!r} counters unknown technique {t!r}")


def load_controls(path: str | Path, catalog: Catalog | None = None) -> ControlSet:
    """Read and validate ``controls.yaml``; ``ConfigError`` with one line if it is wrong."""
    controls = load_model_file(path, ControlSet, "controls")
    controls.check(catalog or load_catalog())
    return controls


class EvidenceFinding(BaseModel):
    """The part of a scan report finding that gap analysis relies on."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str = ""
    title: str = ""
    severity: Severity
    techniques: tuple[str, ...] = ()
    mitigations: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    evidence: dict[str, Any] = Field(default_factory=dict)


class EvidenceTarget(BaseModel):
    """The part of a report's ``target`` that says which model was scanned."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str | None = None


class EvidenceReport(BaseModel):
    """A scan report (``report.json``), reduced to what gap analysis needs.

    Schema 1.x and 2.x reports share ``findings``; 2.x adds a top-level ``asset`` (the plan's
    asset id when scanned with ``--plan``, else null). ``bound_to`` is an asset the user bound
    the report to (``--evidence-for``), for a report that does not say which asset it measured.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    schema_version: str
    findings: tuple[EvidenceFinding, ...] = ()
    asset: str | None = None
    target: EvidenceTarget = EvidenceTarget()
    source: str = ""
    bound_to: str | None = None


_SCHEMAS = ("1.", "2.")


def load_evidence(path: str | Path, *, bound_to: str | None = None) -> EvidenceReport:
    """Read a scan report; ``DataError`` if it is not a bastion report of schema 1.x or 2.x.

    ``bound_to``: the asset id the user says the report measured (``--evidence-for``);
    ``ConfigError`` when the report itself names another asset.
    """
    raw = read_mapping(path, "scan report")
    version = str(raw.get("schema_version", ""))
    if not version.startswith(_SCHEMAS):
        raise DataError(
            f"{path} is not a bastion scan report of schema 1.x or 2.x "
            f"(schema_version={version or 'missing'})"
        )
    if version.startswith("1."):
        raw = {k: v for k, v in raw.items() if k != "asset"}  # 1.x has no asset field
    if not isinstance(raw.get("target"), dict):
        raw = {**raw, "target": {}}
    try:
        report = EvidenceReport.model_validate({**raw, "source": str(path), "bound_to": bound_to})
    except ValidationError as exc:
        raise DataError(f"invalid scan report {path}: {validation_message(exc)}") from exc
    if bound_to is not None and report.asset not in (None, bound_to):
        raise ConfigError(
            f"scan report {path} was made for asset {report.asset!r}; it cannot be bound to "
            f"{bound_to!r}"
        )
    return report


@dataclass(frozen=True)
class EvidenceMatch:
    """Which assets one report applies to, and why (or why none)."""

    report: str
    assets: tuple[str, ...]
    matched_by: str
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "report": self.report,
            "assets": list(self.assets),
            "matched_by": self.matched_by,
            "reason": self.reason,
        }


def match_evidence(system: SystemDescription, report: EvidenceReport) -> EvidenceMatch:
    """The model assets of ``system`` that ``report`` measured (see the module docstring)."""
    models = {m.id: m for m in system.assets.models}
    if report.asset:
        if report.asset in models:
            return EvidenceMatch(report.source, (report.asset,), "asset", "scanned for the asset")
        return EvidenceMatch(
            report.source,
            (),
            "none",
            f"it was scanned for asset {report.asset!r}, which {system.name!r} does not have "
            f"(models: {', '.join(models)})",
        )
    if report.bound_to is not None:
        if report.bound_to in models:
            return EvidenceMatch(
                report.source, (report.bound_to,), "bound", "bound with --evidence-for"
            )
        raise ConfigError(
            f"--evidence-for names {report.bound_to!r}, which is not a model of {system.name!r} "
            f"(models: {', '.join(models)})"
        )
    name = report.target.name
    if name:
        hits = tuple(m.id for m in models.values() if name in _names(m))
        if hits:
            return EvidenceMatch(report.source, hits, "target-name", f"target {name!r}")
        why = f"its target {name!r} is not the artifact, name or id of a model"
    else:
        why = "it names no asset and no target"
    return EvidenceMatch(
        report.source,
        (),
        "none",
        f"{why} (models of {system.name!r}: {', '.join(models)}); declare the model's "
        "artifact, scan with --plan, or bind it with --evidence-for ASSET",
    )


def _names(model: ModelAsset) -> set[str]:
    """The names a scan report's target may carry for ``model``."""
    return {n for n in (model.id, model.name, model.artifact) if n}


@dataclass(frozen=True)
class GapEntry:
    """The gap status of one technique on one asset, with what to do next."""

    technique: str
    name: str
    asset: str
    risk: int
    band: str
    status: GapStatus
    controls: tuple[str, ...]
    planned: tuple[str, ...]
    evidence: tuple[dict[str, Any], ...]
    recommended: tuple[str, ...]
    attacks: tuple[str, ...]
    action: str

    @property
    def priority(self) -> float:
        return self.risk * _OPEN_SHARE[self.status]

    def as_dict(self) -> dict[str, Any]:
        return {
            "technique": self.technique,
            "name": self.name,
            "asset": self.asset,
            "risk": self.risk,
            "band": self.band,
            "status": self.status.value,
            "priority": round(self.priority, 2),
            "controls": list(self.controls),
            "planned_controls": list(self.planned),
            "evidence": list(self.evidence),
            "recommended": list(self.recommended),
            "attacks": list(self.attacks),
            "action": self.action,
        }


@dataclass(frozen=True)
class GapAnalysis:
    system: str
    entries: tuple[GapEntry, ...]
    reports: tuple[str, ...]
    matches: tuple[EvidenceMatch, ...] = ()

    @property
    def warnings(self) -> tuple[str, ...]:
        """One line per scan report that was not used, naming it and saying why."""
        return tuple(
            f"scan report {m.report} not used: {m.reason}" for m in self.matches if not m.assets
        )

    def entry(self, technique: str, asset: str | None = None) -> GapEntry:
        for e in self.entries:
            if e.technique == technique and (asset is None or e.asset == asset):
                return e
        raise ConfigError(f"technique {technique} is not applicable to the system")

    @property
    def plan(self) -> tuple[GapEntry, ...]:
        """Entries that still need work, most urgent first."""
        todo = [e for e in self.entries if e.status is not GapStatus.COVERED_MEASURED]
        return tuple(sorted(todo, key=lambda e: (-e.priority, e.technique, e.asset)))

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in GapStatus}
        for e in self.entries:
            out[e.status.value] += 1
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema_version": "1.0",
            "system": self.system,
            "evidence_reports": list(self.reports),
            "evidence": [m.as_dict() for m in self.matches],
            "warnings": list(self.warnings),
            "summary": self.counts(),
            "entries": [e.as_dict() for e in self.entries],
            "plan": [
                {
                    "technique": e.technique,
                    "asset": e.asset,
                    "status": e.status.value,
                    "priority": round(e.priority, 2),
                    "action": e.action,
                }
                for e in self.plan
            ],
        }


def _related(catalog: Catalog, technique: str, finding: EvidenceFinding) -> tuple[bool, bool]:
    """(the finding exercised the technique, the finding is about the technique)."""
    about = technique in finding.techniques or any(
        catalog.techniques[t].parent == technique
        for t in finding.techniques
        if t in catalog.techniques
    )
    linked = set(catalog.techniques[technique].attacks)
    return about or bool(linked & set(finding.attacks)), about


def _measure(
    catalog: Catalog, technique: str, reports: list[EvidenceReport]
) -> tuple[Severity | None, list[dict[str, Any]]]:
    """The worst severity scans found for ``technique`` (``None``: never exercised)."""
    worst: Severity | None = None
    records: list[dict[str, Any]] = []
    for report in reports:
        exercised = False
        for f in report.findings:
            ran, about = _related(catalog, technique, f)
            exercised = exercised or ran
            if about:
                records.append(
                    {"report": report.source, "finding": f.id, "severity": f.severity.value}
                )
                if worst is None or f.severity.rank > worst.rank:
                    worst = f.severity
        if exercised and worst is None:
            # The scan ran attacks for this technique and raised nothing about it.
            worst = Severity.INFO
            records.append({"report": report.source, "finding": None, "severity": "none"})
    return worst, records


def analyse_gaps(
    threat_model: ThreatModel,
    controls: ControlSet,
    evidence: list[EvidenceReport] | None = None,
    catalog: Catalog | None = None,
    *,
    allow_unmatched: bool = False,
) -> GapAnalysis:
    """Classify every applicable (technique, asset) of ``threat_model`` against the controls.

    Each report counts only for the assets it measured (:func:`match_evidence`); the others
    are listed in ``warnings``. When reports were given and none applies to any asset, the
    user most likely passed the wrong file, so that is a ``DataError`` unless
    ``allow_unmatched`` (then the analysis goes on as if no evidence had been given).
    """
    catalog = catalog or load_catalog()
    controls.check(catalog)
    reports = list(evidence or [])
    matches = [match_evidence(threat_model.system, r) for r in reports]
    if reports and not any(m.assets for m in matches) and not allow_unmatched:
        first = matches[0]
        more = f" (and {len(matches) - 1} more report(s))" if len(matches) > 1 else ""
        raise DataError(
            f"no scan report applies to {threat_model.system.name!r}: {first.report}: "
            f"{first.reason}{more}; pass --allow-unmatched to go on without it"
        )
    per_asset: dict[str, list[EvidenceReport]] = {}
    for report, match in zip(reports, matches, strict=True):
        for asset in match.assets:
            per_asset.setdefault(asset, []).append(report)
    # Harms (External Harms) are not findings: they follow from the techniques controls act on.
    entries = [
        _entry(catalog, f, controls, per_asset.get(f.asset, [])) for f in threat_model.findings
    ]
    entries.sort(key=lambda e: (-e.risk, e.technique, e.asset))
    return GapAnalysis(
        system=threat_model.system.name,
        entries=tuple(entries),
        reports=tuple(r.source for r in reports),
        matches=tuple(matches),
    )


def _counters(catalog: Catalog, control: Control, technique: str) -> bool:
    lineage = set(catalog.lineage(technique))
    if lineage & set(control.techniques):
        return True
    mits = {m.id for m in catalog.mitigations_for(technique)}
    return bool(mits & set(control.implements))


def _entry(
    catalog: Catalog, f: AssetTechnique, controls: ControlSet, reports: list[EvidenceReport]
) -> GapEntry:
    relevant = [
        c
        for c in controls.controls
        if (c.assets is None or f.asset in c.assets) and _counters(catalog, c, f.technique)
    ]
    active = tuple(c.id for c in relevant if c.status == "implemented")
    planned = tuple(c.id for c in relevant if c.status == "planned")
    worst, records = _measure(catalog, f.technique, reports)
    declared = {m for c in relevant for m in c.implements}
    candidates = [m for m in catalog.mitigations_for(f.technique) if m.id not in declared]
    candidates.sort(key=lambda m: (m.framework != "atlas", m.id))
    recommended = tuple(m.id for m in candidates[:4])
    tech = catalog.techniques[f.technique]
    if not active:
        status = GapStatus.UNCOVERED
        action = "Adopt a control: " + (", ".join(recommended) or "see the catalog")
        if planned:
            action = f"Finish the planned control(s) {', '.join(planned)}; until then: " + action
    elif worst is None:
        status = GapStatus.COVERED_UNVERIFIED
        if f.attacks:
            action = (
                f"Measure {', '.join(active)} with bastion scan (attacks: {', '.join(f.attacks)})"
            )
        elif tech.executable:
            action = (
                f"Measure {', '.join(active)}: bastion has no attack for it yet; test it by hand"
            )
        else:
            action = f"Collect evidence that {', '.join(active)} works (audit, review, drill)"
    elif worst.rank >= Severity.MEDIUM.rank:
        status = GapStatus.COVERED_FAILING
        action = (
            f"Scans still find {worst.value} severity despite {', '.join(active)}: "
            "strengthen the control, then re-scan"
        )
    else:
        status = GapStatus.COVERED_MEASURED
        action = "Re-measure at each release to keep the evidence current"
    return GapEntry(
        technique=f.technique,
        name=f.name,
        asset=f.asset,
        risk=f.risk,
        band=f.band,
        status=status,
        controls=active,
        planned=planned,
        evidence=tuple(records),
        recommended=recommended,
        attacks=f.attacks,
        action=action,
    )
