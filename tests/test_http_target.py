"""HttpTarget against real HTTP servers on loopback: credentials, limits, retries, redaction.

Every server here is stdlib ``http.server`` on 127.0.0.1 with an ephemeral port, records what
it received, and is asked a bounded number of requests.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import torch

from bastion.core.errors import ConfigError, TargetError
from bastion.core.redact import redact_argv, redact_text, redact_url
from bastion.core.targets import HttpTarget

SECRET = "SECRET"  # every credential below contains this, so one check covers them all


@dataclass
class Seen:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    client_port: int


Respond = Callable[["_Handler", int], None]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real endpoints do
    server: _Server

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(length) if length else b""
        box = self.server.box
        with box.lock:
            index = len(box.seen)
            box.seen.append(
                Seen(
                    self.command,
                    self.path,
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                    time.monotonic(),
                    self.client_address[1],
                )
            )
        try:
            box.respond(self, index)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client hung up: what the limit tests expect

    do_POST = do_GET = _handle

    def send_json(
        self, payload: Any, code: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@dataclass
class _Box:
    respond: Respond
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    box: _Box

    def handle_error(self, request: Any, client_address: Any) -> None:
        # the client hanging up (a cap, a deadline, a refused redirect) is what tests expect
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


@dataclass
class Endpoint:
    box: _Box
    port: int

    def url(self, path: str = "/predict") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    @property
    def seen(self) -> list[Seen]:
        return self.box.seen


@pytest.fixture
def serve() -> Iterator[Callable[[Respond], Endpoint]]:
    """Start loopback servers answering with ``respond(handler, request_index)``."""
    servers: list[_Server] = []

    def start(respond: Respond) -> Endpoint:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.box = _Box(respond)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return Endpoint(server.box, server.server_address[1])

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


# a fixed linear model: the server answers with it, the tests know the right labels
_WEIGHTS = np.random.default_rng(0).normal(size=(64, 10))


def _probabilities(x: np.ndarray) -> np.ndarray:
    logits = (x.reshape(len(x), -1).astype(np.float64) - 0.5) @ _WEIGHTS
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _labels(x: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(_probabilities(x.numpy()).argmax(axis=1))


def _inputs(n: int) -> torch.Tensor:
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(n))


def _model_answer(handler: _Handler, index: int) -> None:
    """Answer like a real endpoint: the model's probabilities for the posted inputs."""
    x = np.asarray(json.loads(handler.server.box.seen[index].body)["inputs"], np.float32)
    handler.send_json({"outputs": _probabilities(x).tolist()})


def _redirect(location: str, code: int = 302) -> Respond:
    def respond(handler: _Handler, index: int) -> None:
        handler.send_response(code)
        handler.send_header("Location", location)
        handler.send_header("Content-Length", "0")
        handler.end_headers()

    return respond


def _no_secret(exc: BaseException) -> str:
    """The whole rendered traceback, asserted free of credentials."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    assert SECRET not in text, text
    return text


CREDENTIAL_HEADERS = {"Authorization": f"Bearer tok-{SECRET}", "X-Api-Key": f"k-{SECRET}"}


# ---------------------------------------------------------------------- redirects
@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_redirect_to_another_origin_is_refused_and_gets_nothing(
    serve: Callable[[Respond], Endpoint], code: int
) -> None:
    elsewhere = serve(lambda h, i: h.send_json({"outputs": [[0.5, 0.5]]}))
    front = serve(_redirect(elsewhere.url("/steal"), code))
    with_userinfo = front.url().replace("http://", f"http://alice:pw-{SECRET}@")
    attempts = [
        (mode, url, headers)
        for mode in ("refuse", "same-origin")
        for url, headers in ((front.url(), CREDENTIAL_HEADERS), (with_userinfo, None))
    ]
    for mode, url, headers in attempts:
        target = HttpTarget(url, num_classes=2, headers=headers, redirects=mode)
        with target, pytest.raises(TargetError, match="redirected") as info:
            target(torch.zeros(1, 2))
        # the error names where it pointed, and holds no credential
        assert f"127.0.0.1:{elsewhere.port}/steal" in str(info.value)
        _no_secret(info.value)
        assert target.queries == 0
    # the other origin never saw a request, let alone the credentials
    assert elsewhere.seen == []
    assert [s.method for s in front.seen] == ["POST"] * 4
    assert front.seen[0].headers["authorization"] == f"Bearer tok-{SECRET}"
    assert front.seen[0].headers["x-api-key"] == f"k-{SECRET}"
    assert front.seen[1].headers["authorization"].startswith("Basic ")


@pytest.mark.parametrize("code", [301, 302, 303])
def test_same_origin_redirect_that_would_change_the_method_is_refused(
    serve: Callable[[Respond], Endpoint], code: int
) -> None:
    front = serve(lambda h, i: _redirect("/v2/predict", code)(h, i) if i == 0 else h.send_json({}))
    target = HttpTarget(front.url(), num_classes=2, redirects="same-origin")
    with target, pytest.raises(TargetError, match="POST into a GET"):
        target(torch.zeros(1, 2))
    assert [s.path for s in front.seen] == ["/predict"]  # never followed


@pytest.mark.parametrize("code", [307, 308])
def test_same_origin_307_308_is_followed_with_method_body_and_credentials(
    serve: Callable[[Respond], Endpoint], code: int
) -> None:
    model = _model_answer
    front = serve(lambda h, i: _redirect("/v2/predict", code)(h, i) if i == 0 else model(h, i))
    x = _inputs(5)
    with HttpTarget(
        front.url(), num_classes=10, headers=CREDENTIAL_HEADERS, redirects="same-origin"
    ) as target:
        labels = target.predict(x)
    assert torch.equal(labels, _labels(x))
    first, second = front.seen
    assert (second.method, second.path) == ("POST", "/v2/predict")
    assert second.body == first.body
    assert second.headers["x-api-key"] == f"k-{SECRET}"
    assert second.headers["authorization"] == f"Bearer tok-{SECRET}"
    assert target.queries == 5


def test_redirect_is_refused_by_default_even_to_the_same_origin(
    serve: Callable[[Respond], Endpoint],
) -> None:
    front = serve(_redirect("/v2/predict", 307))
    with HttpTarget(front.url(), num_classes=2) as target, pytest.raises(TargetError) as info:
        target(torch.zeros(1, 2))
    assert "redirects='same-origin'" in str(info.value)
    assert len(front.seen) == 1


# ---------------------------------------------------------------------- size and deadline
@pytest.mark.parametrize("declared", [True, False])
def test_answer_over_the_size_cap_is_refused(
    serve: Callable[[Respond], Endpoint], declared: bool
) -> None:
    big = b"[" + b"0," * (2**20) + b"0]"  # ~2 MiB

    def respond(handler: _Handler, index: int) -> None:
        handler.send_response(200)
        if declared:
            handler.send_header("Content-Length", str(len(big)))
        else:
            handler.send_header("Connection", "close")  # body ends when the connection does
            handler.close_connection = True
        handler.end_headers()
        handler.wfile.write(big)

    endpoint = serve(respond)
    target = HttpTarget(endpoint.url(), num_classes=2, max_response_bytes=2**20)
    with target, pytest.raises(TargetError, match=f"more than {2**20} bytes"):
        target(torch.zeros(1, 2))
    assert len(endpoint.seen) == 1  # a size violation is not retried
    assert target.queries == 0


def _trickle(head: bytes) -> Respond:
    """Send ``head``, then one byte every 0.1 s (for at most 10 s): never a per-read timeout."""

    def respond(handler: _Handler, index: int) -> None:
        handler.wfile.write(head)
        for _ in range(100):
            handler.wfile.write(b"0")
            handler.wfile.flush()
            time.sleep(0.1)
        handler.close_connection = True

    return respond


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",  # a slow body
        b"HTTP/1.1 200 OK\r\nX-Slow: ",  # slow headers, never finished
    ],
    ids=["body", "headers"],
)
def test_a_trickling_server_is_cut_off_at_the_total_deadline(
    serve: Callable[[Respond], Endpoint], head: bytes
) -> None:
    endpoint = serve(_trickle(head))
    with HttpTarget(endpoint.url(), num_classes=2, timeout=1.0, retries=0) as target:
        start = time.monotonic()
        with pytest.raises(TargetError, match="did not answer within 1 s"):
            target(torch.zeros(1, 2))
        elapsed = time.monotonic() - start
    assert 0.9 <= elapsed < 2.5, elapsed  # the server would go on for 10 s
    assert target.queries == 0


def test_connections_are_kept_alive_and_closable(
    serve: Callable[[Respond], Endpoint],
) -> None:
    endpoint = serve(_model_answer)
    target = HttpTarget(endpoint.url(), num_classes=10, batch_size=10)
    with target:
        target.predict(_inputs(40))
    assert len(endpoint.seen) == 4
    assert len({s.client_port for s in endpoint.seen}) == 1  # one pooled connection
    assert target._http is None  # closed by the context manager
    target.predict(_inputs(10))  # a later query opens a new client
    assert endpoint.seen[-1].client_port != endpoint.seen[0].client_port
    target.close()


# ---------------------------------------------------------------------- retries and queries
@pytest.mark.parametrize("failure", ["500", "reset"])
def test_transient_failures_are_retried_and_only_answers_count(
    serve: Callable[[Respond], Endpoint], failure: str
) -> None:
    model = _model_answer

    def respond(handler: _Handler, index: int) -> None:
        if index % 3 == 2:  # every third request fails
            if failure == "500":
                handler.send_json({"error": "busy"}, code=500)
            else:
                handler.close_connection = True  # hang up without an answer
            return
        model(handler, index)

    endpoint = serve(respond)
    x = _inputs(200)
    with HttpTarget(endpoint.url(), num_classes=10, batch_size=20) as target:
        labels = target.predict(x)
    assert torch.equal(labels, _labels(x))
    assert target.queries == 200  # the failed attempts were not charged
    failed = [s for i, s in enumerate(endpoint.seen) if i % 3 == 2]
    assert len(endpoint.seen) == 10 + len(failed) and failed


def test_a_server_that_always_fails_gives_one_error_and_no_queries(
    serve: Callable[[Respond], Endpoint],
) -> None:
    endpoint = serve(lambda h, i: h.send_json({"error": "down"}, code=500))
    with HttpTarget(endpoint.url(), num_classes=2, retries=2, query_budget=10) as target:
        with pytest.raises(TargetError, match=r"HTTP 500.*3 attempts"):
            target(torch.zeros(4, 2))
        assert target.queries == 0
        assert target.queries_left == 10
    assert len(endpoint.seen) == 3


def test_retries_zero_disables_retrying(serve: Callable[[Respond], Endpoint]) -> None:
    endpoint = serve(lambda h, i: h.send_json({}, code=502))
    target = HttpTarget(endpoint.url(), num_classes=2, retries=0)
    with target, pytest.raises(TargetError, match="HTTP 502"):
        target(torch.zeros(1, 2))
    assert len(endpoint.seen) == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 422])
def test_client_errors_are_not_retried(serve: Callable[[Respond], Endpoint], code: int) -> None:
    endpoint = serve(lambda h, i: h.send_json({"error": "no"}, code=code))
    with HttpTarget(endpoint.url(), num_classes=2) as target:
        with pytest.raises(TargetError, match=f"HTTP {code}"):
            target(torch.zeros(1, 2))
        assert target.queries == 0
    assert len(endpoint.seen) == 1


@pytest.mark.parametrize("code", [429, 503])
def test_retry_after_is_honoured(serve: Callable[[Respond], Endpoint], code: int) -> None:
    def respond(handler: _Handler, index: int) -> None:
        if index == 0:
            handler.send_json({"error": "slow down"}, code=code, headers={"Retry-After": "1"})
        else:
            handler.send_json({"outputs": [[0.25, 0.75]]})

    endpoint = serve(respond)
    with HttpTarget(endpoint.url(), num_classes=2) as target:
        out = target(torch.zeros(1, 2))
    assert out.tolist() == [[0.25, 0.75]]
    first, second = endpoint.seen
    assert second.at - first.at >= 1.0
    assert target.queries == 1


# ---------------------------------------------------------------------- URL secrets
def test_userinfo_is_basic_auth_and_never_shown(
    serve: Callable[[Respond], Endpoint], caplog: pytest.LogCaptureFixture
) -> None:
    expected = "Basic " + base64.b64encode(f"alice:p@ss-{SECRET}".encode()).decode()

    def respond(handler: _Handler, index: int) -> None:
        if handler.headers.get("Authorization") != expected:
            handler.send_json({"error": "who are you"}, code=401)
        else:
            handler.send_json({"outputs": [[0.1, 0.9]]})

    endpoint = serve(respond)
    url = endpoint.url(f"/predict?token=tok-{SECRET}&model=m1").replace(
        "http://", f"http://alice:p%40ss-{SECRET}@"
    )
    caplog.set_level(logging.DEBUG)
    with HttpTarget(url, num_classes=2) as target:
        assert target(torch.zeros(1, 2)).tolist() == [[pytest.approx(0.1), pytest.approx(0.9)]]
    seen = endpoint.seen[0]
    assert seen.headers["authorization"] == expected
    assert seen.path == f"/predict?token=tok-{SECRET}&model=m1"  # the query still goes out
    assert target.name == f"http://***@127.0.0.1:{endpoint.port}/predict?token=***&model=m1"
    for shown in (target.name, target.url, repr(target), repr(target.describe()), caplog.text):
        assert SECRET not in shown

    wrong = HttpTarget(url.replace("p%40ss", "nope"), num_classes=2)
    with wrong, pytest.raises(TargetError, match="HTTP 401") as info:
        wrong(torch.zeros(1, 2))
    _no_secret(info.value)


def test_connection_errors_are_redacted_and_retried() -> None:
    # nothing listens on the discard port of loopback: every attempt is refused
    url = f"http://u:pw-{SECRET}@127.0.0.1:9/p?api_key={SECRET}"
    with HttpTarget(url, num_classes=2, retries=1) as target:
        with pytest.raises(TargetError, match=r"cannot reach.*2 attempts") as info:
            target(torch.zeros(1, 2))
        assert target.queries == 0
    _no_secret(info.value)
    with pytest.raises(TargetError, match="not an http") as bad:
        HttpTarget(url.replace("http", "ftp", 1), num_classes=2)
    _no_secret(bad.value)


# ---------------------------------------------------------------------- options
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("retries", -1),
        ("retries", 1.5),
        ("max_response_bytes", 0),
        ("redirects", "follow"),
        ("verify", "yes"),
        ("timeout", 0),
        ("timeout", float("nan")),
        ("headers", {"Authorization": "Bearer x"}),  # and userinfo in the URL: which one?
    ],
)
def test_bad_options_are_one_line_config_errors(option: str, value: Any) -> None:
    with pytest.raises(ConfigError, match=option) as info:
        HttpTarget("http://u:p@127.0.0.1:9/p", num_classes=2, **{option: value})
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------------- redaction helpers
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pw@host:8443/p?x=1", "https://***@host:8443/p?x=1"),
        ("https://token@host/p", "https://***@host/p"),
        (
            "https://host/p?api_key=a&model=m&Access_Token=b&sig=c&my-secret-id=d",
            "https://host/p?api_key=***&model=m&Access_Token=***&sig=***&my-secret-id=***",
        ),
        (
            "https://host/p?auth=a&author=me&passwd=p",
            "https://host/p?auth=***&author=me&passwd=***",
        ),
        ("https://host/cb#access_token=abc&state=s", "https://host/cb#access_token=***&state=s"),
        ("https://host/p?flag&x=", "https://host/p?flag&x="),
        ("http://host/plain", "http://host/plain"),
    ],
)
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_text_finds_every_url() -> None:
    text = "failed: 'https://a:b@x.io/p?token=t1' then (see http://y.io/q?key=k2). plain words stay"
    assert redact_text(text) == (
        "failed: 'https://***@x.io/p?token=***' then (see http://y.io/q?key=***). plain words stay"
    )


def test_redact_argv_hides_headers_and_url_secrets() -> None:
    argv = [
        "scan",
        "--target",
        "https://u:pw@h/p?apikey=K",
        "--header",
        "Authorization: Bearer T",
        "--header=X-Key: V",
        "--eps",
        "0.1",
    ]
    assert redact_argv(argv) == [
        "scan",
        "--target",
        "https://***@h/p?apikey=***",
        "--header",
        "<hidden>",
        "--header=<hidden>",
        "--eps",
        "0.1",
    ]
