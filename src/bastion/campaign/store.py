"""Where campaigns keep their results: SQLite by default, PostgreSQL by URL.

Three tables. ``runs``: one row per ``campaign run`` (its campaign's name, the file, when).
``cells``: the cells of each run, in order, with their content keys. ``results``: one row per
content key (a cell, or one block of a sharded cell), with its status (``running``, ``done``,
``failed``), attempts, error and payload. A result belongs to no run: a later run, or another
campaign, that asks for the same model, data, settings and bastion version finds it done and
skips it. Only the process that runs the campaign writes; ``status`` may read at the same time.

The schema is kept by Alembic migrations shipped in :mod:`bastion.campaign.migrations`; opening
a store brings it up to date.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from bastion.core.errors import ConfigError

if TYPE_CHECKING:
    from bastion.campaign.spec import Cell

__all__ = ["METADATA", "CellRow", "ResultRow", "RunRow", "Store", "default_url", "redact_url"]

METADATA = sa.MetaData()

RUNS = sa.Table(
    "runs",
    METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign", sa.String(64), nullable=False, index=True),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("created", sa.String(32), nullable=False),
    sa.Column("finished", sa.String(32)),
    sa.Column("engine", sa.String(32)),
    sa.Column("version", sa.String(32), nullable=False),
)
CELLS = sa.Table(
    "cells",
    METADATA,
    sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("assessment", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("setting", sa.Text, nullable=False),
    sa.Column("spec", sa.Text, nullable=False),
    sa.Column("key", sa.String(64), nullable=False, index=True),
    sa.Column("tasks", sa.Integer, nullable=False),
    sa.Column("estimate", sa.Float),
)
RESULTS = sa.Table(
    "results",
    METADATA,
    sa.Column("key", sa.String(96), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("error", sa.Text),
    sa.Column("payload", sa.Text),
    sa.Column("seconds", sa.Float),
    sa.Column("worker", sa.String(128)),
    sa.Column("updated", sa.String(32), nullable=False),
)


def default_url() -> str:
    """``sqlite:///campaign.db`` in the current folder."""
    return "sqlite:///campaign.db"


def redact_url(url: str) -> str:
    """The URL with any password hidden, for messages and reports."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class RunRow:
    id: int
    campaign: str
    spec: dict[str, Any]
    created: str
    finished: str | None
    engine: str | None
    version: str


@dataclass(frozen=True)
class CellRow:
    run_id: int
    position: int
    target: str
    assessment: str
    kind: str
    setting: dict[str, Any]
    spec: dict[str, Any]
    key: str
    tasks: int
    estimate: float | None


@dataclass(frozen=True)
class ResultRow:
    key: str
    status: str
    attempts: int
    error: str | None
    payload: dict[str, Any] | None
    seconds: float | None
    worker: str | None
    updated: str


class Store:
    """A campaign store on a SQLAlchemy engine; :meth:`open` makes one from a URL."""

    def __init__(self, engine: sa.engine.Engine, url: str) -> None:
        self.engine = engine
        self.url = url

    # ------------------------------------------------------------------ opening
    @classmethod
    def open(cls, url: str | None = None) -> Store:
        """The store at ``url`` (``sqlite:///path`` or ``postgresql://...``), created or
        migrated to the current schema. Errors are one ConfigError with the password hidden."""
        url = url or default_url()
        shown = redact_url(url)
        scheme = url.split("://", 1)[0].lower() if "://" in url else ""
        if scheme in ("postgresql", "postgres"):
            from bastion._extras import require

            require("psycopg")
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        elif scheme not in ("sqlite", "postgresql+psycopg", "postgresql+psycopg2"):
            raise ConfigError(
                f"--store {shown}: give sqlite:///path/to/file.db or postgresql://user@host/db"
            )
        if scheme == "sqlite":
            path = url.split(":///", 1)[1] if ":///" in url else ""
            if path and path != ":memory:":
                folder = Path(path).expanduser().resolve().parent
                if not folder.is_dir():
                    raise ConfigError(f"--store {shown}: folder {folder} does not exist")
                if not os.access(folder, os.W_OK):
                    raise ConfigError(f"--store {shown}: folder {folder} is not writable")
        try:
            engine = sa.create_engine(url, future=True)
            if scheme == "sqlite":
                sa.event.listen(engine, "connect", _sqlite_pragmas)
            store = cls(engine, shown)
            store._migrate()
        except sa.exc.SQLAlchemyError as exc:
            detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            raise ConfigError(f"--store {shown}: cannot open the store: {detail}") from None
        return store

    def _migrate(self) -> None:
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option(
            "script_location", str(resources.files("bastion.campaign").joinpath("migrations"))
        )
        with self.engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")

    def close(self) -> None:
        self.engine.dispose()

    # ------------------------------------------------------------------ runs and cells
    def new_run(
        self,
        campaign: str,
        spec: dict[str, Any],
        cells: Sequence[Cell],
        *,
        engine: str | None,
        tasks: Sequence[int] | None = None,
        estimates: Sequence[float] | None = None,
    ) -> int:
        """Record a run of ``campaign`` with its cells (in one transaction); its id."""
        from bastion import __version__

        with self.engine.begin() as conn:
            run_id = conn.execute(
                RUNS.insert().values(
                    campaign=campaign,
                    spec=json.dumps(spec, sort_keys=True),
                    created=_now(),
                    engine=engine,
                    version=__version__,
                )
            ).inserted_primary_key
            assert run_id is not None
            run_id = run_id[0]
            rows = [
                {
                    "run_id": run_id,
                    "position": c.position,
                    "target": c.target.name,
                    "assessment": c.assessment.name,
                    "kind": c.kind,
                    "setting": json.dumps(c.setting, sort_keys=True),
                    "spec": json.dumps(
                        {"target": c.target.model_dump(), "assessment": c.assessment.model_dump()},
                        sort_keys=True,
                    ),
                    "key": c.key,
                    "tasks": tasks[i] if tasks is not None else 1,
                    "estimate": estimates[i] if estimates is not None else None,
                }
                for i, c in enumerate(cells)
            ]
            if rows:
                conn.execute(CELLS.insert(), rows)
        return int(run_id)

    def finish_run(self, run_id: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(RUNS.update().where(RUNS.c.id == run_id).values(finished=_now()))

    def runs(self, campaign: str | None = None) -> list[RunRow]:
        """Runs, newest first."""
        query = sa.select(RUNS).order_by(RUNS.c.id.desc())
        if campaign is not None:
            query = query.where(RUNS.c.campaign == campaign)
        with self.engine.connect() as conn:
            return [_run_row(r) for r in conn.execute(query)]

    def run(self, ref: str | None = None) -> RunRow:
        """The run ``ref`` names: ``#N`` (its id), ``NAME`` (that campaign's latest run),
        ``NAME~K`` (K runs before it), or None (the newest run of any campaign)."""
        ref = (ref or "").strip()
        if ref.startswith("#"):
            try:
                wanted = int(ref[1:])
            except ValueError:
                raise ConfigError(f"run {ref!r}: #N takes a run number") from None
            found = [r for r in self.runs() if r.id == wanted]
        else:
            name, _, back = ref.partition("~")
            try:
                skip = int(back) if back else 0
            except ValueError:
                raise ConfigError(f"run {ref!r}: NAME~K takes a number of runs back") from None
            found = self.runs(name or None)[skip : skip + 1]
        if not found:
            known = sorted({r.campaign for r in self.runs()})
            hint = f"; campaigns here: {', '.join(known)}" if known else "; the store is empty"
            raise ConfigError(f"no run {ref or '(newest)'} in {self.url}{hint}")
        return found[0]

    def cells(self, run_id: int) -> list[CellRow]:
        query = sa.select(CELLS).where(CELLS.c.run_id == run_id).order_by(CELLS.c.position)
        with self.engine.connect() as conn:
            return [_cell_row(r) for r in conn.execute(query)]

    # ------------------------------------------------------------------ results
    def results(self, keys: Iterable[str]) -> dict[str, ResultRow]:
        """The results of these keys that exist, by key (read in chunks)."""
        wanted = list(dict.fromkeys(keys))
        out: dict[str, ResultRow] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                for r in conn.execute(sa.select(RESULTS).where(RESULTS.c.key.in_(chunk))):
                    out[r.key] = _result_row(r)
        return out

    def done(self, keys: Iterable[str]) -> set[str]:
        """The keys among these with a finished result (without reading payloads)."""
        wanted = list(dict.fromkeys(keys))
        found: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                query = sa.select(RESULTS.c.key).where(
                    RESULTS.c.key.in_(chunk), RESULTS.c.status == "done"
                )
                found.update(r.key for r in conn.execute(query))
        return found

    def forget(self, keys: Sequence[str]) -> None:
        """Drop the unfinished results of these keys (a done result is never dropped)."""
        with self.engine.begin() as conn:
            for i in range(0, len(keys), 500):
                chunk = list(keys[i : i + 500])
                conn.execute(
                    RESULTS.delete().where(RESULTS.c.key.in_(chunk), RESULTS.c.status != "done")
                )

    def mark_running(self, key: str, attempts: int) -> None:
        self._put(key, status="running", attempts=attempts, worker=_worker())

    def record(
        self,
        key: str,
        *,
        status: str,
        attempts: int,
        payload: dict[str, Any] | None = None,
        error: str | None = None,
        seconds: float | None = None,
        worker: str | None = None,
    ) -> None:
        """Write one task's outcome (committed before this returns)."""
        self._put(
            key,
            status=status,
            attempts=attempts,
            payload=json.dumps(payload, allow_nan=False) if payload is not None else None,
            error=error,
            seconds=seconds,
            worker=worker,
        )

    def _put(self, key: str, **values: Any) -> None:
        values["updated"] = _now()
        for _ in range(3):
            try:
                with self.engine.begin() as conn:
                    update = RESULTS.update().where(RESULTS.c.key == key).values(**values)
                    if conn.execute(update).rowcount == 0:
                        values.setdefault("error", None)
                        values.setdefault("payload", None)
                        conn.execute(RESULTS.insert().values(key=key, **values))
                return
            except sa.exc.IntegrityError:
                # another runner sharing the store inserted this key between the two
                # statements: the update finds it now
                continue
        raise ConfigError(f"the store {self.url} kept refusing the result of {key[:12]}")


def _worker() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # a reader (campaign status) never blocks the writer; a commit survives a killed process
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _run_row(r: Any) -> RunRow:
    return RunRow(r.id, r.campaign, json.loads(r.spec), r.created, r.finished, r.engine, r.version)


def _cell_row(r: Any) -> CellRow:
    return CellRow(
        r.run_id,
        r.position,
        r.target,
        r.assessment,
        r.kind,
        json.loads(r.setting),
        json.loads(r.spec),
        r.key,
        r.tasks,
        r.estimate,
    )


def _result_row(r: Any) -> ResultRow:
    payload = json.loads(r.payload) if r.payload is not None else None
    return ResultRow(r.key, r.status, r.attempts, r.error, payload, r.seconds, r.worker, r.updated)
