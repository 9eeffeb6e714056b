"""Renderers: threat models and gap analyses as Markdown, HTML, JSON and ATLAS Navigator layers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jinja2

from bastion.catalog import Catalog, load_catalog
from bastion.threats._io import write_inside
from bastion.threats.gaps import GapAnalysis, GapEntry
from bastion.threats.model import ThreatModel
from bastion.threats.plan import save_plan

__all__ = [
    "BAND_COLOURS",
    "navigator_layer",
    "render_gaps_html",
    "render_threat_model_html",
    "render_threat_model_markdown",
    "write_gaps",
    "write_threat_model",
]

# The same colours as the HTML badges, dark enough for white text at WCAG AA (4.5:1).
BAND_COLOURS = {"critical": "#b91c1c", "high": "#c2410c", "medium": "#a16207", "low": "#15803d"}
_TOP_MITIGATIONS = 25
# Badge class of a business impact level (the band colours; "none" shows as low).
_LEVEL_CLASS = {
    "critical": "critical",
    "high": "high",
    "medium": "medium",
    "low": "low",
    "none": "low",
}


def _env(autoescape: bool) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("bastion.threats", "templates"),
        autoescape=autoescape,
        undefined=jinja2.StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
    )


def _version() -> str:
    from bastion import __version__

    return __version__


def _counts(tm: ThreatModel) -> dict[str, int]:
    counts = {b: 0 for b in BAND_COLOURS}
    for t in tm.techniques:
        counts[t.band] += 1
    return counts


def render_threat_model_markdown(tm: ThreatModel) -> str:
    return (
        _env(False)
        .get_template("threat_model.md.j2")
        .render(tm=tm, counts=_counts(tm), version=_version(), top_mitigations=_TOP_MITIGATIONS)
    )


def render_threat_model_html(tm: ThreatModel) -> str:
    return (
        _env(True)
        .get_template("threat_model.html.j2")
        .render(
            tm=tm,
            counts=_counts(tm),
            version=_version(),
            top_mitigations=_TOP_MITIGATIONS,
            level_class=_LEVEL_CLASS,
        )
    )


def navigator_layer(tm: ThreatModel, catalog: Catalog | None = None) -> dict[str, Any]:
    """An ATLAS Navigator layer (ATT&CK Navigator layer format 4.5) scoring techniques by risk."""
    catalog = catalog or load_catalog()
    scored = {t.technique: t for t in tm.techniques}
    parents_with_scored_children = {
        catalog.techniques[t].parent for t in scored if catalog.techniques[t].parent
    }
    techniques = []
    for tid, t in sorted(scored.items()):
        techniques.append(
            {
                "techniqueID": tid,
                "score": t.risk,
                "color": BAND_COLOURS[t.band],
                "comment": f"{t.band} risk on {t.asset}: " + "; ".join(t.reasons),
                "enabled": True,
                "showSubtechniques": tid in parents_with_scored_children,
                "metadata": [
                    {"name": "likelihood", "value": str(t.likelihood)},
                    {"name": "impact", "value": str(t.impact)},
                    {"name": "asset", "value": t.asset},
                ],
            }
        )
    return {
        "name": f"{tm.system.name}: threat model"[:100],
        "versions": {"layer": "4.5", "navigator": "4.9.5"},
        "domain": "atlas-atlas",
        "description": (
            "Risk (likelihood x impact, 1-25) of each applicable ATLAS technique, "
            "from bastion threats model."
        ),
        "filters": {"platforms": []},
        "sorting": 3,
        "layout": {"layout": "side", "showID": True, "showName": True, "aggregateFunction": "max"},
        "hideDisabled": False,
        "techniques": techniques,
        "gradient": {"colors": ["#16a34a", "#ca8a04", "#b91c1c"], "minValue": 1, "maxValue": 25},
        "legendItems": [{"label": band, "color": colour} for band, colour in BAND_COLOURS.items()],
        "metadata": [{"name": "generator", "value": f"bastion {_version()}"}],
        "showTacticRowBackground": False,
        "selectTechniquesAcrossTactics": True,
        "selectSubtechniquesWithParent": False,
    }


def write_threat_model(tm: ThreatModel, out_dir: str | Path) -> dict[str, Path]:
    """Write Markdown, HTML, JSON, the Navigator layer and the assessment plan into ``out_dir``."""
    out = Path(out_dir)
    paths = {
        "markdown": write_inside(out, "threat-model.md", render_threat_model_markdown(tm)),
        "html": write_inside(out, "threat-model.html", render_threat_model_html(tm)),
        "json": write_inside(out, "threat-model.json", json.dumps(tm.as_dict(), indent=2) + "\n"),
        "navigator": write_inside(
            out, "navigator-layer.json", json.dumps(navigator_layer(tm), indent=2) + "\n"
        ),
    }
    paths["plan"] = save_plan(tm.plan, out / "assessment-plan.json", within=out)
    return paths


def _matrix(
    ga: GapAnalysis, catalog: Catalog
) -> tuple[list[str], list[tuple[str, list[tuple[str, str, list[GapEntry | None]]]]]]:
    assets = sorted({e.asset for e in ga.entries})
    by_key = {(e.technique, e.asset): e for e in ga.entries}
    techs = sorted({e.technique for e in ga.entries})
    rows: list[tuple[str, list[tuple[str, str, list[GapEntry | None]]]]] = []
    for tactic in sorted(catalog.tactics.values(), key=lambda t: t.order):
        members = [t for t in techs if catalog.techniques[t].tactics[:1] == (tactic.id,)]
        if members:
            rows.append(
                (
                    tactic.name,
                    [
                        (
                            t,
                            catalog.techniques[t].name,
                            [by_key.get((t, a)) for a in assets],
                        )
                        for t in members
                    ],
                )
            )
    return assets, rows


def render_gaps_html(ga: GapAnalysis, catalog: Catalog | None = None) -> str:
    assets, matrix = _matrix(ga, catalog or load_catalog())
    return (
        _env(True)
        .get_template("gaps.html.j2")
        .render(ga=ga, assets=assets, matrix=matrix, version=_version())
    )


def write_gaps(ga: GapAnalysis, out_dir: str | Path) -> dict[str, Path]:
    """Write the gap matrix (HTML) and the full analysis (JSON) into ``out_dir``."""
    out = Path(out_dir)
    return {
        "html": write_inside(out, "gaps.html", render_gaps_html(ga)),
        "json": write_inside(out, "gaps.json", json.dumps(ga.as_dict(), indent=2) + "\n"),
    }
