"""``bastion incident``: the gateway's incidents and the playbook actions that answer them.

A thin edge over :mod:`bastion.serve.incidents` and :mod:`bastion.serve.response`; nothing of
SQLAlchemy is imported until a command runs.
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from bastion.cli._guard import err_console, user_errors

if TYPE_CHECKING:
    from bastion.serve.response import Responder

console = Console(emoji=False)

app = typer.Typer(
    name="incident",
    help="The gateway's incidents: list, show, acknowledge, resolve, and act on them.",
    no_args_is_help=True,
)

_POLICY_HELP = "Policy file (YAML or JSON); its 'database' holds the incidents."
_DB_HELP = "Database URL (overrides the policy's): sqlite:///PATH or postgresql://..."
PolicyOpt = Annotated[Path | None, typer.Option("--policy", "-p", help=_POLICY_HELP)]
DbOpt = Annotated[str | None, typer.Option("--db", help=_DB_HELP)]
ActorOpt = Annotated[str, typer.Option("--actor", help="Who acts, for the timeline.")]


def _say(text: str) -> None:
    err_console.print(text, highlight=False, soft_wrap=True, markup=False)


def _responder(policy: Path | None, db: str | None, actor: str = "operator") -> Responder:
    from bastion._extras import require

    require("sqlalchemy")
    from bastion.serve.policy import load_policy
    from bastion.serve.response import Responder
    from bastion.serve.store import connect

    url = db or load_policy(policy).database
    return Responder(connect(url), actor=actor)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


@app.command("list")
def list_(
    status: Annotated[
        str | None, typer.Option(help="Only these: open, acknowledged or resolved.")
    ] = None,
    policy: PolicyOpt = None,
    db: DbOpt = None,
) -> None:
    """List incidents, newest first."""
    from rich.table import Table

    with user_errors():
        found = _responder(policy, db).incidents.list(status=status)
    table = Table(title=f"{len(found)} incidents")
    for column in ("id", "status", "severity", "opened", "key", "detector", "techniques"):
        table.add_column(column, no_wrap=column in ("id", "key", "techniques"))
    for i in found:
        table.add_row(
            str(i.id),
            i.status,
            i.severity,
            _when(i.opened_at),
            i.key_id or "-",
            f"{i.detector}/{i.check}",
            ", ".join(i.techniques),
        )
    console.print(table)


@app.command("show")
def show(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print it as JSON.")] = False,
    policy: PolicyOpt = None,
    db: DbOpt = None,
) -> None:
    """An incident: evidence, techniques, its timeline and the catalog playbook's steps."""
    with user_errors():
        incident = _responder(policy, db).incidents.get(incident_id)
    if as_json:
        print(json.dumps(incident.as_dict(), indent=2))  # noqa: T201 - for a script to read
        return
    from bastion.catalog import load_catalog

    catalog = load_catalog(links=False)
    out = console.print
    out(f"[bold]incident {incident.id}[/] ({incident.status}, {incident.severity})")
    out(incident.title, markup=False)
    out(f"key: {incident.key_id or '-'}   detector: {incident.detector}/{incident.check}")
    for tid in incident.techniques:
        tech = catalog.techniques.get(tid)
        out(f"technique: {tid} {tech.name if tech else ''}", markup=False)
    out(f"signals: {', '.join(incident.signals)}", markup=False)
    out(f"evidence: {json.dumps(incident.evidence, sort_keys=True)}", markup=False)
    out("[bold]timeline[/]")
    for e in incident.timeline:
        detail = json.dumps(e.detail, sort_keys=True, default=str)
        out(f"  {_when(e.ts)}  {e.actor:<20} {e.action:<16} {detail}", markup=False)
    book = catalog.playbooks.get(incident.playbook or "")
    if book is not None:
        out(f"[bold]playbook: {book.name}[/] ({book.id})")
        for phase in ("contain", "evict", "restore"):
            for step in getattr(book, phase):
                out(f"  {phase:<8} {step.step}", markup=False)


@app.command("ack")
def ack(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    note: Annotated[str, typer.Option(help="A note for the timeline.")] = "",
    actor: ActorOpt = "operator",
    policy: PolicyOpt = None,
    db: DbOpt = None,
) -> None:
    """Acknowledge an incident: someone is on it."""
    with user_errors():
        _responder(policy, db, actor).incidents.ack(incident_id, note=note, actor=actor)
    _say(f"incident {incident_id} acknowledged")


@app.command("resolve")
def resolve(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    note: Annotated[str, typer.Option(help="A note for the timeline.")] = "",
    actor: ActorOpt = "operator",
    policy: PolicyOpt = None,
    db: DbOpt = None,
) -> None:
    """Resolve an incident (a quarantine or block it set stays until 'act ID release')."""
    with user_errors():
        _responder(policy, db, actor).incidents.resolve(incident_id, note=note, actor=actor)
    _say(f"incident {incident_id} resolved")


_ACTION_HELP = (
    "quarantine, block, release, revoke, rotate (the incident's key unless --key), "
    "kill-switch (--off lifts it), rollback (--version), rescan"
)


@app.command("act")
def act(
    incident_id: Annotated[int, typer.Argument(help="The incident's id.")],
    action: Annotated[str, typer.Argument(help=_ACTION_HELP)],
    key: Annotated[str | None, typer.Option(help="Another key (name or id).")] = None,
    off: Annotated[bool, typer.Option("--off", help="kill-switch: switch it off.")] = False,
    version: Annotated[int | None, typer.Option(help="rollback: the model version.")] = None,
    target: Annotated[
        str | None, typer.Option(help="rescan: the model (default: the served version's file).")
    ] = None,
    data: Annotated[str | None, typer.Option(help="rescan: the data to attack it with.")] = None,
    out: Annotated[Path, typer.Option(help="rescan: where the report goes.")] = Path("rescan"),
    scan_arg: Annotated[
        list[str] | None, typer.Option("--scan-arg", help="rescan: a bastion scan argument.")
    ] = None,
    record_only: Annotated[
        bool, typer.Option("--record-only", help="rescan: record the command, do not run it.")
    ] = False,
    actor: ActorOpt = "operator",
    policy: PolicyOpt = None,
    db: DbOpt = None,
) -> None:
    """Act on an incident; the action goes on its timeline."""
    from bastion.core.errors import ConfigError
    from bastion.serve.response import ACTIONS

    with user_errors():
        if action not in ACTIONS:
            raise ConfigError(f"unknown action {action!r}; use one of {', '.join(ACTIONS)}")
        r = _responder(policy, db, actor)
        r.incidents.get(incident_id)
        result: Any = None
        if action == "rotate":
            new, secret = r.rotate(incident_id, key)
            _say(f"rotated to {new.name} (id {new.key_id}); the old key is revoked. The new key:")
            print(secret)  # noqa: T201 - shown once, on stdout, for a script to take
            return
        if action in ("quarantine", "block", "release", "revoke"):
            result = getattr(r, action)(incident_id, key)
            _say(f"{action}: {result.name} ({result.key_id})")
        elif action == "kill-switch":
            r.kill_switch(incident_id, on=not off)
            _say(f"kill switch {'off' if off else 'on'}")
        elif action == "rollback":
            if version is None:
                raise ConfigError("rollback needs --version (see 'bastion incident versions')")
            v = r.rollback(incident_id, version)
            _say(f"serving model version {v.version} ({v.path}, sha256 {v.sha256[:12]}...)")
        else:
            command = r.rescan(
                incident_id,
                target=target,
                data=data,
                out=out,
                options=scan_arg or [],
                run=not record_only,
            )
            last = r.incidents.get(incident_id).timeline[-1]
            _say(f"rescan: {' '.join(command)}")
            if last.action == "rescan-finished":
                code = last.detail.get("exit_code")
                _say(f"the scan exited with {code}; its report is in {out}")
                if code != 0:
                    raise SystemExit(1)


@app.command("versions")
def versions(policy: PolicyOpt = None, db: DbOpt = None) -> None:
    """The model versions the gateway has served, with their content hashes."""
    from rich.table import Table

    with user_errors():
        r = _responder(policy, db)
        found = r.versions.list()
        chosen = r.controls.get("model-version")
    table = Table(title=f"{len(found)} model versions")
    for column in ("version", "registered", "sha256", "path", "chosen"):
        table.add_column(column, no_wrap=column in ("version", "sha256"))
    for v in found:
        mark = "yes" if chosen is not None and chosen.value == str(v.version) else ""
        table.add_row(str(v.version), _when(v.registered_at), v.sha256[:16], v.path, mark)
    console.print(table)
