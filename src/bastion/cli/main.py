"""The ``bastion`` command."""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from bastion.core.errors import BastionError

app = typer.Typer(
    name="bastion",
    help="Red-team, harden and guard machine learning models against adversarial attacks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

from bastion.cli import catalog as _catalog_cli  # noqa: E402
from bastion.cli import threats as _threats_cli  # noqa: E402

app.add_typer(_catalog_cli.app, name="catalog")
app.add_typer(_threats_cli.app, name="threats")


@app.command()
def version() -> None:
    """Print bastion's version."""
    from bastion import __version__

    console.print(f"bastion {__version__}")


def main() -> None:
    """Entry point: run the app, rendering any user error as one line."""
    try:
        app(standalone_mode=False)
    except BastionError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        err_console.print("[bold red]aborted[/]")
        sys.exit(130)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        import click

        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise


if __name__ == "__main__":
    main()
