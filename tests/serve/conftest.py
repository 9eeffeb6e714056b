"""Gateways on loopback around the session's demo CNN, each with its own SQLite database."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the gateway needs the serve extra: pip install '.[serve]'")

import httpx

from bastion.core.targets import TorchTarget
from bastion.serve import BackgroundServer, Gateway, load_policy

MakeGateway = Callable[..., Gateway]


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@pytest.fixture
def make_gateway(cnn: TorchTarget, tmp_path: Path) -> Iterator[MakeGateway]:
    """Build gateways over the demo CNN from policy mappings; all closed after the test."""
    made: list[Gateway] = []

    def make(policy: dict[str, Any] | None = None, **kwargs: Any) -> Gateway:
        db = tmp_path / f"gateway{len(made)}.db"
        raw = {"database": f"sqlite:///{db}", **(policy or {})}
        gateway = Gateway(cnn, load_policy(raw), **kwargs)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


class Client:
    """An httpx client on a running gateway, with one predict key and one admin key."""

    def __init__(self, server: BackgroundServer, *, key: str | None = None) -> None:
        self.server = server
        self.gateway = server.gateway
        self.http = httpx.Client(base_url=server.url, timeout=30)
        if key is None:
            _, self.key = self.gateway.keys.create("alice", ["predict"])
            _, self.admin = self.gateway.keys.create("root", ["admin"])
        else:
            self.key = key

    def predict(self, inputs: Any = None, *, key: str | None = "", **kwargs: Any) -> httpx.Response:
        key = self.key if key == "" else key
        headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
        headers.update(kwargs.pop("headers", {}))
        if inputs is not None:
            kwargs["json"] = {"inputs": inputs}
        return self.http.post("/predict", headers=headers, **kwargs)


@pytest.fixture
def serve(make_gateway: MakeGateway) -> Iterator[Callable[..., Client]]:
    """Start a gateway with a policy on a free loopback port; returns a :class:`Client`."""
    servers: list[BackgroundServer] = []
    clients: list[Client] = []

    def start(policy: dict[str, Any] | None = None) -> Client:
        server = BackgroundServer(make_gateway(policy)).start()
        servers.append(server)
        clients.append(Client(server))
        return clients[-1]

    yield start
    for client in clients:
        client.http.close()
    for server in servers:
        server.stop()
