"""``bastion threats``: threat modeling, control gap analysis and incident mapping."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.catalog import load_catalog
from bastion.cli._guard import add_columns, user_errors
from bastion.core.errors import ConfigError
from bastion.threats import build_threat_model, load_plan, load_system
from bastion.threats.gaps import EvidenceReport, analyse_gaps, load_controls, load_evidence
from bastion.threats.incident import known_signals, map_incident
from bastion.threats.render import write_gaps, write_threat_model
from bastion.threats.schemas import SCHEMAS, generate_schema

app = typer.Typer(
    name="threats",
    help="Threat-model an AI system, find control gaps, map incident signals to techniques.",
    no_args_is_help=True,
)
console = Console(emoji=False)

_BAND_STYLE = {"critical": "bold red", "high": "red", "medium": "yellow", "low": "green"}
_STATUS_STYLE = {
    "uncovered": "bold red",
    "covered-failing": "red",
    "covered-unverified": "yellow",
    "covered-measured": "green",
}


@app.command()
def model(
    system: Annotated[Path, typer.Argument(help="System description (YAML or JSON).")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for the Markdown, HTML, JSON, layer, plan.")
    ] = Path("threat-model"),
    top: Annotated[int, typer.Option(help="Rows to show in the console.")] = 15,
) -> None:
    """Rank applicable ATLAS techniques, attack paths and mitigations for a system.

    Writes threat-model.md, threat-model.html, threat-model.json, navigator-layer.json (an
    ATLAS Navigator layer) and assessment-plan.json (for bastion scan --plan) into --out.
    """
    with user_errors():
        tm = build_threat_model(load_system(system))
        paths = write_threat_model(tm, out)
    table = Table(title=f"{tm.system.name}: top techniques ({len(tm.techniques)} applicable)")
    add_columns(table, ("technique", "name", "asset", "L", "I", "risk", "bastion attacks"))
    for t in tm.techniques[:top]:
        table.add_row(
            t.technique,
            t.name,
            t.asset,
            str(t.likelihood),
            str(t.impact),
            f"[{_BAND_STYLE[t.band]}]{t.risk} {t.band}[/]",
            ", ".join(t.attacks) or "-",
        )
    console.print(table)
    if tm.paths:
        console.print("[bold]Attack paths[/]")
        for p in tm.paths[:5]:
            console.print(
                f"  [{_BAND_STYLE[p.band]}]{p.risk:>2} {p.band:<8}[/] "
                f"{p.name} ({p.asset}): {p.chain}",
                highlight=False,
            )
    if tm.impacts:
        worst: dict[str, str] = {}
        for i in tm.impacts:
            worst.setdefault(i.name, i.level.value)
        console.print(
            "[bold]Harms that would follow[/] (impact, not ranked): "
            + ", ".join(f"{name} ({level})" for name, level in worst.items()),
            highlight=False,
        )
    console.print(
        "[bold]Top mitigations[/]: " + ", ".join(f"{m.id} {m.name}" for m in tm.mitigations[:5])
    )
    for kind, path in paths.items():
        console.print(f"wrote {kind}: {path}", highlight=False)


@app.command()
def gaps(
    system: Annotated[Path, typer.Argument(help="System description (YAML or JSON).")],
    controls: Annotated[Path, typer.Option("--controls", "-c", help="controls.yaml")],
    evidence: Annotated[
        list[Path] | None,
        typer.Option("--evidence", "-e", help="A bastion scan report.json (repeatable)."),
    ] = None,
    evidence_for: Annotated[
        list[str] | None,
        typer.Option(
            "--evidence-for",
            help=(
                "Bind scan reports that do not say which model they measured: ASSET binds "
                "every such --evidence report to model ASSET; ASSET=REPORT binds one report "
                "(and adds it as evidence). Repeatable."
            ),
        ),
    ] = None,
    allow_unmatched: Annotated[
        bool,
        typer.Option(
            "--allow-unmatched",
            help="Go on when no scan report applies to any model (they are listed as unused).",
        ),
    ] = False,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for gaps.html and gaps.json.")
    ] = Path("gaps"),
    top: Annotated[int, typer.Option(help="Plan rows to show in the console.")] = 15,
) -> None:
    """Compare declared controls and scan evidence with the threat model.

    A scan report counts only for the model it measured: the asset it was scanned for with
    --plan, a model whose artifact (or name or id) is the report's target name, or the asset
    given with --evidence-for. Other reports are not used, with a warning; if none applies at
    all, gaps stops with an error unless --allow-unmatched.
    """
    with user_errors():
        tm = build_threat_model(load_system(system))
        reports = _load_bound_evidence(list(evidence or []), list(evidence_for or []))
        ga = analyse_gaps(tm, load_controls(controls), reports, allow_unmatched=allow_unmatched)
        paths = write_gaps(ga, out)
    for warning in ga.warnings:
        console.print(f"[yellow]warning:[/] {escape(warning)}", highlight=False, soft_wrap=True)
    counts = ga.counts()
    console.print(
        "  ".join(f"[{_STATUS_STYLE[s]}]{s}[/]: {n}" for s, n in counts.items()), highlight=False
    )
    table = Table(title="plan, most urgent first")
    add_columns(table, ("#", "technique", "asset", "status", "risk", "action"))
    for i, e in enumerate(ga.plan[:top], 1):
        table.add_row(
            str(i),
            f"{e.technique} {e.name}",
            e.asset,
            f"[{_STATUS_STYLE[e.status.value]}]{e.status.value}[/]",
            str(e.risk),
            e.action,
        )
    console.print(table)
    for kind, path in paths.items():
        console.print(f"wrote {kind}: {path}", highlight=False)


def _load_bound_evidence(paths: list[Path], bindings: list[str]) -> list[EvidenceReport]:
    """Read the reports, applying ``--evidence-for`` (``ASSET`` or ``ASSET=REPORT``).

    ``ASSET=REPORT`` binds that report (an error if the report names another asset);
    a bare ``ASSET`` binds every other report that names no asset of its own.
    """
    bare: list[str] = []
    explicit: dict[Path, str] = {}
    for binding in bindings:
        name, sep, file = binding.partition("=")
        if not name or (sep and not file):
            raise ConfigError(f"--evidence-for {binding!r}: use ASSET or ASSET=REPORT")
        if sep:
            explicit[Path(file).resolve()] = name
            if Path(file).resolve() not in {p.resolve() for p in paths}:
                paths.append(Path(file))
        else:
            bare.append(name)
    if len(bare) > 1:
        raise ConfigError(
            f"--evidence-for names several assets without a report ({', '.join(bare)}); "
            "bind each report with ASSET=REPORT"
        )
    if bare and not paths:
        raise ConfigError("--evidence-for binds scan reports: give them with --evidence")
    out: list[EvidenceReport] = []
    for path in paths:
        asset = explicit.get(path.resolve())
        report = load_evidence(path, bound_to=asset)
        if asset is None and bare and report.asset is None:
            report = report.model_copy(update={"bound_to": bare[0]})
        out.append(report)
    return out


_SIGNAL_HELP = "Observed signal names, comma-separated or repeated. Known: " + ", ".join(
    known_signals()
)


@app.command()
def incident(
    signals: Annotated[list[str], typer.Option("--signals", "-s", help=_SIGNAL_HELP)],
    system: Annotated[
        Path | None, typer.Option(help="Restrict to techniques applicable to this system.")
    ] = None,
    top: Annotated[int, typer.Option(help="How many candidate techniques to keep.")] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Map observed signals to candidate techniques and contain/evict/restore steps."""
    with user_errors():
        names = [s for chunk in signals for s in chunk.split(",")]
        tm = build_threat_model(load_system(system)) if system else None
        report = map_incident(names, threat_model=tm, top=top)
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    if not report.candidates:
        console.print("No catalog technique explains these signals for this system.")
        return
    table = Table(title="candidate techniques")
    add_columns(table, ("technique", "name", "matched signals", "risk"))
    for c in report.candidates:
        table.add_row(
            c.technique, c.name, ", ".join(c.matched), "-" if c.risk is None else str(c.risk)
        )
    console.print(table)
    cat = load_catalog()
    for phase in ("contain", "evict", "restore"):
        console.print(f"[bold]{phase}[/]")
        for step in report.phase(phase):
            controls = ", ".join(f"{c} {cat.mitigations[c].name}" for c in step.controls)
            console.print(f"  - {step.step} [dim]({controls})[/]", highlight=False)


@app.command()
def schema(
    name: Annotated[str, typer.Argument(help=f"One of: {', '.join(SCHEMAS)}.")],
) -> None:
    """Print the JSON Schema of a system description, controls file or assessment plan."""
    with user_errors():
        typer.echo(json.dumps(generate_schema(name), indent=2))


@app.command()
def validate(
    path: Annotated[Path, typer.Argument(help="The file to check.")],
    kind: Annotated[str, typer.Option(help=f"One of: {', '.join(SCHEMAS)}.")] = "system",
) -> None:
    """Validate a system description, controls file or assessment plan."""
    with user_errors():
        if kind == "system":
            load_system(path)
        elif kind == "controls":
            load_controls(path)
        elif kind == "plan":
            load_plan(path)
        else:
            raise ConfigError(f"unknown kind {kind!r}; use one of {', '.join(SCHEMAS)}")
    console.print(f"{path}: valid {kind}", highlight=False)
