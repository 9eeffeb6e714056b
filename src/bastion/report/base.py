"""The renderer and section registries: report formats and per-family sections as plugins.

A renderer turns a :class:`~bastion.core.assessment.Report` into one file (``report.json``,
``report.html``, ``report.sarif``, ``report.md``). A section renders one family's assessment
inside the HTML and Markdown reports; a family with no section of its own gets the generic one
(its metrics, tables, curves, images, warnings and findings), so a new family needs nothing
here to be reported.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bastion.core.assessment import Assessment, Metric, Report
from bastion.core.errors import ConfigError
from bastion.core.files import atomic_write
from bastion.core.plugins import load_package, load_plugins

__all__ = [
    "RENDERERS",
    "SECTIONS",
    "Renderer",
    "RendererRegistry",
    "Section",
    "register_renderer",
    "register_section",
    "write_report",
]


class Renderer(Protocol):
    """What a report format implements."""

    def render(self, report: Report) -> str: ...


@dataclass(frozen=True)
class RendererEntry:
    name: str
    extension: str
    media_type: str
    summary: str
    factory: Callable[[], Renderer]


class RendererRegistry:
    """Report formats by name."""

    def __init__(self) -> None:
        self._entries: dict[str, RendererEntry] = {}

    def register(
        self, name: str, *, extension: str, media_type: str
    ) -> Callable[[type[Any]], type[Any]]:
        def decorate(cls: type[Any]) -> type[Any]:
            doc = (cls.__doc__ or "").strip().splitlines()
            self._entries[name] = RendererEntry(
                name, extension, media_type, doc[0] if doc else "", cls
            )
            return cls

        return decorate

    def get(self, name: str) -> RendererEntry:
        load_plugins()
        try:
            return self._entries[name]
        except KeyError:
            raise ConfigError(
                f"unknown report format {name!r}; known: {', '.join(self.names())}"
            ) from None

    def names(self) -> list[str]:
        load_plugins()
        return sorted(self._entries)

    def __iter__(self) -> Iterator[RendererEntry]:
        return iter(self._entries[n] for n in self.names())

    def __contains__(self, name: object) -> bool:
        load_plugins()
        return name in self._entries


RENDERERS = RendererRegistry()
register_renderer = RENDERERS.register


class Section:
    """How a family's assessment appears in HTML and Markdown. The base is generic; a family
    overrides :meth:`intro_html` / :meth:`intro_markdown` to say more before the generic parts."""

    def intro_html(self, assessment: Assessment) -> str:
        return ""

    def intro_markdown(self, assessment: Assessment) -> str:
        return ""


SECTIONS: dict[str, Section] = {}


def register_section(family: str) -> Callable[[type[Section]], type[Section]]:
    """Register the section class that renders assessments of ``family``."""

    def decorate(cls: type[Section]) -> type[Section]:
        SECTIONS[family] = cls()
        return cls

    return decorate


def section_for(family: str) -> Section:
    return SECTIONS.get(family) or Section()


def metric_text(m: Metric) -> tuple[str, str]:
    """A metric's value and its 95% interval as text: percentages for a fraction, four
    significant digits and the unit otherwise (the interval empty when there is none)."""
    if m.unit == "fraction":
        value = f"{m.value:.1%}"
        ci = f"{m.ci95[0]:.1%}-{m.ci95[1]:.1%}" if m.ci95 is not None else ""
    else:
        value = f"{m.value:.4g} {m.unit}".strip()
        ci = f"{m.ci95[0]:.4g}-{m.ci95[1]:.4g}" if m.ci95 is not None else ""
    return value, ci


def format_setting(value: Any) -> str:
    """A setting as a person reads it: mappings as ``key: value`` pairs, lists comma-joined,
    empty values left out."""
    if isinstance(value, dict):
        parts = [f"{k}: {format_setting(v)}" for k, v in value.items() if v not in (None, {}, [])]
        return "; ".join(parts) or "-"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_setting(v) for v in value) or "-"
    return str(value)


def parse_formats(text: str) -> list[str]:
    """``"html,json"`` -> ``["html", "json"]``, each a registered format; ConfigError otherwise."""
    names = [f.strip().lower() for f in text.split(",") if f.strip()]
    load_package("bastion.report")
    if not all(n in RENDERERS._entries for n in names):
        load_plugins()  # a format from a plugin package
    if not names:
        raise ConfigError(f"--format is empty; choose from {', '.join(RENDERERS.names())}")
    unknown = [n for n in names if n not in RENDERERS]
    if unknown:
        raise ConfigError(
            f"unknown report format {', '.join(unknown)}; "
            f"choose from {', '.join(RENDERERS.names())}"
        )
    return list(dict.fromkeys(names))


def write_report(report: Report, folder: Path, formats: list[str]) -> list[Path]:
    """Render ``report`` in each of ``formats`` into ``folder`` (atomically); the paths written.

    JSON is rendered first so a crash in a richer format still leaves the data behind.
    """
    order = sorted(formats, key=lambda f: f != "json")
    written = []
    for name in order:
        entry = RENDERERS.get(name)
        text = entry.factory().render(report)
        written.append(atomic_write(folder / f"report.{entry.extension}", text))
    return [p for f in formats for p in written if p.suffix == "." + RENDERERS.get(f).extension]
