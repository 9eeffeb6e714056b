"""The combined report of a campaign: every target x assessment cell in one place.

Each cell's result is the ``assessments`` list of its ``report.json`` (schema 2.0), so the
report is made from stored results alone, in four files:

- ``report.html``: self-contained (no network); the campaign's counts, a model x assessment
  matrix whose cells show their headline figure coloured by the worst finding, charts that
  overlay the targets, then a section per cell;
- ``campaign.json``: versioned, valid against ``schema/campaign-report.schema.json``;
- ``report.sarif``: one SARIF 2.1.0 run, one result per finding of every cell, failed cells as
  tool execution notifications;
- ``report.md``: a pull-request comment, kept under 60,000 characters however large the
  campaign.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError
from bastion.core.files import atomic_write
from bastion.core.findings import Finding, Severity
from bastion.report.base import format_setting, metric_text

if TYPE_CHECKING:
    from bastion.campaign.store import Store

__all__ = [
    "FILES",
    "FORMATS",
    "MARKDOWN_LIMIT",
    "SCHEMA_VERSION",
    "CampaignInfo",
    "CellReport",
    "Headline",
    "campaign_dict",
    "campaign_sarif",
    "cell_reports",
    "headline",
    "load_schema",
    "render_html",
    "render_markdown",
    "write_campaign_report",
]

SCHEMA_VERSION = "1.0"
FORMATS = ("html", "json", "md", "sarif")
FILES = {"html": "report.html", "json": "campaign.json", "md": "report.md", "sarif": "report.sarif"}
MARKDOWN_LIMIT = 60_000
STATUSES = ("done", "failed", "pending", "running")

# a cell's own curves are drawn only in a campaign this small: each takes a fraction of a
# second, and a page of a thousand cells would take minutes (campaign.json has every figure)
_DRAW_CELLS = 30
_CHART_SERIES = 10
_MD_COLUMNS = 12
_CHART_COLOURS = (
    "#1f618d",
    "#c0392b",
    "#1e8449",
    "#7d3c98",
    "#d68910",
    "#17202a",
    "#2e86c1",
    "#a93226",
    "#239b56",
    "#6c3483",
)


@dataclass
class CellReport:
    """One cell of a campaign: a target, an assessment of it with its settings, and the result.

    Attributes:
        target: the target's name in the campaign.
        assessment: the assessment's name in the campaign (``evasion-quick``).
        kind: ``evasion``, ``membership``, ``extraction``, ``inversion``, ``poisoning`` or
            ``hardening``.
        settings: the cell's settings.
        status: ``done``, ``failed``, ``pending`` or ``running``.
        key: the cell's content hash.
        error: why a failed cell failed.
        attempts: how many times it ran.
        seconds: its wall time.
        assessments: the ``assessments`` dicts of its ``report.json``.
        target_info: the ``target`` of its ``report.json``.
        dataset: the ``dataset`` of its ``report.json``.
    """

    target: str
    assessment: str
    kind: str
    settings: dict[str, Any]
    status: str
    key: str
    error: str | None = None
    attempts: int = 0
    seconds: float = 0.0
    assessments: list[dict[str, Any]] = field(default_factory=list)
    target_info: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)


@dataclass
class CampaignInfo:
    """What the report says about the campaign itself."""

    name: str
    run: int | None
    created: str
    engine: str | None
    version: str


# ---------------------------------------------------------------------- the headline figure
@dataclass
class Headline:
    """The one figure a matrix cell shows.

    Attributes:
        label: what it is, in words (``robust accuracy at linf eps=0.2``).
        value: the figure.
        ci95: its 95% interval, where there is one.
        higher_is_better: whether a larger figure means a safer model (None: not known).
        metric: the metric's machine name.
        unit: the metric's unit (``fraction``, ``queries``, ...).
        at: the setting it was measured at (``{"epsilon": 0.2}``).
        reference: the figure to read it against (clean accuracy, the model before hardening,
            the clean model's attack success), where there is one.
        reference_label: what ``reference`` is.
        limited: why the figure may be weaker than it could be, or None.
    """

    label: str
    value: float
    ci95: tuple[float, float] | None = None
    higher_is_better: bool | None = None
    metric: str = ""
    unit: str = "fraction"
    at: dict[str, Any] = field(default_factory=dict)
    reference: float | None = None
    reference_label: str = ""
    limited: str | None = None

    def _as_metric(self, value: float, ci95: tuple[float, float] | None) -> Metric:
        return Metric(self.metric, value, self.label, ci95, unit=self.unit)

    def value_text(self) -> str:
        return metric_text(self._as_metric(self.value, None))[0]

    def interval_text(self) -> str:
        return metric_text(self._as_metric(self.value, self.ci95))[1]

    def reference_text(self) -> str:
        if self.reference is None:
            return ""
        ref = metric_text(self._as_metric(self.reference, None))[0]
        return f"{self.reference_label} {ref}".strip()

    def text(self) -> str:
        """``62.1% (51.0%-72.0%)``: the figure and its interval."""
        ci = self.interval_text()
        return f"{self.value_text()} ({ci})" if ci else self.value_text()

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "value": self.value,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "higher_is_better": self.higher_is_better,
            "metric": self.metric,
            "unit": self.unit,
            "at": dict(self.at),
            "reference": self.reference,
            "reference_label": self.reference_label,
            "limited": self.limited,
        }


# whether a larger figure of a metric means a safer model, for the metrics no family picks
_DIRECTION = {
    "robust_accuracy": True,
    "clean_accuracy": True,
    "certified_accuracy": True,
    "plain_pgd_accuracy": True,
    "patched_accuracy": True,
    "recall": True,
    "precision": True,
    "roc_auc": True,
    "attack_success_rate": False,
    "baseline_success_rate": False,
    "tpr": False,
    "auc": False,
    "fidelity": False,
    "copy_accuracy": False,
    "transfer_rate": False,
    "recognizable": False,
    "attribute_accuracy": False,
    "abstention_rate": False,
    "fpr": False,
}

_Metrics = list[dict[str, Any]]


def _named(ms: _Metrics, name: str, **at: Any) -> _Metrics:
    return [m for m in ms if m["name"] == name and all(m["at"].get(k) == v for k, v in at.items())]


def _make(
    m: dict[str, Any],
    higher_is_better: bool | None,
    reference: dict[str, Any] | None = None,
    reference_label: str = "",
) -> Headline:
    ci = m.get("ci95")
    return Headline(
        label=m.get("label") or m["name"].replace("_", " "),
        value=float(m["value"]),
        ci95=(float(ci[0]), float(ci[1])) if ci else None,
        higher_is_better=higher_is_better,
        metric=m["name"],
        unit=m.get("unit", "fraction"),
        at=dict(m["at"]),
        reference=float(reference["value"]) if reference is not None else None,
        reference_label=reference_label if reference is not None else "",
        limited=m.get("limited"),
    )


def _value(m: dict[str, Any]) -> float:
    return float(m["value"])


def _evasion(ms: _Metrics) -> Headline | None:
    robust = [m for m in _named(ms, "robust_accuracy") if "epsilon" in m["at"]]
    robust = [m for m in robust if "access" not in m["at"]]  # the worst case over all access
    if not robust:
        return None
    top = max(robust, key=lambda m: float(m["at"]["epsilon"]))
    clean = [m for m in _named(ms, "clean_accuracy") if not m["at"]]
    return _make(top, True, clean[0] if clean else None, "clean")


def _membership(ms: _Metrics) -> Headline | None:
    # the attack catching most members at 1% false positives: what a claim about one person rests on
    tpr = [m for m in _named(ms, "tpr") if math.isclose(float(m["at"].get("fpr", -1)), 0.01)]
    if tpr:
        return _make(max(tpr, key=_value), False)
    auc = _named(ms, "auc")
    return _make(max(auc, key=_value), False) if auc else None


def _extraction(ms: _Metrics) -> Headline | None:
    fidelity = _named(ms, "fidelity")
    return _make(max(fidelity, key=_value), False) if fidelity else None


def _inversion(ms: _Metrics) -> Headline | None:
    recognizable = _named(ms, "recognizable")
    if recognizable:
        return _make(max(recognizable, key=_value), False)
    attribute = _named(ms, "attribute_accuracy")
    if not attribute:
        return None
    top = max(attribute, key=_value)
    prior = _named(ms, "baseline_accuracy", **top["at"])
    return _make(top, False, prior[0] if prior else None, "prior")


def _poisoning(ms: _Metrics) -> Headline | None:
    success = _named(ms, "attack_success_rate")
    overall = [m for m in success if not m["at"]]
    if overall:
        clean = [m for m in _named(ms, "baseline_success_rate") if not m["at"]]
        return _make(overall[0], False, clean[0] if clean else None, "clean model")
    after = _named(success, "attack_success_rate", stage="after")
    if after:
        before = _named(success, "attack_success_rate", stage="before")
        return _make(after[0], False, before[0] if before else None, "before")
    return _make(max(success, key=_value), False) if success else None


def _hardening(ms: _Metrics) -> Headline | None:
    after = [m for m in _named(ms, "robust_accuracy", model="after") if "epsilon" in m["at"]]
    if not after:
        return None
    top = max(after, key=lambda m: float(m["at"]["epsilon"]))
    before = _named(ms, "robust_accuracy", model="before", epsilon=top["at"]["epsilon"])
    return _make(top, True, before[0] if before else None, "before")


_PICKERS: dict[str, Callable[[_Metrics], Headline | None]] = {
    "evasion": _evasion,
    "membership": _membership,
    "extraction": _extraction,
    "inversion": _inversion,
    "poisoning": _poisoning,
    "hardening": _hardening,
}


def _fallback(ms: _Metrics) -> Headline | None:
    """A family no picker knows: its first rate that is not the clean accuracy, else its first
    figure."""
    if not ms:
        return None
    rates = [m for m in ms if m.get("unit") == "fraction" and m["name"] != "clean_accuracy"]
    top = (rates or ms)[0]
    return _make(top, _DIRECTION.get(top["name"]))


def _main(cell: CellReport) -> dict[str, Any] | None:
    """The assessment a cell is about: the first of its kind's family, else its first."""
    for a in cell.assessments:
        if a.get("family") == cell.kind:
            return a
    return cell.assessments[0] if cell.assessments else None


def _finite(m: dict[str, Any]) -> bool:
    value = m.get("value")
    return isinstance(value, (int, float)) and math.isfinite(value)


def headline(cell: CellReport) -> Headline | None:
    """The one figure a matrix cell shows (None for a cell with no results).

    Per kind: evasion, the robust accuracy at the largest epsilon (against the clean accuracy);
    membership, the members caught at 1% false positives by the strongest attack (else its
    AUC); extraction, the stolen copy's fidelity; inversion, the share of recognizable
    reconstructions or the sensitive attribute's accuracy (against the prior's); poisoning, the
    attack success rate (against the clean model's); hardening, the robust accuracy after at
    the largest epsilon (against before). Another kind, or a result without those metrics,
    gets its first rate.
    """
    main = _main(cell)
    if main is None:
        return None
    ms = [
        m | {"at": dict(m.get("at") or {})}
        for m in main.get("metrics", [])
        if _finite(m) and m.get("name")
    ]
    pick = _PICKERS.get(cell.kind) or _PICKERS.get(str(main.get("family")))
    found = pick(ms) if pick is not None else None
    return found or _fallback(ms)


# ---------------------------------------------------------------------- the matrix
@dataclass
class _Entry:
    """A cell with what every format shows of it, worked out once."""

    cell: CellReport
    anchor: str
    headline: Headline | None
    findings: list[Finding]
    variant: str = ""

    @property
    def worst(self) -> Severity | None:
        return self.findings[0].severity if self.findings else None

    @property
    def unreliable(self) -> bool:
        return any(f.unreliable for f in self.findings)

    @property
    def title(self) -> str:
        extra = f" ({self.variant})" if self.variant else ""
        return f"{self.cell.target} × {self.cell.assessment}{extra}"


@dataclass
class _Matrix:
    targets: list[str]
    columns: list[tuple[str, str]]  # (assessment, kind)
    grid: dict[tuple[str, str], list[_Entry]]
    entries: list[_Entry]


def _findings(cell: CellReport) -> list[Finding]:
    found = [Finding.model_validate(f) for a in cell.assessments for f in a.get("findings", [])]
    return sorted(found, key=lambda f: -f.severity.rank)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _variants(group: list[_Entry]) -> None:
    """Label the cells of one target and assessment that differ in their settings by what
    differs (the key's start where nothing does)."""
    if len(group) < 2:
        return
    keys = sorted({k for e in group for k in e.cell.settings})
    differ = [k for k in keys if len({_canonical(e.cell.settings.get(k)) for e in group}) > 1]
    for e in group:
        parts = [f"{k}={format_setting(e.cell.settings.get(k))}" for k in differ]
        e.variant = ", ".join(parts) or e.cell.key[:10]


def _matrix(cells: Sequence[CellReport]) -> _Matrix:
    targets: dict[str, None] = {}
    columns: dict[str, str] = {}
    grid: dict[tuple[str, str], list[_Entry]] = {}
    entries: list[_Entry] = []
    anchors: set[str] = set()
    for i, cell in enumerate(cells):
        targets.setdefault(cell.target)
        columns.setdefault(cell.assessment, cell.kind)
        anchor = "cell-" + (re.sub(r"[^A-Za-z0-9_-]+", "-", cell.key)[:40] or str(i))
        if anchor in anchors:
            anchor = f"{anchor}-{i}"
        anchors.add(anchor)
        entry = _Entry(cell, anchor, headline(cell), _findings(cell))
        entries.append(entry)
        grid.setdefault((cell.target, cell.assessment), []).append(entry)
    for group in grid.values():
        _variants(group)
    return _Matrix(list(targets), list(columns.items()), grid, entries)


def _counts(m: _Matrix) -> dict[str, Any]:
    counts: dict[str, Any] = {"cells": len(m.entries)}
    for status in STATUSES:
        counts[status] = sum(e.cell.status == status for e in m.entries)
    counts["findings"] = {
        s.value: sum(f.severity is s for e in m.entries for f in e.findings) for s in Severity
    }
    return counts


def _check(cells: Sequence[CellReport]) -> None:
    for c in cells:
        if c.status not in STATUSES:
            raise ConfigError(
                f"cell {c.target} x {c.assessment} has status {c.status!r}; "
                f"expected one of {', '.join(STATUSES)}"
            )


# ---------------------------------------------------------------------- campaign.json
def load_schema() -> dict[str, Any]:
    """The JSON Schema that ``campaign.json`` validates against."""
    path = "schema/campaign-report.schema.json"
    text = resources.files("bastion.campaign").joinpath(path).read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def campaign_dict(info: CampaignInfo, cells: Sequence[CellReport]) -> dict[str, Any]:
    """The campaign's report as plain JSON-ready data (``campaign.json``)."""
    from bastion.report.json import _plain

    _check(cells)
    m = _matrix(cells)
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "bastion", "version": info.version},
        "campaign": {
            "name": info.name,
            "run": info.run,
            "created": info.created,
            "engine": info.engine,
        },
        "counts": _counts(m),
        "matrix": {
            "targets": m.targets,
            "assessments": [{"name": name, "kind": kind} for name, kind in m.columns],
            "cells": [
                {
                    "target": e.cell.target,
                    "assessment": e.cell.assessment,
                    "kind": e.cell.kind,
                    "variant": e.variant or None,
                    "status": e.cell.status,
                    "key": e.cell.key,
                    "error": e.cell.error,
                    "headline": _plain(e.headline.as_dict()) if e.headline else None,
                    "worst": e.worst.value if e.worst else None,
                    "findings": len(e.findings),
                    "unreliable": e.unreliable,
                }
                for e in m.entries
            ],
        },
        "results": [
            {
                "target": e.cell.target,
                "assessment": e.cell.assessment,
                "kind": e.cell.kind,
                "key": e.cell.key,
                "status": e.cell.status,
                "settings": _plain(e.cell.settings),
                "error": e.cell.error,
                "attempts": e.cell.attempts,
                "seconds": round(float(e.cell.seconds), 3),
                "target_info": _plain(e.cell.target_info),
                "dataset": _plain(e.cell.dataset),
                "assessments": _plain(e.cell.assessments),
            }
            for e in m.entries
        ],
    }


# ---------------------------------------------------------------------- report.sarif
def _uri(target_info: dict[str, Any]) -> str:
    """The model file a cell's findings are about, else the campaign's JSON."""
    source = str(target_info.get("source") or "")
    if source and "://" not in source and Path(source).suffix:
        return Path(source).as_posix()
    return FILES["json"]


def campaign_sarif(info: CampaignInfo, cells: Sequence[CellReport]) -> dict[str, Any]:
    """The campaign's findings as one SARIF 2.1.0 run: one result per finding of every cell,
    naming its target and assessment; rules shared by findings of one kind, as in a single
    report's SARIF; failed and unfinished cells, and the evaluations' warnings, as tool
    execution notifications."""
    from bastion.report.sarif import _LEVEL, _rule, sarif_log

    _check(cells)
    m = _matrix(cells)
    rules: dict[str, dict[str, Any]] = {}
    for e in m.entries:
        for f in e.findings:
            rules.setdefault(f.id, _rule(f))
    index = {rid: i for i, rid in enumerate(rules)}
    results: list[dict[str, Any]] = []
    notes: list[dict[str, Any]] = []
    for e in m.entries:
        c = e.cell
        where = {"target": c.target, "assessment": c.assessment, "kind": c.kind, "cell": c.key}
        uri = _uri(c.target_info)
        for f in e.findings:
            text = f"{e.title}: {f.summary}"
            if f.unreliable:
                text += f" The figure is unreliable: {f.unreliable}"
            results.append(
                {
                    "ruleId": f.id,
                    "ruleIndex": index[f.id],
                    "level": _LEVEL[f.severity],
                    "message": {"text": text},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                    "partialFingerprints": {
                        "bastionFinding/v1": f"{c.target}:{c.assessment}:{e.variant}:{f.id}"
                    },
                    "properties": where
                    | {
                        "severity": f.severity.value,
                        "techniques": list(f.techniques),
                        "mitigations": list(f.mitigations),
                        "attacks": list(f.attacks),
                        "unreliable": f.unreliable,
                        "evidence": json.loads(json.dumps(f.evidence, default=str)),
                    },
                }
            )
        if c.status == "failed":
            text = f"{e.title} failed: {c.error or 'no error recorded'}"
            notes.append({"message": {"text": text}, "level": "error", "properties": where})
        elif c.status in ("pending", "running"):
            text = f"{e.title} is {c.status}: not in this report yet"
            notes.append({"message": {"text": text}, "level": "note", "properties": where})
        for a in c.assessments:
            for w in a.get("warnings", []):
                text = f"{e.title}: {w}"
                notes.append({"message": {"text": text}, "level": "warning", "properties": where})
    invocation: dict[str, Any] = {
        "executionSuccessful": not any(e.cell.status == "failed" for e in m.entries)
    }
    if notes:
        invocation["toolExecutionNotifications"] = notes
    return sarif_log(
        info.version,
        rules,
        results,
        invocation,
        {"campaign": info.name, "run": info.run, "engine": info.engine, "counts": _counts(m)},
        # one category per campaign, so a rerun's results replace the last run's
        automationDetails={"id": f"bastion-campaign/{info.name}/"},
    )


# ---------------------------------------------------------------------- report.html
def _sweep(a: dict[str, Any]) -> dict[str, Any] | None:
    """A cell's accuracy against epsilon (the clean accuracy at 0): an evasion's worst case
    over every attack, a hardening's model after."""
    ms = [m | {"at": dict(m.get("at") or {})} for m in a.get("metrics", []) if _finite(m)]
    family = a.get("family")
    if family == "evasion":
        clean = [m for m in _named(ms, "clean_accuracy") if not m["at"]]
        robust = [m for m in _named(ms, "robust_accuracy") if set(m["at"]) == {"epsilon"}]
    elif family == "hardening":
        clean = _named(ms, "clean_accuracy", model="after")
        robust = [m for m in _named(ms, "robust_accuracy", model="after") if "epsilon" in m["at"]]
    else:
        return None
    if not robust:
        return None
    points = [(0.0, clean[0])] if clean else []
    points += sorted(((float(m["at"]["epsilon"]), m) for m in robust), key=lambda p: p[0])
    series: dict[str, Any] = {"x": [p[0] for p in points], "y": [_value(p[1]) for p in points]}
    if all(p[1].get("ci95") for p in points):
        series["lo"] = [p[1]["ci95"][0] for p in points]
        series["hi"] = [p[1]["ci95"][1] for p in points]
    return series


def _charts(m: _Matrix) -> list[Any]:
    """Per evasion or hardening column: every target's accuracy against epsilon, overlaid."""
    from bastion.report.html import artifact_image

    charts = []
    for name, kind in m.columns:
        series: list[dict[str, Any]] = []
        for target in m.targets:
            for e in m.grid.get((target, name), []):
                main = _main(e.cell)
                points = _sweep(main) if main is not None and e.cell.status == "done" else None
                if points is None:
                    continue
                label = target + (f" ({e.variant})" if e.variant else "")
                colour = _CHART_COLOURS[len(series) % len(_CHART_COLOURS)]
                series.append(points | {"label": label, "colour": colour, "main": True})
        if not series:
            continue
        left = len(series) - _CHART_SERIES
        what = "robust accuracy after hardening" if kind == "hardening" else "robust accuracy"
        art = Artifact(
            name=f"campaign-{name}",
            kind="curve",
            title=f"{name}: {what} against epsilon",
            data={
                "x_label": "epsilon (0: clean)",
                "y_label": "accuracy",
                "y_range": [0.0, 1.02],
                "series": series[:_CHART_SERIES],
            },
        )
        image = artifact_image(art)
        if image is not None:
            caption = "Shaded: 95% intervals."
            if left > 0:
                caption += f" {left} more targets are left out here; campaign.json has them."
            charts.append({"image": image, "caption": caption, "title": art.title})
    return charts


def _target_text(info: dict[str, Any]) -> str:
    parts = [str(info[k]) for k in ("kind", "access") if info.get(k)]
    if info.get("output_kind"):
        parts.append(f"returns {info['output_kind']}")
    if info.get("num_classes"):
        parts.append(f"{info['num_classes']} classes")
    return ", ".join(parts)


def render_html(info: CampaignInfo, cells: Sequence[CellReport]) -> str:
    """The campaign's self-contained HTML page (``report.html``)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

    from bastion.core.plugins import load_plugins
    from bastion.report.html import section_context
    from bastion.report.json import assessment_from_dict, catalog_name

    _check(cells)
    load_plugins()  # every family's own section, a plugin's included
    m = _matrix(cells)
    draw = sum(bool(e.cell.assessments) for e in m.entries) <= _DRAW_CELLS
    sections = []
    for e in m.entries:
        parts = []
        for d in e.cell.assessments:
            a = assessment_from_dict(d, e.cell.target_info, e.cell.dataset)
            parts.append(section_context(a, draw=draw) | {"metrics": _metric_rows(a)})
        sections.append(
            {
                "e": e,
                "parts": parts,
                "target": _target_text(e.cell.target_info),
                "settings": {k: format_setting(v) for k, v in e.cell.settings.items()},
            }
        )
    techniques = {
        t: catalog_name("technique", t) or ""
        for e in m.entries
        for f in e.findings
        for t in f.techniques
    }
    env = Environment(
        loader=PackageLoader("bastion.campaign", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
        undefined=StrictUndefined,
    )
    return env.get_template("campaign.html.j2").render(
        info=info,
        counts=_counts(m),
        matrix=m,
        charts=_charts(m),
        sections=sections,
        drawn=draw,
        draw_cells=_DRAW_CELLS,
        technique_names=techniques,
        severities=[s.value for s in Severity],
    )


def _metric_rows(a: Assessment) -> list[tuple[str, str, str]]:
    rows = []
    for metric in a.metrics:
        if not math.isfinite(metric.value):
            rows.append((metric.label or metric.name, "not measured", ""))
            continue
        value, ci = metric_text(metric)
        if metric.limited:
            ci += f" (limited: {metric.limited})"
        rows.append((metric.label or metric.name, value, ci))
    return rows


# ---------------------------------------------------------------------- report.md
_MARKERS = {
    "critical": ":red_circle:",
    "high": ":orange_circle:",
    "medium": ":yellow_circle:",
    "low": ":large_blue_circle:",
    "info": ":white_circle:",
    None: ":green_circle:",
}
_STATUS_MARK = {
    "failed": ":x: failed",
    "pending": ":hourglass: pending",
    "running": ":hourglass: running",
}


def _md(value: Any) -> str:
    """A value made safe for one Markdown table cell or list item."""
    text = re.sub(r"\s+", " ", str(value)).strip()
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_entry(e: _Entry) -> str:
    prefix = f"{_md(e.variant)}: " if e.variant else ""
    if e.cell.status != "done":
        return prefix + _STATUS_MARK[e.cell.status]
    marker = _MARKERS[e.worst.value if e.worst else None]
    figure = e.headline.text() if e.headline else "no figure"
    flag = " :warning:" if e.unreliable else ""
    return f"{prefix}{marker} {figure}{flag}"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _Budget:
    """Lines added while they fit in a number of characters."""

    def __init__(self, limit: int) -> None:
        self.lines: list[str] = []
        self.size = 0
        self.limit = limit

    def fits(self, lines: Sequence[str], cap: int) -> bool:
        return self.size + sum(len(x) + 1 for x in lines) <= min(cap, self.limit)

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)
        self.size += sum(len(x) + 1 for x in lines)

    def section(self, head: Sequence[str], items: Sequence[str], cap: int, what: str) -> None:
        """``head`` then as many ``items`` as fit under ``cap``; a note says how many did not."""
        if not items:
            return
        room = cap - 200  # for the note
        shown = 0
        if self.fits([*head, items[0]], room):
            self.add(*head)
            while shown < len(items) and self.fits([items[shown]], room):
                self.add(items[shown])
                shown += 1
            self.add("")
        if shown < len(items):
            self.add(
                f"_{len(items) - shown} {'more ' if shown else ''}{what} left out to keep this "
                "comment short; report.html and campaign.json have them all._",
                "",
            )


def render_markdown(
    info: CampaignInfo, cells: Sequence[CellReport], limit: int = MARKDOWN_LIMIT
) -> str:
    """The campaign as a pull-request comment (``report.md``), under ``limit`` characters:
    the counts, the matrix, the findings of high severity and above, the failed cells. Where
    the campaign is too large, each part shows what fits and says how much it left out."""
    _check(cells)
    m = _matrix(cells)
    counts = _counts(m)
    run = f" (run {info.run})" if info.run is not None else ""
    out = _Budget(limit - 1)
    out.add(
        f"# bastion campaign: {_md(info.name)}{run}",
        "",
        f"{counts['cells']} cells: {counts['done']} done, {counts['failed']} failed, "
        f"{counts['pending']} pending, {counts['running']} running; {_md(info.created)}; "
        f"bastion {_md(info.version)}" + (f", engine {_md(info.engine)}" if info.engine else ""),
        "",
    )
    found = counts["findings"]
    if any(found.values()):
        out.add(
            "Findings: " + ", ".join(f"{_MARKERS[s]} {found[s]} {s}" for s in found if found[s]),
            "",
        )

    columns = m.columns[:_MD_COLUMNS]
    head = [
        "## Matrix",
        "",
        "Each cell: the headline figure (95% interval), marked by its worst finding "
        + ", ".join(f"{mark} {s or 'none'}" for s, mark in _MARKERS.items())
        + "; :warning: an unreliable figure.",
        "",
    ]
    if len(m.columns) > _MD_COLUMNS:
        head += [f"_{len(m.columns) - _MD_COLUMNS} more assessments are in report.html._", ""]
    head += [
        "| target | " + " | ".join(f"{_md(_clip(n, 60))} ({_md(k)})" for n, k in columns) + " |",
        "| --- |" + " --- |" * len(columns),
    ]
    rows = [
        f"| {_md(_clip(t, 80))} | "
        + " | ".join(
            "<br>".join(_md_entry(e) for e in m.grid.get((t, n), [])) or "–" for n, _ in columns
        )
        + " |"
        for t in m.targets
    ]
    out.section(head, rows, int(limit * 0.55), "targets")

    figures = []
    direction = {True: " (higher is safer)", False: " (lower is safer)", None: ""}
    for n, _ in columns:
        shown = [e.headline for t in m.targets for e in m.grid.get((t, n), []) if e.headline]
        if shown:
            # cells of one column may measure at different settings: each label once
            labels = list(dict.fromkeys(_clip(h.label, 120) for h in shown))
            text = "; ".join(labels[:3]) + ("; …" if len(labels) > 3 else "")
            figures.append(f"- {_md(n)}: {_md(text)}{direction[shown[0].higher_is_better]}")
    out.section(["Figures:", ""], figures, int(limit * 0.6), "figures")

    severe = [
        (f, e) for e in m.entries for f in e.findings if f.severity.rank >= Severity.HIGH.rank
    ]
    severe.sort(key=lambda p: -p[0].severity.rank)
    items = [
        f"| {f.severity.value.upper()}{' (unreliable)' if f.unreliable else ''} | "
        f"{_md(e.cell.target)} | {_md(e.cell.assessment)}"
        f"{' (' + _md(e.variant) + ')' if e.variant else ''} | {_md(_clip(f.title, 200))} |"
        for f, e in severe
    ]
    out.section(
        [
            "## Findings, high and above",
            "",
            "| severity | target | assessment | finding |",
            "| --- | --- | --- | --- |",
        ],
        items,
        int(limit * 0.85),
        "findings",
    )
    if not severe:
        out.add("No findings of high severity or above.", "")

    failed = [
        f"- **{_md(e.title)}**: {_md(_clip(e.cell.error or 'no error recorded', 300))}"
        for e in m.entries
        if e.cell.status == "failed"
    ]
    out.section(["## Failed cells", ""], failed, limit, "failed cells")
    return "\n".join(out.lines).rstrip() + "\n"


# ---------------------------------------------------------------------- all of them
def cell_reports(store: Store, run_id: int) -> list[CellReport]:
    """A run's cells as the report takes them, with their results from the store: a running
    cell is pending; a sharded cell not merged yet is failed if a block failed, else pending."""
    from bastion.campaign.runner import block_key

    rows = store.cells(run_id)
    results = store.results(r.key for r in rows)
    unmerged = [r for r in rows if r.tasks > 1 and r.key not in results]
    blocks = store.results(block_key(r.key, b, r.tasks) for r in unmerged for b in range(r.tasks))
    broken = {k.rsplit(":b", 1)[0] for k, b in blocks.items() if b.status == "failed"}
    out = []
    for r in rows:
        found = results.get(r.key)
        if found is None:
            status = "failed" if r.key in broken else "pending"
        else:
            status = "pending" if found.status == "running" else found.status
        payload = (found.payload or {}) if found is not None and status == "done" else {}
        out.append(
            CellReport(
                target=r.target,
                assessment=r.assessment,
                kind=r.kind,
                settings=r.setting,
                status=status,
                key=r.key,
                error=found.error if found is not None and status == "failed" else None,
                attempts=found.attempts if found is not None else 0,
                seconds=float(found.seconds or 0.0) if found is not None else 0.0,
                assessments=list(payload.get("assessments", [])),
                target_info=dict(payload.get("target", {})),
                dataset=dict(payload.get("dataset", {})),
            )
        )
    return out


def write_campaign_report(
    info: CampaignInfo,
    cells: list[CellReport],
    out: Path,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write the campaign's report into the folder ``out`` in each of ``formats`` (``html``,
    ``json``, ``md``, ``sarif``), atomically; the paths written, in the order asked.

    JSON is written first, so a crash in a richer format still leaves the data behind.
    """
    names = list(dict.fromkeys(f.strip().lower() for f in formats))
    unknown = [f for f in names if f not in FILES]
    if unknown or not names:
        raise ConfigError(
            f"unknown campaign report format {', '.join(unknown) or '(none given)'}; "
            f"choose from {', '.join(FORMATS)}"
        )
    _check(cells)
    render: dict[str, Callable[[], str]] = {
        "json": lambda: json.dumps(campaign_dict(info, cells), indent=2) + "\n",
        "html": lambda: render_html(info, cells),
        "md": lambda: render_markdown(info, cells),
        "sarif": lambda: json.dumps(campaign_sarif(info, cells), indent=2) + "\n",
    }
    written = {}
    for name in sorted(names, key=lambda f: f != "json"):
        written[name] = atomic_write(Path(out) / FILES[name], render[name]())
    return [written[n] for n in names]
