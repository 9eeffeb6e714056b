"""The general result of any assessment, and of a report made of several.

Every family of assessment (evasion today; poisoning, extraction, membership inference,
inversion, hardening before and after next) produces an :class:`Assessment` of one shape:
its family and setting, metrics with confidence intervals, per-sample records, artifacts
(curves, images, tables), warnings about the evaluation itself, and findings. Reports are made
from this shape alone, so a new family needs no new renderer: the renderers show its metrics,
artifacts and findings, and a family may register a section of its own for more.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from typing import Any, Literal

from bastion.core.findings import Finding, Severity

__all__ = ["Artifact", "Assessment", "Metric", "Report"]

ArtifactKind = Literal["curve", "images", "table"]


@dataclass
class Metric:
    """One measured figure.

    Attributes:
        name: machine name (``robust_accuracy``).
        value: the figure.
        label: how a person reads it (``robust accuracy at eps=0.1``).
        ci95: its 95% confidence interval, where it is a rate or an estimate.
        count: ``(successes, trials)`` behind a rate.
        unit: ``fraction``, ``queries``, ``seconds``, ...
        at: the setting it was measured at (``{"epsilon": 0.1, "access": "white-box"}``).
        limited: why the figure may be weaker than it could be (``query budget``), or None.
    """

    name: str
    value: float
    label: str = ""
    ci95: tuple[float, float] | None = None
    count: tuple[int, int] | None = None
    unit: str = "fraction"
    at: dict[str, Any] = field(default_factory=dict)
    limited: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "label": self.label or self.name.replace("_", " "),
            "value": self.value,
            "ci95": list(self.ci95) if self.ci95 is not None else None,
            "count": list(self.count) if self.count is not None else None,
            "unit": self.unit,
            "at": dict(self.at),
            "limited": self.limited,
        }


@dataclass
class Artifact:
    """Something to look at rather than read.

    ``kind`` says how ``data`` is laid out:

    - ``curve``: ``{"x_label", "y_label", "series": [{"label", "x", "y", "lo"?, "hi"?}],
      "log_x"?, "log_y"?, "y_range"?}``;
    - ``images``: ``{"rows": [{"label", "images": [array (H, W) or (C, H, W) in [0, 1]],
      "captions": [...], "good": [bool, ...]}]}``: pixels are drawn in HTML, left out of JSON;
    - ``table``: ``{"columns": [...], "rows": [[...], ...]}``.
    """

    name: str
    kind: ArtifactKind
    title: str
    data: dict[str, Any]
    caption: str = ""

    def as_dict(self) -> dict[str, Any]:
        data = self.data
        if self.kind == "images":
            data = {
                "rows": [
                    {k: v for k, v in row.items() if k != "images"} | {"count": len(row["images"])}
                    for row in data.get("rows", [])
                ]
            }
        return {
            "name": self.name,
            "kind": self.kind,
            "title": self.title,
            "caption": self.caption,
            "data": data,
        }


@dataclass
class Assessment:
    """What one assessment of one family measured and concluded.

    Attributes:
        family: ``evasion``, ``poisoning``, ``extraction``, ``membership``, ...
        title: a heading for reports.
        target: the target's description (``Target.describe()``).
        dataset: the data's description.
        setting: what was run and how: threat, attacks and their parameters, samples, seed.
        metrics: the measured figures.
        records: per-sample records, where they exist.
        artifacts: curves, images and tables.
        warnings: where the evaluation itself looks wrong, and what to do.
        findings: the conclusions.
        seconds: wall time.
        complete: False when the run stopped early (interrupted, budget spent); its figures
            are what was measured until then.
        limits: what bounded the figures (a query budget, a sample shortfall), in words.
        details: the family's own JSON-ready data (the evasion sweep, say).
    """

    family: str
    title: str
    target: dict[str, Any]
    dataset: dict[str, Any]
    setting: dict[str, Any] = field(default_factory=dict)
    metrics: list[Metric] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    artifacts: list[Artifact] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True
    limits: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def metric(self, name: str, **at: Any) -> Metric:
        """The metric called ``name`` measured at ``at`` (a KeyError when there is none)."""
        for m in self.metrics:
            if m.name == name and all(m.at.get(k) == v for k, v in at.items()):
                return m
        raise KeyError(f"{name} at {at}")


@dataclass
class Report:
    """One report: the assessments of one target, rendered together (a section each)."""

    assessments: list[Assessment]
    asset: str | None = None
    command: str | None = None
    created: str = field(
        default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    )

    @property
    def complete(self) -> bool:
        return all(a.complete for a in self.assessments)

    @property
    def findings(self) -> list[Finding]:
        out = [f for a in self.assessments for f in a.findings]
        return sorted(out, key=lambda f: -f.severity.rank)

    @property
    def warnings(self) -> list[str]:
        return [w for a in self.assessments for w in a.warnings]

    @property
    def target(self) -> dict[str, Any]:
        return self.assessments[0].target if self.assessments else {}

    @property
    def dataset(self) -> dict[str, Any]:
        return self.assessments[0].dataset if self.assessments else {}

    def worst(self) -> Severity | None:
        """The most severe finding's severity (None without findings)."""
        found = self.findings
        return found[0].severity if found else None
