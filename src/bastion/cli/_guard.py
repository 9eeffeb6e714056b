"""Shared helpers for bastion's sub-commands."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import NoReturn

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from bastion.core.errors import BastionError

__all__ = ["add_columns", "err_console", "fail", "render_error", "user_errors"]

err_console = Console(stderr=True, emoji=False)


@contextmanager
def user_errors() -> Iterator[None]:
    """Render a :class:`BastionError` as one line on stderr and exit with its code.

    ``SystemExit`` (not ``typer.Exit``) so that the code survives ``main()``, which runs the
    app with ``standalone_mode=False``, and typer's test runner alike.
    """
    try:
        yield
    except BastionError as exc:
        render_error(exc)
        raise SystemExit(exc.exit_code) from None


def render_error(exc: BastionError) -> None:
    """One line on stderr: what went wrong, in the user's terms."""
    err_console.print(
        f"[bold red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True, emoji=False
    )


def fail(code: int = 1) -> NoReturn:
    """Exit with ``code`` after a command has already said why."""
    raise SystemExit(code)


#: columns that hold ids a user copies: never wrapped or cut
_ID_COLUMNS = {"id", "technique", "mitigation"}


def add_columns(table: Table, names: Iterable[str]) -> None:
    """Add ``names`` as columns; an id column keeps its ids whole at any terminal width."""
    for name in names:
        if name in _ID_COLUMNS:
            table.add_column(name, no_wrap=True, min_width=len("AML.T0000.000"))
        else:
            table.add_column(name)
