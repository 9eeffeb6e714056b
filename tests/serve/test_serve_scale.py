"""Replicas sharing Redis (limits) and PostgreSQL (keys, audit), and failing closed without the
database: tested for real against the servers on 127.0.0.1, skipped where they are absent."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from bastion.core.targets import TorchTarget
from bastion.serve import BackgroundServer, Gateway, load_policy

from .conftest import Client, reachable
from helpers import postgres_ok, postgres_schema

REDIS_URL = "redis://127.0.0.1:6379/0"

needs_redis = pytest.mark.skipif(
    not reachable("127.0.0.1", 6379), reason="no Redis server on 127.0.0.1:6379"
)


needs_postgres = pytest.mark.skipif(
    not postgres_ok(), reason="no PostgreSQL database 'test' on 127.0.0.1:5432 (user postgres)"
)


def batch(n: int = 1) -> list[Any]:
    return np.full((n, 1, 8, 8), 0.5).tolist()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema for this test; the database URL that uses it."""
    with postgres_schema() as url:
        yield url


class Replicas:
    """Two gateways of the same model and policy, each on its own loopback server."""

    def __init__(self, cnn: TorchTarget, policy: dict[str, Any]) -> None:
        namespace = f"test-{uuid.uuid4().hex}"  # fresh counters in the shared Redis
        self.gateways = [Gateway(cnn, load_policy(policy), namespace=namespace) for _ in range(2)]
        self.servers = [BackgroundServer(g).start() for g in self.gateways]
        _, key = self.gateways[0].keys.create("shared")
        self.clients = [Client(server, key=key) for server in self.servers]

    def close(self) -> None:
        for client in self.clients:
            client.http.close()
        for server in self.servers:
            server.stop()
        for gateway in self.gateways:
            gateway.close()


def _alternate(replicas: Replicas, sizes: list[int]) -> list[int]:
    return [replicas.clients[i % 2].predict(batch(n)).status_code for i, n in enumerate(sizes)]


@needs_redis
def test_two_replicas_share_one_keys_rate_limit_in_redis(cnn: TorchTarget, tmp_path: Any) -> None:
    policy = {
        "database": f"sqlite:///{tmp_path / 'shared.db'}",
        "limits": {"rate": "6/minute", "budget": None, "storage": REDIS_URL},
    }
    replicas = Replicas(cnn, policy)
    try:
        assert _alternate(replicas, [1] * 9) == [200] * 6 + [429] * 3
    finally:
        replicas.close()


@needs_redis
@needs_postgres
def test_two_replicas_share_budget_in_redis_and_audit_in_postgres(
    cnn: TorchTarget, pg_schema: str
) -> None:
    policy = {
        "database": pg_schema,
        "limits": {"rate": None, "budget": "30/hour", "storage": REDIS_URL},
    }
    replicas = Replicas(cnn, policy)
    try:
        # 8 + 8 + 8 = 24 across both; 8 more would pass 30 (refused, nothing spent); 6 fit
        assert _alternate(replicas, [8, 8, 8, 8, 6, 1]) == [200, 200, 200, 429, 200, 429]
        rows = replicas.gateways[1].audit.rows()
        assert len(rows) == 6
        assert sum(r["n_inputs"] for r in rows if r["status"] == 200) == 30
        assert replicas.gateways[0].engine.dialect.name == "postgresql"
    finally:
        replicas.close()


class _Proxy:
    """A TCP forwarder to PostgreSQL that a test can cut and restore: the database 'goes away'."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.port = 0
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            self._conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([a, b], [], [], 1.0)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            return

    def cut(self) -> None:
        assert self._listener is not None
        # wakes the thread blocked in accept(); a bare close() would leave it listening
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._conns.clear()


@needs_postgres
def test_fails_closed_while_postgres_is_unreachable_and_recovers_by_itself(
    cnn: TorchTarget, pg_schema: str
) -> None:
    proxy = _Proxy(("127.0.0.1", 5432))
    url = pg_schema.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
    gateway = Gateway(cnn, load_policy({"database": url, "limits": {"rate": None, "budget": None}}))
    gateway.audit.timeout = 3.0
    server = BackgroundServer(gateway).start()
    client = Client(server, key=gateway.keys.create("alice")[1])
    try:
        assert client.predict(batch()).status_code == 200
        proxy.cut()
        down = client.predict(batch())
        assert down.status_code == 503 and "outputs" not in down.json()
        assert client.http.get("/readyz").status_code == 503
        proxy.start()  # the same port again
        assert client.predict(batch()).status_code == 200
        assert client.http.get("/readyz").status_code == 200
        statuses = [r["status"] for r in gateway.audit.rows()]
        assert statuses == [200, 200]  # the refused one could not be logged, and was not answered
    finally:
        client.http.close()
        server.stop()
        proxy.cut()
        gateway.close()
