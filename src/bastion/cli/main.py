"""The ``bastion`` command."""

from __future__ import annotations

import os
import sys
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape

from bastion.cli import campaign as _campaign_cli
from bastion.cli import catalog as _catalog_cli
from bastion.cli import data as _data_cli
from bastion.cli import harden as _harden_cli
from bastion.cli import incident as _incident_cli
from bastion.cli import patch as _patch
from bastion.cli import scan as _scan
from bastion.cli import serve as _serve_cli
from bastion.cli import threats as _threats_cli
from bastion.cli._guard import err_console, render_error
from bastion.core.errors import BastionError

app = typer.Typer(
    name="bastion",
    help="Red-team, harden and guard machine learning models against adversarial attacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(emoji=False)

app.command("scan")(_scan.scan)
app.command("patch")(_patch.patch)
app.command("harden")(_harden_cli.harden)
app.add_typer(_catalog_cli.app, name="catalog")
app.add_typer(_threats_cli.app, name="threats")
app.add_typer(_data_cli.app, name="data")
app.add_typer(_data_cli.model_app, name="model")
app.command("serve")(_serve_cli.serve)
app.add_typer(_serve_cli.keys_app, name="keys")
app.add_typer(_incident_cli.app, name="incident")
app.add_typer(_campaign_cli.app, name="campaign")


@app.command()
def attacks() -> None:
    """List the registered attacks: family, access needed, norms, cost and ATLAS techniques."""
    from bastion.core.registry import ATTACKS

    _plugin_table(
        "Registered attacks",
        [
            (
                e.name,
                f"{e.family}, {e.access.value}; norms {', '.join(n.value for n in e.norms) or '-'}"
                f"; data {', '.join(e.data_kinds)}; cost {e.cost}",
                e.techniques,
                e.summary,
                e.defaults,
            )
            for e in ATTACKS
        ],
    )


@app.command()
def defences() -> None:
    """List the registered defences: kind, what they counter, and their mitigation ids."""
    from bastion.core.registry import DEFENCES

    _plugin_table(
        "Registered defences",
        [
            (
                e.name,
                f"{e.defence_kind}, {e.family}; counters {', '.join(e.techniques) or '-'}",
                e.mitigations,
                e.summary,
                e.defaults,
            )
            for e in DEFENCES
        ],
    )


def _plugin_table(title: str, rows: list[tuple[str, str, tuple[str, ...], str, Any]]) -> None:
    """One block per plugin: it fits 80 columns and never cuts an id a user will copy."""
    console.print(f"[bold]{title}[/]")
    for name, what, ids, summary, defaults in rows:
        console.print(f"\n[bold cyan]{name}[/]  {what}", highlight=False, soft_wrap=False)
        if ids:
            console.print(f"  ids: {' '.join(ids)}", highlight=False, soft_wrap=True)
        if defaults:
            shown = ", ".join(f"{k}={v}" for k, v in defaults.items())
            console.print(f"  scan defaults: {shown}", highlight=False)
        if summary:
            console.print(f"  {summary}", highlight=False)


@app.command()
def version() -> None:
    """Print bastion's version."""
    from bastion import __version__

    console.print(f"bastion {__version__}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app, rendering any error as one line and a non-zero exit."""
    try:
        code = app(args=argv, standalone_mode=False)
    except BastionError as exc:
        render_error(exc)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:
        # usage errors of click (or the click that typer vendors) know how to show themselves
        show, status = getattr(exc, "show", None), getattr(exc, "exit_code", None)
        if callable(show) and isinstance(status, int):
            show()
            sys.exit(status)
        if os.environ.get("BASTION_DEBUG"):
            raise
        err_console.print(
            f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
            "(a bug in bastion: set BASTION_DEBUG=1 to see the traceback, and please report it)",
            highlight=False,
            soft_wrap=True,
            markup=True,
        )
        sys.exit(70)
    # outside standalone mode click returns the status of typer.Exit instead of exiting
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
