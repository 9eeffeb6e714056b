"""``report.md``: the findings and figures as Markdown, for a pull-request comment."""

from __future__ import annotations

from typing import Any

from bastion.core.assessment import Assessment, Metric, Report
from bastion.report.base import format_setting, metric_text, register_renderer, section_for
from bastion.report.json import catalog_name

__all__ = ["MarkdownRenderer", "cell", "format_metric"]

_ATLAS = "https://atlas.mitre.org"


def cell(value: Any) -> str:
    """A value made safe for a Markdown table cell."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_metric(m: Metric) -> str:
    value, ci = metric_text(m)
    text = f"{value} ({ci})" if ci else value
    if m.limited:
        text += f" [limited: {m.limited}]"
    return text


def _link(kind: str, ident: str) -> str:
    path = "techniques" if kind == "technique" else "mitigations"
    if ident.startswith("AML."):
        return f"[{ident}]({_ATLAS}/{path}/{ident})"
    return f"`{ident}`"


def _assessment(a: Assessment) -> list[str]:
    lines = [f"## {a.title}", ""]
    intro = section_for(a.family).intro_markdown(a)
    if intro:
        lines += [intro, ""]
    if not a.complete:
        lines += ["> **Incomplete**: the run stopped early; the figures are what it measured.", ""]
    for limit in a.limits:
        lines += [f"> Limited: {limit}", ""]
    headline = [m for m in a.metrics if not m.at or "epsilon" not in m.at or "access" not in m.at]
    if headline:
        lines += ["| metric | value (95% CI) |", "| --- | --- |"]
        lines += [f"| {cell(m.label or m.name)} | {cell(format_metric(m))} |" for m in headline]
        lines.append("")
    for art in a.artifacts:
        if art.kind != "table":
            continue
        cols = art.data["columns"]
        lines += [f"**{art.title}**", ""]
        lines += ["| " + " | ".join(cell(c) for c in cols) + " |"]
        lines += ["| " + " | ".join("---" for _ in cols) + " |"]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in art.data["rows"]]
        lines.append("")
    if a.warnings:
        lines += ["**Is this evaluation trustworthy?**", ""]
        lines += [f"- :warning: {w}" for w in a.warnings]
        lines.append("")
    if a.setting:
        lines += ["<details><summary>Setup</summary>", ""]
        lines += [
            f"- {k.replace('_', ' ')}: {cell(format_setting(v))}" for k, v in a.setting.items()
        ]
        lines += ["", "</details>", ""]
    return lines


@register_renderer("md", extension="md", media_type="text/markdown")
class MarkdownRenderer:
    """Findings table and figures in Markdown, for a pull-request comment (report.md)."""

    def render(self, report: Report) -> str:
        t = report.target
        lines = [
            f"# bastion report: {cell(t.get('name', 'target'))}",
            "",
            f"{cell(t.get('kind', ''))}, {cell(t.get('access', ''))} target; data "
            f"{cell(report.dataset.get('name', ''))}; {report.created}"
            + ("" if report.complete else " (**incomplete**)"),
            "",
            "## Findings",
            "",
        ]
        findings = report.findings
        if findings:
            lines += ["| severity | finding | MITRE ATLAS | summary |", "| --- | --- | --- | --- |"]
            for f in findings:
                sev = f.severity.value.upper() + (" (unreliable)" if f.unreliable else "")
                atlas = ", ".join(_link("technique", x) for x in f.techniques)
                lines.append(f"| {sev} | {cell(f.title)} | {atlas} | {cell(f.summary)} |")
            lines.append("")
            mitigations = sorted({m for f in findings for m in f.mitigations})
            if mitigations:
                lines += ["Mitigations to consider:", ""]
                for m in mitigations:
                    lines.append(
                        f"- {_link('mitigation', m)} {cell(catalog_name('mitigation', m) or '')}"
                    )
                lines.append("")
            for f in findings:
                if f.unreliable:
                    lines += [
                        f"> **{cell(f.title)}**: the figure is unreliable: {cell(f.unreliable)}",
                        "",
                    ]
        else:
            lines += ["No findings.", ""]
        for a in report.assessments:
            lines += _assessment(a)
        if report.command:
            lines += ["Rerun:", "", "```", report.command, "```", ""]
        return "\n".join(lines).rstrip() + "\n"
