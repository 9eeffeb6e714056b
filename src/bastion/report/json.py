"""``report.json``: the versioned, machine-readable report, valid against its JSON Schema.

Schema 2.0 holds any assessment: a list of ``assessments`` (one per family run), each with
its setting, metrics, records, artifacts, warnings and findings, and every finding gathered
at the top. ``docs/report-format.md`` says how schema 1.0's fields map to it.
"""

from __future__ import annotations

import json
import math
import platform
from importlib import resources
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.core.assessment import Artifact, Assessment, Metric, Report
from bastion.core.findings import Finding

if TYPE_CHECKING:
    from bastion.catalog import CatalogEntry
from bastion.core.errors import BastionError
from bastion.report.base import register_renderer

__all__ = [
    "SCHEMA_VERSION",
    "JsonRenderer",
    "assessment_from_dict",
    "catalog_entry",
    "catalog_name",
    "load_schema",
    "to_dict",
]

SCHEMA_VERSION = "2.0"


def load_schema(version: str = SCHEMA_VERSION) -> dict[str, Any]:
    """The JSON Schema that ``report.json`` of ``version`` validates against."""
    name = "report.schema.json" if version == SCHEMA_VERSION else f"report-{version}.schema.json"
    text = resources.files("bastion.report").joinpath(f"schema/{name}").read_text("utf-8")
    return json.loads(text)  # type: ignore[no-any-return]


def catalog_entry(kind: str, ident: str) -> CatalogEntry | None:
    """The catalog's technique or mitigation with this id (None for an id it lacks, such as
    a third-party plugin's)."""
    from bastion.catalog import get_mitigation, get_technique

    try:
        return get_technique(ident) if kind == "technique" else get_mitigation(ident)
    except (BastionError, KeyError):
        return None


def catalog_name(kind: str, ident: str) -> str | None:
    """The catalog's name of a technique or mitigation id (None for an id it lacks)."""
    item = catalog_entry(kind, ident)
    return str(item.name) if item is not None else None


def _plain(value: Any) -> Any:
    """JSON-ready data: numpy scalars and arrays as Python, non-finite floats as None, other
    objects as their text."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return _plain(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    # an object given as a setting (a surrogate model, say) is recorded by its description
    return str(value)


def _assessment(a: Assessment) -> dict[str, Any]:
    return {
        "family": a.family,
        "title": a.title,
        "complete": a.complete,
        "limits": list(a.limits),
        "seconds": round(a.seconds, 3),
        "setting": _plain(a.setting),
        "metrics": [_plain(m.as_dict()) for m in a.metrics],
        "records": _plain(a.records),
        "artifacts": [_plain(x.as_dict()) for x in a.artifacts],
        "warnings": list(a.warnings),
        "findings": [json.loads(f.model_dump_json()) for f in a.findings],
        "details": _plain(a.details),
    }


def _pair(value: Any) -> Any:
    return tuple(value) if value is not None else None


def assessment_from_dict(
    data: dict[str, Any],
    target: dict[str, Any] | None = None,
    dataset: dict[str, Any] | None = None,
) -> Assessment:
    """An :class:`Assessment` back from one dict of ``report.json``'s ``assessments``, so any
    renderer can show a stored result. ``target`` and ``dataset`` are the report's own (the
    dict does not repeat them); a figure stored as null (not finite) comes back as NaN, and an
    images artifact without its pixels (JSON leaves them out) with no images to draw."""
    metrics = [
        Metric(
            name=m["name"],
            value=float("nan") if m.get("value") is None else float(m["value"]),
            label=m.get("label", ""),
            ci95=_pair(m.get("ci95")),
            count=_pair(m.get("count")),
            unit=m.get("unit", "fraction"),
            at=dict(m.get("at") or {}),
            limited=m.get("limited"),
        )
        for m in data.get("metrics", [])
    ]
    artifacts = []
    for x in data.get("artifacts", []):
        art = dict(x.get("data") or {})
        if x["kind"] == "images":
            art = {"rows": [{**row, "images": []} for row in art.get("rows", [])]}
        artifacts.append(Artifact(x["name"], x["kind"], x["title"], art, x.get("caption", "")))
    return Assessment(
        family=data["family"],
        title=data.get("title", data["family"]),
        target=dict(target or {}),
        dataset=dict(dataset or {}),
        setting=dict(data.get("setting") or {}),
        metrics=metrics,
        records=list(data.get("records") or []),
        artifacts=artifacts,
        warnings=list(data.get("warnings") or []),
        findings=[Finding.model_validate(f) for f in data.get("findings", [])],
        seconds=float(data.get("seconds") or 0.0),
        complete=bool(data.get("complete", True)),
        limits=list(data.get("limits") or []),
        details=dict(data.get("details") or {}),
    )


def to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data."""
    from bastion import __version__

    findings = report.findings
    techniques = sorted({t for f in findings for t in f.techniques})
    mitigations = sorted({m for f in findings for m in f.mitigations})
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "bastion", "version": __version__, "python": platform.python_version()},
        "created": report.created,
        "complete": report.complete,
        "command": report.command,
        "asset": report.asset,
        "target": _plain(report.target),
        "dataset": _plain(report.dataset),
        "assessments": [_assessment(a) for a in report.assessments],
        "findings": [json.loads(f.model_dump_json()) for f in findings],
        "techniques": [{"id": t, "name": catalog_name("technique", t)} for t in techniques],
        "mitigations": [{"id": m, "name": catalog_name("mitigation", m)} for m in mitigations],
        "warnings": report.warnings,
        # a hardening report also sets its before and after side by side at the top level
        **{
            side: _plain(a.details[side])
            for a in report.assessments[:1]
            if a.family == "hardening"
            for side in ("before", "after")
        },
    }


@register_renderer("json", extension="json", media_type="application/json")
class JsonRenderer:
    """Machine-readable, versioned, with a JSON Schema (report.json)."""

    def render(self, report: Report) -> str:
        return json.dumps(to_dict(report), indent=2) + "\n"
