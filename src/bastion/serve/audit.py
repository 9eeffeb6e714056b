"""The audit log: one row per request, committed before the answer leaves the gateway.

:meth:`AuditLog.append` returns only once the row is durably committed, and raises
:class:`AuditUnavailable` when it cannot be: the gateway then answers 503 instead of the
model's output, so an acknowledged request is always a logged one. Rows from concurrent
requests are committed together (group commit): one commit, and one fsync, for many requests.

With SQLite the request threads take turns leading: the first to arrive while no commit is
running commits every row waiting, the others wait for it (or lead the next commit), so no
thread sits between a request and its commit; a local file answers within SQLite's busy
timeout. With a database over the network a writer thread commits, so that a request waits
at most ``timeout`` even while a connection hangs. The gateway only ever inserts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, fields
from typing import Any

from bastion._extras import require
from bastion.core.errors import BastionError

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from bastion.serve.store import AUDIT  # noqa: E402

__all__ = ["AuditLog", "AuditRecord", "AuditUnavailable"]

log = logging.getLogger("bastion.serve")

_BATCH = 512  # rows per commit at most


class AuditUnavailable(BastionError):
    """The audit log cannot be written: the gateway fails closed."""


@dataclass
class AuditRecord:
    """What the audit log keeps of one request (never the inputs, only their digest)."""

    request_id: str
    endpoint: str
    status: int
    decision: str
    key_id: str | None = None
    n_inputs: int = 0
    input_digest: str | None = None
    verdicts: dict[str, Any] = field(default_factory=dict)
    detail: str = ""
    client: str | None = None
    latency_ms: float = 0.0
    ts: float = field(default_factory=time.time)
    labels: list[int] | None = None

    def row(self) -> dict[str, Any]:
        # by hand, not dataclasses.asdict: that deep-copies the verdicts on every request
        return {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "decision": self.decision,
            "key_id": self.key_id,
            "n_inputs": self.n_inputs,
            "input_digest": self.input_digest,
            "verdicts": json.dumps(self.verdicts, sort_keys=True) if self.verdicts else "{}",
            "detail": self.detail[:2000],
            "client": self.client,
            "latency_ms": self.latency_ms,
            "ts": self.ts,
            "labels": None if self.labels is None else json.dumps(self.labels),
        }


class AuditLog:
    """Durable, append-only request log over a SQLAlchemy engine.

    Args:
        engine: from :func:`bastion.serve.store.connect`.
        timeout: seconds :meth:`append` waits for its commit before failing closed.
    """

    def __init__(self, engine: sa.Engine, *, timeout: float = 5.0) -> None:
        self.engine = engine
        self.timeout = timeout
        # the INSERT compiled once for the driver; the writer runs it on a connection it keeps
        compiled = (
            AUDIT.insert()
            .inline()
            .compile(dialect=engine.dialect, column_keys=[f.name for f in fields(AuditRecord)])
        )
        self._sql = str(compiled)
        self._positions: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        self._conn: Any = None
        self._queue: queue.Queue[tuple[dict[str, Any], Future[None]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._led = engine.dialect.name == "sqlite"
        self._turn = threading.Condition()
        self._pending: list[tuple[dict[str, Any], Future[None]]] = []
        self._leading = False

    def _ensure_writer(self) -> None:
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._write_loop, name="bastion-audit", daemon=True
                )
                self._thread.start()

    def append(self, record: AuditRecord) -> None:
        """Commit ``record``; :class:`AuditUnavailable` if that cannot be done in time."""
        done: Future[None] = Future()
        if self._led:
            self._append_led(record.row(), done)
            wait = 0.0  # it returns once the row is committed, failed, or out of time
        else:
            self._ensure_writer()
            self._queue.put((record.row(), done))
            wait = self.timeout
        try:
            done.result(timeout=wait)
        except AuditUnavailable:
            raise
        except Exception as exc:
            why = str(exc) or f"no commit within {self.timeout:g} s"
            raise AuditUnavailable(f"the audit log cannot be written: {why}") from None

    def _append_led(self, row: dict[str, Any], done: Future[None]) -> None:
        """Queue ``row``; lead commits until it is committed, or wait while another leads."""
        deadline = time.monotonic() + self.timeout
        with self._turn:
            self._pending.append((row, done))
        while not done.done():
            with self._turn:
                while not done.done() and self._leading:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return  # done.result() times out: fail closed
                    self._turn.wait(left)
                if done.done():
                    return
                self._leading = True
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            try:
                self._write(batch)
            finally:
                with self._turn:
                    self._leading = False
                    self._turn.notify_all()

    def _write_loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < _BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self._queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list[tuple[dict[str, Any], Future[None]]]) -> None:
        """Commit ``batch``'s rows in one transaction and tell each waiter how it went."""
        try:
            self._commit([row for row, _ in batch])
        except Exception as exc:  # any failure of the database: every waiter fails closed
            self._drop_connection()
            reason = _first_line(exc)
            log.error(json.dumps({"event": "audit-unavailable", "error": reason}))
            for _, done in batch:
                if not done.done():
                    done.set_exception(AuditUnavailable(f"the audit log is unavailable: {reason}"))
        else:
            for _, done in batch:
                if not done.done():
                    done.set_result(None)

    def _commit(self, rows: list[dict[str, Any]]) -> None:
        """Insert ``rows`` in one transaction on the writer's own connection.

        The connection is kept between batches (checked once when taken from the pool, not
        before every commit) and dropped after any failure, so the next batch connects anew.
        """
        if self._conn is None:
            conn = self.engine.raw_connection()
            if self._led:  # a leader waits for a locked file no longer than any request may
                cursor = conn.cursor()
                cursor.execute(f"PRAGMA busy_timeout={max(1, int(self.timeout * 1000))}")
                cursor.close()
            self._conn = conn
        params: list[Any] = rows
        if self._positions is not None:
            params = [tuple(row[name] for name in self._positions) for row in rows]
        cursor = self._conn.cursor()
        try:
            cursor.executemany(self._sql, params)
        finally:
            cursor.close()
        self._conn.commit()

    def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.invalidate()

    def close(self) -> None:
        """Stop the writer after the rows already queued are committed."""
        while True:  # rows of requests that gave up waiting: committed all the same
            with self._turn:
                if self._leading or not self._pending:
                    break
                batch, self._pending = self._pending[:_BATCH], self._pending[_BATCH:]
            self._write(batch)
        thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout=self.timeout)
        with self._turn:
            busy = self._leading
        if not busy and (thread is None or not thread.is_alive()):
            conn, self._conn = self._conn, None
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()

    def ping(self) -> bool:
        """Whether the database answers now (for readiness)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        except Exception:
            return False
        return True

    # ----------------------------------------------------------------- reading
    def count(self, **where: Any) -> int:
        query = sa.select(sa.func.count()).select_from(AUDIT)
        for name, value in where.items():
            query = query.where(AUDIT.c[name] == value)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def missing(self, request_ids: Iterable[str]) -> set[str]:
        """The ``request_ids`` that have no row in the log (for durability checks)."""
        wanted = set(request_ids)
        found: set[str] = set()
        ordered = sorted(wanted)
        with self.engine.connect() as conn:
            for i in range(0, len(ordered), 500):
                chunk = ordered[i : i + 500]
                query = sa.select(AUDIT.c.request_id).where(AUDIT.c.request_id.in_(chunk))
                found.update(str(r) for r in conn.execute(query).scalars())
        return wanted - found

    def traffic(self) -> dict[str, dict[str, Any]]:
        """Predict traffic per key: requests, answered, inputs answered, refusals by decision."""
        query = (
            sa.select(
                AUDIT.c.key_id,
                AUDIT.c.decision,
                sa.func.count(),
                sa.func.sum(AUDIT.c.n_inputs),
            )
            .where(AUDIT.c.endpoint == "predict", AUDIT.c.key_id.is_not(None))
            .group_by(AUDIT.c.key_id, AUDIT.c.decision)
        )
        out: dict[str, dict[str, Any]] = {}
        with self.engine.connect() as conn:
            for key_id, decision, count, inputs in conn.execute(query).all():
                t = out.setdefault(
                    key_id, {"requests": 0, "answered": 0, "inputs": 0, "refused": {}}
                )
                t["requests"] += int(count)
                if decision == "allowed":
                    t["answered"] += int(count)
                    t["inputs"] += int(inputs or 0)
                else:
                    t["refused"][decision] = int(count)
        return out

    def rows(self, *, key_id: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Audit rows, oldest first (``limit``: the latest so many)."""
        return list(self._iter(key_id=key_id, limit=limit))

    def _iter(self, *, key_id: str | None, limit: int | None) -> Iterator[dict[str, Any]]:
        query = sa.select(AUDIT).order_by(AUDIT.c.id.desc() if limit else AUDIT.c.id)
        if key_id is not None:
            query = query.where(AUDIT.c.key_id == key_id)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            found: Sequence[Any] = conn.execute(query).all()
        if limit:
            found = list(reversed(found))
        for r in found:
            row = dict(r._mapping)
            row["verdicts"] = json.loads(row["verdicts"])
            row["labels"] = None if row.get("labels") is None else json.loads(row["labels"])
            yield row


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
