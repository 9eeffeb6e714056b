"""The difference between two runs of campaigns, cell by cell.

Cells are matched by target name, assessment name and setting, so two runs of one campaign
file before and after a model was retrained line up whatever their content keys. Each matched
pair is compared with :func:`bastion.assess.compare.compare_assessments`: a change counts only
when it is significant from the intervals, never on noise.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

    from bastion.campaign.store import RunRow, Store

__all__ = ["CellDiff", "RunDiff", "diff_runs"]


@dataclass
class CellDiff:
    """One matched cell: its name and the comparison of its assessments."""

    label: str
    old_key: str
    new_key: str
    comparison: Any  # bastion.assess.compare.Comparison


@dataclass
class RunDiff:
    """Two runs compared."""

    old: RunRow
    new: RunRow
    cells: list[CellDiff] = field(default_factory=list)
    #: cells in one run only, or not done in both
    unmatched: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[tuple[str, Any]]:
        return [(c.label, ch) for c in self.cells for ch in c.comparison.regressions]

    @property
    def improvements(self) -> list[tuple[str, Any]]:
        return [(c.label, ch) for c in self.cells for ch in c.comparison.improvements]

    def as_dict(self) -> dict[str, Any]:
        def change(label: str, ch: Any) -> dict[str, Any]:
            return {"cell": label, **ch.as_dict()}

        return {
            "old": {"run": self.old.id, "campaign": self.old.campaign, "created": self.old.created},
            "new": {"run": self.new.id, "campaign": self.new.campaign, "created": self.new.created},
            "cells": len(self.cells),
            "regressions": [change(lbl, ch) for lbl, ch in self.regressions],
            "improvements": [change(lbl, ch) for lbl, ch in self.improvements],
            "unchanged": sum(
                1 for c in self.cells for ch in c.comparison.changes if ch.verdict == "unchanged"
            ),
            "unmatched": self.unmatched,
        }

    def to_markdown(self) -> str:
        lines = [
            f"## Campaign diff: run #{self.old.id} -> run #{self.new.id}",
            "",
            f"{len(self.cells)} cells compared; **{len(self.regressions)} significant "
            f"regressions**, {len(self.improvements)} significant improvements.",
            "",
        ]
        rows = [("regressed", *r) for r in self.regressions] + [
            ("improved", *r) for r in self.improvements
        ]
        if rows:
            lines += ["| | cell | figure | before | after | why |", "|---|---|---|---|---|---|"]
            for verdict, label, ch in rows:
                mark = "🔴" if verdict == "regressed" else "🟢"
                lines.append(
                    f"| {mark} | {_md(label)} | {_md(_figure(ch))} | {_fmt(ch.old)} | "
                    f"{_fmt(ch.new)} | {_md(ch.why)} |"
                )
        if self.unmatched:
            lines += ["", "Not compared (in one run only, or not done in both): "]
            lines += [f"- {_md(u)}" for u in self.unmatched[:50]]
        return "\n".join(lines) + "\n"

    def print(self, console: Console) -> None:
        from rich.markup import escape
        from rich.table import Table

        console.print(
            f"run #{self.old.id} ({escape(self.old.campaign)}, {self.old.created}) -> run "
            f"#{self.new.id} ({escape(self.new.campaign)}, {self.new.created}): "
            f"{len(self.cells)} cells compared",
            highlight=False,
        )
        rows = [("regressed", *r) for r in self.regressions] + [
            ("improved", *r) for r in self.improvements
        ]
        if rows:
            table = Table(title="Significant changes", title_justify="left")
            for col in ("", "cell", "figure", "before", "after", "why"):
                table.add_column(col)
            for verdict, label, ch in rows:
                style = "bold red" if verdict == "regressed" else "green"
                table.add_row(
                    f"[{style}]{verdict}[/]",
                    escape(label),
                    escape(_figure(ch)),
                    _fmt(ch.old),
                    _fmt(ch.new),
                    escape(ch.why),
                )
            console.print(table)
        else:
            console.print("no significant change: any difference is within the noise")
        for u in self.unmatched:
            console.print(f"[dim]not compared: {escape(u)}[/]", highlight=False)

    def write(self, out: Path) -> list[Path]:
        from bastion.core.files import atomic_write

        return [
            atomic_write(out / "diff.json", json.dumps(self.as_dict(), indent=2) + "\n"),
            atomic_write(out / "diff.md", self.to_markdown()),
        ]


def _figure(change: Any) -> str:
    where = getattr(change, "where", "")
    return f"{change.label} ({where})" if where else str(change.label)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def diff_runs(store: Store, old: RunRow, new: RunRow) -> RunDiff:
    """Compare every cell the two runs share (by target, assessment and setting)."""
    from bastion.assess.compare import compare_assessments

    def index(run_id: int) -> dict[str, Any]:
        rows = store.cells(run_id)
        return {json.dumps([r.target, r.assessment, r.setting], sort_keys=True): r for r in rows}

    a, b = index(old.id), index(new.id)
    results = store.results([r.key for r in a.values()] + [r.key for r in b.values()])
    out = RunDiff(old, new)
    for name in list(dict.fromkeys([*a, *b])):
        ra, rb = a.get(name), b.get(name)
        row = ra or rb
        assert row is not None
        shown = ", ".join(f"{k}={v}" for k, v in row.setting.items())
        label = f"{row.target}/{row.assessment}" + (f"[{shown}]" if shown else "")
        found_a = results.get(ra.key) if ra is not None else None
        found_b = results.get(rb.key) if rb is not None else None
        if (
            ra is None
            or rb is None
            or found_a is None
            or found_b is None
            or found_a.status != "done"
            or found_b.status != "done"
        ):
            out.unmatched.append(label)
            continue
        comparison = compare_assessments(
            (found_a.payload or {}).get("assessments", []),
            (found_b.payload or {}).get("assessments", []),
        )
        out.cells.append(CellDiff(label, ra.key, rb.key, comparison))
    return out
