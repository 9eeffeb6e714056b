"""Running a gateway on uvicorn: in the foreground (``bastion serve``) or on a background
thread (tests, benchmarks, a notebook)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

from bastion._extras import require

require("uvicorn")

import uvicorn  # noqa: E402

from bastion.core.errors import ConfigError  # noqa: E402
from bastion.serve.app import create_app  # noqa: E402
from bastion.serve.gateway import Gateway  # noqa: E402

__all__ = ["BackgroundServer", "serve"]


def _config(gateway: Gateway, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(
        create_app(gateway),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,  # the gateway logs each request itself, as JSON with its request id
        server_header=False,
        timeout_graceful_shutdown=5,
    )


def serve(gateway: Gateway, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve ``gateway`` until interrupted, then flush its audit log."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        uvicorn.Server(_config(gateway, host, port)).run()
    finally:
        gateway.close()


class BackgroundServer:
    """``gateway`` on a free loopback port in a daemon thread; a context manager.

    Example:
        >>> with BackgroundServer(gateway) as server:  # doctest: +SKIP
        ...     httpx.post(f"{server.url}/predict", ...)
    """

    def __init__(self, gateway: Gateway, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.gateway = gateway
        self.host = host
        self._sock = socket.create_server((host, port))
        self.port = int(self._sock.getsockname()[1])
        self._server = uvicorn.Server(_config(gateway, host, self.port))
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the gateway did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
