"""``report.html``: a self-contained page people want to read (plots inline, no network).

The page renders any :class:`~bastion.core.assessment.Report`: a summary, every finding with
its ATLAS techniques and mitigations, and a section per assessment, whose curves and images
are drawn here and whose tables are laid out as HTML.
"""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from bastion.core.assessment import Artifact, Assessment, Metric, Report
from bastion.report.base import format_setting, metric_text, register_renderer, section_for
from bastion.report.json import catalog_entry, catalog_name

__all__ = ["HtmlRenderer", "artifact_image", "render_html", "section_context"]

_PALETTE = ("#222222", "#c0392b", "#2874a6", "#7d3c98", "#1e8449", "#d68910")
_COLOURS = {"white-box": "#c0392b", "score-based": "#2874a6", "label-only": "#7d3c98"}


def _png(fig: Any) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _curve(art: Artifact) -> str:
    plt = _pyplot()
    d = art.data
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for i, s in enumerate(d["series"]):
        colour = s.get("colour") or _COLOURS.get(s["label"].split(" ")[0], _PALETTE[i % 6])
        main = s.get("main", i == 0)
        if s.get("lo") is not None and s.get("hi") is not None:
            ax.fill_between(s["x"], s["lo"], s["hi"], color=colour, alpha=0.13, linewidth=0)
        ax.plot(
            s["x"],
            s["y"],
            "o-" if main else "s--",
            color=colour,
            linewidth=2.2 if main else 1.2,
            markersize=5 if main else 4,
            label=s["label"],
        )
    if d.get("log_x"):
        ax.set_xscale("log")
    if d.get("log_y"):
        ax.set_yscale("log")
    if d.get("y_range"):
        ax.set_ylim(*d["y_range"])
    ax.set_xlabel(d.get("x_label", ""))
    ax.set_ylabel(d.get("y_label", ""))
    ax.grid(alpha=0.3)
    ax.legend(frameon=False, fontsize=8)
    ax.set_title(art.title)
    return _png(fig)


def _images(art: Artifact) -> str | None:
    rows = art.data.get("rows", [])
    if not rows or not rows[0]["images"]:
        return None
    plt = _pyplot()
    cols = max(len(r["images"]) for r in rows)
    fig, axes = plt.subplots(len(rows), cols, figsize=(1.3 * cols, 1.5 * len(rows)), squeeze=False)
    for r, row in enumerate(rows):
        for c in range(cols):
            ax = axes[r][c]
            ax.axis("off")
            if c >= len(row["images"]):
                continue
            img = np.asarray(row["images"][c], dtype=float)
            img = img[0] if img.ndim == 3 and img.shape[0] == 1 else img
            if img.ndim == 3:
                img = np.transpose(img, (1, 2, 0))
            ax.imshow(
                np.clip(img, 0, 1),
                cmap="gray" if img.ndim == 2 else None,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            captions, good = row.get("captions", []), row.get("good", [])
            if c < len(captions):
                ok = good[c] if c < len(good) else True
                ax.set_title(captions[c], fontsize=8, color="#1e8449" if ok else "#c0392b")
    fig.suptitle(art.title, fontsize=9)
    return _png(fig)


def artifact_image(art: Artifact) -> Markup | None:
    """A curve or images artifact drawn as an inline PNG ``<img>`` (None for a table, or
    images with no pixels)."""
    png = _curve(art) if art.kind == "curve" else _images(art) if art.kind == "images" else None
    if png is None:
        return None
    return Markup('<img alt="{}" src="data:image/png;base64,{}">').format(art.title, png)


def _card(m: Metric) -> tuple[str, str, str]:
    """(label, value, interval) of a headline metric for a summary card."""
    value, interval = metric_text(m)
    ci = f"95% CI {interval}" if interval else ""
    if m.limited:
        ci += f" (limited: {m.limited})"
    return (m.label or m.name, value, ci)


def _headline(cards: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return cards if len(cards) <= 3 else [cards[0], *cards[-2:]]


def section_context(a: Assessment, *, draw: bool = True) -> dict[str, Any]:
    """What the page's section for one assessment shows: its family's intro, its curves and
    images drawn (left out when not ``draw``), its tables, headline cards and setting."""
    return {
        "a": a,
        "intro": Markup(section_for(a.family).intro_html(a)),
        "visuals": [v for v in (artifact_image(x) for x in a.artifacts) if v is not None]
        if draw
        else [],
        "tables": [x for x in a.artifacts if x.kind == "table"],
        # the first figure (clean) and the last two (the strongest settings)
        "headline": _headline([_card(m) for m in a.metrics if "access" not in m.at]),
        "setting": {k: format_setting(v) for k, v in a.setting.items()},
    }


def render_html(report: Report) -> str:
    """The HTML page for ``report``."""
    env = Environment(
        loader=PackageLoader("bastion.report", "templates"),
        autoescape=select_autoescape(["html", "j2"]),
    )
    findings = report.findings
    techniques = {t: catalog_name("technique", t) or "" for f in findings for t in f.techniques}
    mitigations = {}
    for m in sorted({m for f in findings for m in f.mitigations}):
        item = catalog_entry("mitigation", m)
        mitigations[m] = {
            "name": item.name if item else "",
            "description": item.description if item else "",
        }
    sections = [section_context(a) for a in report.assessments]
    return env.get_template("report.html.j2").render(
        report=report,
        findings=findings,
        sections=sections,
        technique_names=techniques,
        mitigations=mitigations,
    )


@register_renderer("html", extension="html", media_type="text/html")
class HtmlRenderer:
    """A self-contained page with plots, findings and mitigations (report.html)."""

    def render(self, report: Report) -> str:
        return render_html(report)
