"""Killing the gateway process mid-load loses no acknowledged request from the audit log.

A gateway runs in a subprocess (a small model, so it starts fast) with a rate limit the load
exceeds; client threads keep every answer's ``X-Request-ID``; the process gets SIGKILL while
requests are in flight; then every acknowledged id must have its row. ``benchmarks/
serve_durability.py`` does the same with ``bastion serve`` for 60 seconds and a restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from bastion.serve import AuditLog, KeyStore, connect

from .test_serve_scale import needs_postgres, pg_schema  # noqa: F401 - a fixture

_LAUNCH = """
import sys
import torch
from bastion.core.targets import TorchTarget
from bastion.serve import Gateway, load_policy, serve
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
target = TorchTarget(model, num_classes=10, input_shape=(1, 8, 8), name="tiny")
serve(Gateway(target, load_policy(sys.argv[1])), port=int(sys.argv[2]))
"""

BODY = {"inputs": np.full((1, 1, 8, 8), 0.5).tolist()}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _kill_mid_load(folder: Path, database: str, durability: str = "process") -> dict[str, Any]:
    """Serve, load, SIGKILL under load; the acknowledged answers and what the log holds."""
    policy = folder / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "database": database,
                "limits": {"rate": "40/second", "budget": None},
                "audit": {"durability": durability},
            }
        )
    )
    engine = connect(database)
    _, key = KeyStore(engine).create("load")
    engine.dispose()
    port = _free_port()
    log = (folder / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-c", _LAUNCH, str(policy), str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the gateway did not start: {(folder / 'serve.log').read_text()}")
            time.sleep(0.1)

        answered: list[tuple[str, int]] = []
        lock = threading.Lock()
        stop = threading.Event()

        def client() -> None:
            headers = {"Authorization": f"Bearer {key}"}
            with httpx.Client(base_url=url, timeout=10) as http:
                while not stop.is_set():
                    try:
                        r = http.post("/predict", json=BODY, headers=headers)
                    except httpx.TransportError:
                        return  # the gateway is gone: no answer, nothing acknowledged
                    with lock:
                        answered.append((r.headers["x-request-id"], r.status_code))

        threads = [threading.Thread(target=client) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        with lock:
            before = len(answered)
        proc.send_signal(signal.SIGKILL)  # requests are in flight: the clients never paused
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    audit = AuditLog(connect(database))
    try:
        missing = audit.missing(rid for rid, _ in answered)
        if database.startswith("sqlite"):
            with audit.engine.connect() as conn:
                integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalar()
        else:
            integrity = "ok"
    finally:
        audit.engine.dispose()
    return {"answered": answered, "before": before, "missing": missing, "integrity": integrity}


def _check(result: dict[str, Any]) -> None:
    statuses = {status for _, status in result["answered"]}
    assert result["before"] >= 20, "the load did not get going before the kill"
    assert {200, 429} <= statuses, statuses  # at the rate limit: answers and refusals
    assert result["missing"] == set()
    assert result["integrity"] == "ok"


@pytest.mark.parametrize("durability", ["process", "power"])
def test_sigkill_mid_load_loses_no_acknowledged_request_sqlite(
    tmp_path: Path, durability: str
) -> None:
    """``process`` (WAL, synchronous=NORMAL) loses nothing when the process dies: each commit
    is in the WAL file, in the OS's hands, before the answer leaves (SQLite's documented
    guarantee; only an OS crash or a power cut can roll one back, which ``power`` covers)."""
    _check(_kill_mid_load(tmp_path, f"sqlite:///{tmp_path / 'audit.db'}", durability))


@pytest.mark.parametrize(("durability", "level"), [("process", 1), ("power", 2)])
def test_durability_sets_sqlite_synchronous(tmp_path: Path, durability: str, level: int) -> None:
    engine = connect(f"sqlite:///{tmp_path / 'a.db'}", durability=durability)
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level  # NORMAL, FULL
    finally:
        engine.dispose()


@pytest.mark.postgres
@needs_postgres
def test_sigkill_mid_load_loses_no_acknowledged_request_postgres(
    tmp_path: Path,
    pg_schema: str,  # noqa: F811 - the fixture
) -> None:
    _check(_kill_mid_load(tmp_path, pg_schema))


def _refuses_changes(database: str) -> None:
    import sqlalchemy as sa

    from bastion.serve import AuditRecord
    from bastion.serve.store import AUDIT

    engine = connect(database)
    audit = AuditLog(engine)
    try:
        audit.append(AuditRecord("r-1", "predict", 200, "allowed"))
        statements: list[Any] = [AUDIT.update().values(status=500), AUDIT.delete()]
        if engine.dialect.name == "postgresql":
            statements.append(sa.text(f"TRUNCATE {AUDIT.name}"))
        for statement in statements:
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(statement)
        connect(database).dispose()  # a second gateway on the same database: no error
        assert [r["status"] for r in audit.rows()] == [200]
    finally:
        audit.close()
        engine.dispose()


def test_the_database_refuses_to_change_audit_rows_sqlite(tmp_path: Path) -> None:
    _refuses_changes(f"sqlite:///{tmp_path / 'audit.db'}")


@pytest.mark.postgres
@needs_postgres
def test_the_database_refuses_to_change_audit_rows_postgres(
    pg_schema: str,  # noqa: F811 - the fixture
) -> None:
    _refuses_changes(pg_schema)


def test_concurrent_rows_share_commits_and_all_land(tmp_path: Path) -> None:
    from bastion.serve import AuditRecord

    engine = connect(f"sqlite:///{tmp_path / 'audit.db'}", durability="power")
    audit = AuditLog(engine)
    commits: list[int] = []
    real = audit._commit

    def counted(rows: list[dict[str, Any]]) -> None:
        commits.append(len(rows))
        real(rows)

    audit._commit = counted  # type: ignore[method-assign]
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            for i in range(40):
                audit.append(AuditRecord(f"t{t}-{i}", "predict", 200, "allowed"))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(12)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors
        assert audit.count() == sum(commits) == 480
        assert len(commits) < 480 and max(commits) > 1  # rows waiting were committed together
        assert audit.missing(f"t{t}-{i}" for t in range(12) for i in range(40)) == set()
    finally:
        audit.close()
        engine.dispose()


def test_a_locked_database_fails_closed_within_the_timeout_and_recovers(tmp_path: Path) -> None:
    import sqlite3

    from bastion.serve import AuditRecord
    from bastion.serve.audit import AuditUnavailable

    path = tmp_path / "audit.db"
    engine = connect(f"sqlite:///{path}")
    audit = AuditLog(engine, timeout=0.5)
    audit.append(AuditRecord("before", "predict", 200, "allowed"))
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        started = time.monotonic()
        with pytest.raises(AuditUnavailable):
            audit.append(AuditRecord("locked", "predict", 200, "allowed"))
        assert time.monotonic() - started < 2.0
        other.execute("ROLLBACK")
        audit.append(AuditRecord("after", "predict", 200, "allowed"))
        assert audit.missing(["before", "after"]) == set()
    finally:
        other.close()
        audit.close()
        engine.dispose()
