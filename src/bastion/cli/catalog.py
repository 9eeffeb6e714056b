"""``bastion catalog``: browse, search, verify and measure the threat catalog."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from bastion.catalog import (
    AttackPath,
    Mitigation,
    Signal,
    Tactic,
    Technique,
    coverage,
    load_aidefend,
    load_atlas,
    load_catalog,
    verify,
)
from bastion.cli._guard import add_columns, fail, user_errors
from bastion.core.errors import ConfigError

app = typer.Typer(
    name="catalog",
    help="Browse the threat catalog (MITRE ATLAS techniques, ATLAS and AIDEFEND mitigations).",
    no_args_is_help=True,
)
console = Console(emoji=False)

_KINDS = ("techniques", "mitigations", "tactics", "signals", "paths")


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


@app.command("list")
def list_entries(
    kind: Annotated[
        str, typer.Option("--kind", "-k", help=f"What to list: {', '.join(_KINDS)}.")
    ] = "techniques",
    tactic: Annotated[
        str | None, typer.Option(help="Only techniques of this tactic (AML.TA00xx).")
    ] = None,
    executable: Annotated[
        bool, typer.Option("--executable", help="Only techniques bastion could execute.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List catalog entries of one kind."""
    with user_errors():
        if kind not in _KINDS:
            raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(_KINDS)}")
        cat = load_catalog()
        if kind == "techniques":
            items = list(cat.techniques.values())
            if tactic:
                if tactic not in cat.tactics:
                    raise ConfigError(f"unknown tactic {tactic!r}")
                items = [t for t in items if tactic in t.tactics]
            if executable:
                items = [t for t in items if t.executable]
            if as_json:
                _print_json([t.model_dump(mode="json") for t in items])
                return
            table = Table(title=f"{len(items)} techniques")
            add_columns(table, ("id", "name", "tactics", "harms", "bastion attacks"))
            for t in items:
                table.add_row(
                    t.id,
                    ("  " if t.parent else "") + t.name,
                    ", ".join(cat.tactics[x].name for x in t.tactics),
                    ", ".join(h.value for h in t.harms) or ("enabler" if t.enabler else ""),
                    ", ".join(t.attacks) or ("-" if t.executable else ""),
                )
            console.print(table)
        elif kind == "mitigations":
            mits = list(cat.mitigations.values())
            if as_json:
                _print_json([m.model_dump(mode="json") for m in mits])
                return
            table = Table(title=f"{len(mits)} mitigations")
            add_columns(table, ("id", "name", "framework", "phase", "counters"))
            for m in mits:
                table.add_row(
                    m.id,
                    m.name,
                    m.framework,
                    ", ".join(p.value for p in m.phase),
                    str(len(m.techniques)),
                )
            console.print(table)
        else:
            rows: list[Tactic | Signal | AttackPath] = list(getattr(cat, kind).values())
            if as_json:
                _print_json([r.model_dump(mode="json") for r in rows])
                return
            table = Table(title=f"{len(rows)} {kind}")
            add_columns(table, ("id", "name", "description"))
            for r in rows:
                table.add_row(r.id, r.name, r.description)
            console.print(table)


@app.command()
def show(
    entry_id: Annotated[str, typer.Argument(metavar="ID", help="A technique, mitigation, ...")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one entry in full: technique, mitigation, tactic, signal, playbook or path."""
    with user_errors():
        cat = load_catalog()
        entry = cat.get(entry_id)
        data = entry.model_dump(mode="json")
        if isinstance(entry, Technique):
            data["mitigations"] = [m.id for m in cat.mitigations_for(entry.id)]
            data["subtechniques"] = [c.id for c in cat.children(entry.id)]
        if as_json:
            _print_json(data)
            return
        console.print(f"[bold]{entry.id}[/] {entry.name}")
        for key, value in data.items():
            if key in ("id", "name") or value in (None, [], (), ""):
                continue
            if isinstance(value, list):
                value = ", ".join(json.dumps(v) if isinstance(v, dict) else str(v) for v in value)
            elif isinstance(value, dict):
                value = json.dumps(value)
            console.print(f"  [cyan]{key}[/]: {value}", highlight=False)
        if isinstance(entry, Mitigation) and not entry.defences:
            console.print("  [dim]no registered bastion defence implements it yet[/]")


@app.command()
def search(
    text: Annotated[str, typer.Argument(help="Words that must all appear (case-insensitive).")],
) -> None:
    """Search ids, names and descriptions of techniques, mitigations, tactics and signals."""
    with user_errors():
        found = load_catalog().search(text)
        if not found:
            console.print(f"nothing matches {text!r}")
            fail(1)
        table = Table(title=f"{len(found)} matches for {text!r}")
        add_columns(table, ("id", "kind", "name"))
        for e in found:
            table.add_row(e.id, type(e).__name__.lower(), e.name)
        console.print(table)


@app.command("coverage")
def coverage_cmd(
    atlas: Annotated[
        Path | None, typer.Option(help="Your copy of ATLAS.yaml, to count what is missing.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """How much of ATLAS the catalog covers, and how much bastion can execute."""
    with user_errors():
        cat = load_catalog()
        report = coverage(cat, load_atlas(atlas) if atlas else None)
        if as_json:
            _print_json(report.as_dict())
            return
        source = f"ATLAS {report.atlas_version}" if report.atlas_version else "the catalog"
        console.print(
            f"Applicable ATLAS techniques in the catalog: [bold]{report.in_catalog}"
            f"/{report.applicable}[/] ({report.catalog_fraction:.0%}, applicable set from {source})"
        )
        console.print(
            f"Software-executable techniques linked to a registered bastion attack: "
            f"[bold]{len(report.linked)}/{report.executable}[/] ({report.executable_fraction:.0%})"
        )
        console.print(
            f"Mitigations: {report.atlas_mitigations} ATLAS"
            + (f" of {report.atlas_mitigations_total}" if report.atlas_mitigations_total else "")
            + f", {report.aidefend_techniques} AIDEFEND; "
            f"{len(report.defended)} with a registered bastion defence"
        )
        table = Table(title="by tactic")
        add_columns(table, ("tactic", "techniques", "executable", "linked to an attack"))
        for t in report.by_tactic:
            table.add_row(
                f"{t.tactic} {t.name}", str(t.techniques), str(t.executable), str(t.linked)
            )
        console.print(table)
        if report.unlinked_executable:
            console.print(
                "Executable but no bastion attack yet: " + ", ".join(report.unlinked_executable)
            )
        if report.missing:
            console.print("[yellow]Applicable but missing:[/] " + ", ".join(report.missing))


@app.command("verify")
def verify_cmd(
    atlas: Annotated[Path | None, typer.Option(help="Your copy of ATLAS.yaml.")] = None,
    aidefend: Annotated[
        Path | None, typer.Option(help="Your copy of AIDEFEND's data.json.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Check every ATLAS and AIDEFEND id and name in the catalog against the frameworks."""
    with user_errors():
        if atlas is None and aidefend is None:
            raise ConfigError("give --atlas PATH and/or --aidefend PATH")
        report = verify(
            load_catalog(),
            load_atlas(atlas) if atlas else None,
            load_aidefend(aidefend) if aidefend else None,
        )
        if as_json:
            _print_json(report.as_dict())
        else:
            checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
            console.print(f"Checked {checked}.")
            for e in report.errors:
                console.print(f"[red]error[/] {e}", highlight=False)
            for w in report.warnings:
                console.print(f"[yellow]warning[/] {w}", highlight=False)
            for n in report.notes:
                console.print(f"[dim]note {n}[/]", highlight=False)
            status = "[green]OK[/]" if report.ok else f"[red]{len(report.errors)} error(s)[/]"
            console.print(
                f"{status}: {len(report.warnings)} warning(s), {len(report.notes)} note(s)"
            )
        if not report.ok:
            fail(1)
