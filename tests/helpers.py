"""Small helpers shared by test modules."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from importlib.metadata import entry_points
from typing import Any

import numpy as np
import pytest
import torch

import bastion
from bastion.cli.main import main


def accuracy(target: bastion.Target, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((target.predict(x) == y).float().mean())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the ``bastion`` command in-process: exit status, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(result: object) -> str:
    """The single ``error:`` line a CliRunner result printed on stderr (asserted)."""
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in stderr
    return lines[0]


def plugin_args() -> list[str]:
    """``-p bastion.testing.plugin`` for a ``pytester`` run, unless pytest loads the plugin by
    itself through bastion's installed ``pytest11`` entry point (both would register it twice).
    """
    plugin = "bastion.testing.plugin"
    if not os.environ.get("PYTEST_DISABLE_PLUGIN_AUTOLOAD") and any(
        ep.value == plugin for ep in entry_points(group="pytest11")
    ):
        return []
    return ["-p", plugin]


def settle_imports() -> None:
    """Import bastion's plugins and what a robustness test imports, before ``pytester`` takes
    its snapshot of ``sys.modules``: it drops every module imported during a test when the
    test ends, and a registry module dropped that way comes back empty on its next import
    while bastion's plugin loader still counts its plugins as loaded."""
    import importlib

    from bastion.core.plugins import load_plugins

    for name in ("bastion.assess.compare", "bastion.assess.evaluate", "bastion.assess.specs"):
        importlib.import_module(name)
    importlib.import_module("bastion.testing")
    load_plugins()


#: the PostgreSQL database the tests may use (trust auth on this machine and in CI)
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_ok() -> bool:
    """Whether the PostgreSQL database of :data:`PG_URL` answers."""
    import socket

    import sqlalchemy as sa

    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            pass
        engine = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        engine.dispose()
    except Exception:
        return False
    return True


@contextlib.contextmanager
def postgres_schema(prefix: str = "bastion_test") -> Iterator[str]:
    """A fresh PostgreSQL schema, dropped afterwards; the database URL that uses it."""
    import uuid

    import sqlalchemy as sa

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL.replace("postgresql://", "postgresql+psycopg://"))
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {name}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {name} CASCADE"))
        admin.dispose()


class PredictHandler(BaseHTTPRequestHandler):
    """A JSON predict endpoint answering with ``model.predict_proba`` (set ``model``;
    override :meth:`answer` for other outputs)."""

    model: Any = None
    requests = 0

    def answer(self, x: np.ndarray) -> Any:
        return self.model.predict_proba(x)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = json.loads(self.rfile.read(length))
        x = np.asarray(body["inputs"], dtype=np.float32)
        outputs = self.answer(x.reshape(len(x), -1))
        type(self).requests += 1
        payload = json.dumps({"outputs": outputs.tolist()}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve_http(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on loopback in a background thread; its ``/predict`` URL."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()
