"""A remote model behind an HTTP JSON predict endpoint.

A scan sends thousands of requests to a service that is often someone else's, with the user's
credentials. So the client here is defensive: credentials never leave the origin the user
named (redirects are refused by default), answers are size-capped and each request has one
total deadline (a slow or hostile server cannot hang or flood a scan), transient failures are
retried with backoff instead of killing an hour-long scan, and every name and message that
could reach a report or a log is redacted.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import math
import random
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, NoReturn

import httpcore
import httpx
import numpy as np
import tenacity

from bastion.core.errors import ConfigError, TargetError
from bastion.core.redact import redact_text, redact_url
from bastion.core.targets.base import BlackBoxTarget
from bastion.core.threat import OutputKind

__all__ = ["HttpTarget"]

_REDIRECT_MODES = ("refuse", "same-origin")
_KEEPS_METHOD = frozenset({307, 308})  # the only redirects that must resend the POST as is
_MAX_REDIRECTS = 5
_MAX_RETRY_AFTER = 60.0  # seconds: a server cannot park a scan for longer per attempt
_BACKOFF_BASE = 0.2  # seconds before the first retry, doubling after
_BACKOFF_MAX = 5.0
_BACKOFF_JITTER = 0.2
_RETRY_AFTER_STATUS = frozenset({429, 503})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LIMITS = httpx.Limits(max_connections=8, max_keepalive_connections=4, keepalive_expiry=30.0)


class _Transient(Exception):
    """A failure another attempt may cure (5xx, 429, a reset, a timeout).

    The message is already redacted; ``retry_after`` is the server's own wait, in seconds.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# ---------------------------------------------------------------------- total deadline
class _Deadline:
    """The monotonic time the current thread's request must finish by (None: no request).

    httpx timeouts bound each socket operation; a server that trickles one byte at a time
    never trips them. Every socket operation of our connections asks this for its timeout
    instead, so the whole request (connect, send, headers, body) ends at one deadline.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    @contextlib.contextmanager
    def until(self, at: float) -> Iterator[None]:
        self._local.at = at
        try:
            yield
        finally:
            self._local.at = None

    def bound(self, timeout: float | None, expired: type[Exception]) -> float | None:
        """``timeout`` cut to the time left; ``expired`` raised when none is left."""
        at: float | None = getattr(self._local, "at", None)
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise expired("the request's deadline passed")
        return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write is bounded by the request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: _Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, bounded), self._deadline
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's socket backend, handing out deadline-bounded streams."""

    def __init__(self, deadline: _Deadline) -> None:
        self._inner = httpcore.SyncBackend()
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_tcp(host, port, bounded, local_address, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        stream = self._inner.connect_unix_socket(path, bounded, socket_options)
        return _DeadlineStream(stream, self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(verify: bool, deadline: _Deadline) -> httpx.HTTPTransport:
    """httpx's transport, its connection pool rebuilt on the deadline-bounded backend.

    httpx has no public way to pass httpcore a network backend, so the pool is swapped after
    construction; should a future httpx not have the attribute, the transport still works and
    the deadline is enforced between body chunks only (see ``_read_capped``).
    """
    ssl_context = httpx.create_ssl_context(verify=verify)
    transport = httpx.HTTPTransport(verify=ssl_context, limits=_LIMITS)
    if isinstance(getattr(transport, "_pool", None), httpcore.ConnectionPool):
        transport._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=_LIMITS.max_connections,
            max_keepalive_connections=_LIMITS.max_keepalive_connections,
            keepalive_expiry=_LIMITS.keepalive_expiry,
            network_backend=_DeadlineBackend(deadline),
        )
    return transport


# ---------------------------------------------------------------------- logging
class _RedactingFilter(logging.Filter):
    """httpx logs every request URL at INFO; an API key in the query must not reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact_text(record.getMessage())
        record.args = None
        return True


def _redact_httpx_logs() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
        logger.addFilter(_RedactingFilter())


# ---------------------------------------------------------------------- small helpers
def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """Scheme, host and port: what must match for a redirect to keep the credentials."""
    return url.scheme, url.host, url.port or _DEFAULT_PORTS.get(url.scheme)


def _retry_after(response: httpx.Response) -> float | None:
    """The server's Retry-After in seconds (a number or an HTTP date), capped; None if absent."""
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _cert_failure(exc: BaseException) -> bool:
    """Whether a connection failed on TLS verification (no retry can fix that)."""
    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return True
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return False


def _split_userinfo(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its userinfo, and the (user, password) it held, decoded."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    bare = urllib.parse.urlunsplit(parts._replace(netloc=hostport))
    return bare, (urllib.parse.unquote(user), urllib.parse.unquote(password))


class HttpTarget(BlackBoxTarget):
    """A model served over HTTP(S): POST ``{"inputs": [...]}``, read scores or labels back.

    The request body is ``{input_key: batch}`` with the batch as nested lists of the input
    shape. The response is a JSON object whose ``output_key`` holds (N, C) scores or (N,)
    labels, per ``output_kind``.

    Requests go through one pooled keep-alive ``httpx.Client``, made on first use; call
    :meth:`close` (or use the target as a context manager) to release its connections.

    Args:
        url: the predict endpoint. ``https://user:password@host/...`` sends HTTP basic auth.
        headers: extra request headers (an API key, say); never logged or reported.
        timeout: seconds one request may take in all (connect, send, the whole answer).
        retries: further attempts after a 5xx, a 429, a reset or a timeout (0: none).
        max_response_bytes: the largest answer accepted (decoded), 32 MiB by default.
        redirects: ``"refuse"`` (default) any redirect, or follow ``"same-origin"`` 307/308
            redirects, which resend the same POST; credentials never go to another origin.
        verify: check the server's TLS certificate; turn off only for a test server.
    """

    def __init__(
        self,
        url: str,
        *,
        num_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        output_kind: OutputKind | str = OutputKind.PROBABILITIES,
        input_key: str = "inputs",
        output_key: str = "outputs",
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        batch_size: int = 256,
        query_budget: int | None = None,
        retries: int = 3,
        max_response_bytes: int = 32 * 2**20,
        redirects: str = "refuse",
        verify: bool = True,
    ) -> None:
        shown = redact_url(url)
        try:
            parsed = urllib.parse.urlsplit(url)
            valid = parsed.scheme in ("http", "https") and bool(parsed.hostname)
            _ = parsed.port  # raises on a port that is not a number
        except ValueError:
            valid = False
        if not valid:
            raise TargetError(f"not an http(s) URL: {shown!r}")
        _check_options(timeout, retries, max_response_bytes, redirects, verify)
        super().__init__(
            output_kind=OutputKind(output_kind),
            num_classes=num_classes,
            bounds=bounds,
            input_shape=input_shape,
            query_budget=query_budget,
            batch_size=batch_size,
            # the name goes into reports and errors: no credentials, no secret query values
            name=shown,
        )
        self.url = shown  # what may be shown; the secret-bearing URL stays private
        self._request_url, self._auth = _split_userinfo(url)
        if self._auth is not None and any(k.lower() == "authorization" for k in headers or {}):
            # one would silently override the other: make the user pick
            raise ConfigError(
                "the URL's user:password and an Authorization in headers both "
                "authenticate; give one"
            )
        self.input_key = input_key
        self.output_key = output_key
        self._headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **dict(headers or {}),
        }
        self.timeout = float(timeout)
        self.retries = retries
        self.max_response_bytes = max_response_bytes
        self.redirects = redirects
        self.verify = verify
        self._deadline = _Deadline()
        self._http: httpx.Client | None = None
        self._http_lock = threading.Lock()

    # ----------------------------------------------------------------- client lifecycle
    def _client(self) -> httpx.Client:
        with self._http_lock:
            if self._http is None:
                _redact_httpx_logs()
                self._http = httpx.Client(
                    transport=_transport(self.verify, self._deadline),
                    follow_redirects=False,  # redirects are checked by hand, see _redirect
                    timeout=self.timeout,
                )
            return self._http

    def close(self) -> None:
        """Close the pooled connections; a later query opens a new client."""
        with self._http_lock:
            client, self._http = self._http, None
        if client is not None:
            client.close()

    def __enter__(self) -> HttpTarget:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ----------------------------------------------------------------- querying
    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        body = json.dumps({self.input_key: x.tolist()}).encode()
        payload = self._post_with_retries(body)
        if not isinstance(payload, dict) or self.output_key not in payload:
            raise TargetError(f"{self.name} answered without the key {self.output_key!r}")
        try:
            out = np.asarray(payload[self.output_key], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TargetError(
                f"{self.name} answered {self.output_key!r} that is not numeric"
            ) from exc
        if out.ndim == 0 or len(out) != len(x):
            got = 1 if out.ndim == 0 else len(out)
            raise TargetError(f"{self.name} answered {got} outputs for {len(x)} inputs")
        return out

    def _post_with_retries(self, body: bytes) -> Any:
        """The decoded JSON answer, after up to ``retries`` more attempts on transient errors."""
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Transient),
            reraise=True,
        )
        try:
            return retrying(self._post, body)
        except _Transient as exc:
            attempts = self.retries + 1
            tried = f"{attempts} attempts" if attempts > 1 else "1 attempt"
            raise TargetError(f"{exc} (gave up after {tried})") from None

    @staticmethod
    def _wait(state: tenacity.RetryCallState) -> float:
        """The server's Retry-After when it gave one, else exponential backoff with jitter."""
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return exc.retry_after
        backoff = min(_BACKOFF_BASE * 2.0 ** (state.attempt_number - 1), _BACKOFF_MAX)
        return backoff + random.uniform(0.0, _BACKOFF_JITTER)

    def _post(self, body: bytes) -> Any:
        """One attempt: POST ``body`` (following allowed redirects), within one deadline."""
        deadline = time.monotonic() + self.timeout
        url = httpx.URL(self._request_url)
        client = self._client()
        with self._deadline.until(deadline):
            for _ in range(_MAX_REDIRECTS + 1):
                try:
                    with client.stream(
                        "POST", url, content=body, headers=self._headers, auth=self._auth
                    ) as response:
                        if response.is_redirect:
                            url = self._redirect(response, url)
                            continue
                        self._check_status(response)
                        raw = self._read_capped(response, deadline)
                except httpx.HTTPError as exc:
                    self._raise_transport(exc)
                try:
                    return json.loads(raw)
                except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                    raise TargetError(
                        f"{self.name} did not answer JSON: {redact_text(str(exc))}"
                    ) from None
        raise TargetError(f"{self.name} redirected more than {_MAX_REDIRECTS} times")

    def _raise_transport(self, exc: httpx.HTTPError) -> NoReturn:
        """Map an httpx failure to a retryable one or a final TargetError, redacted."""
        reason = redact_text(str(exc)) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            raise _Transient(f"{self.name} did not answer within {self.timeout:g} s") from None
        if isinstance(exc, httpx.ConnectError) and _cert_failure(exc):
            raise TargetError(
                f"cannot reach {self.name}: its TLS certificate is not trusted ({reason})"
            ) from None
        if isinstance(exc, (httpx.NetworkError, httpx.RemoteProtocolError)):
            raise _Transient(f"cannot reach {self.name}: {reason}") from None
        raise TargetError(f"cannot query {self.name}: {reason}") from None

    def _redirect(self, response: httpx.Response, url: httpx.URL) -> httpx.URL:
        """Where a redirect may be followed to, or a TargetError saying why not."""
        code = response.status_code
        try:
            target = url.join(response.headers["location"])
        except httpx.InvalidURL:
            raise TargetError(f"{self.name} redirected (HTTP {code}) to an invalid URL") from None
        # a Location with userinfo would make httpx send those credentials: never
        target = target.copy_with(username=None, password=None)
        where = f"{self.name} redirected (HTTP {code}) to {redact_url(str(target))}"
        if self.redirects == "refuse":
            raise TargetError(
                f"{where}; redirects are refused so credentials cannot follow them: "
                "use the final URL (or redirects='same-origin')"
            )
        if _origin(target) != _origin(url):
            raise TargetError(f"{where}, another origin; credentials stay with the one named")
        if code not in _KEEPS_METHOD:
            raise TargetError(f"{where}, which would turn the POST into a GET; only 307/308")
        return target

    def _check_status(self, response: httpx.Response) -> None:
        """Nothing for a 2xx; a retryable failure for 5xx and 429, else a TargetError."""
        code = response.status_code
        if 200 <= code < 300:
            return
        what = f"{self.name} answered HTTP {code} {redact_text(response.reason_phrase)}".rstrip()
        if code >= 500 or code == 429:
            wait = _retry_after(response) if code in _RETRY_AFTER_STATUS else None
            raise _Transient(what, retry_after=wait)
        raise TargetError(what)

    def _read_capped(self, response: httpx.Response, deadline: float) -> bytes:
        """The answer's body, refusing more than ``max_response_bytes`` or a missed deadline."""
        cap = self.max_response_bytes
        too_big = (
            f"{self.name} answered more than {cap} bytes; raise max_response_bytes if expected"
        )
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise TargetError(too_big)
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > cap:
                raise TargetError(too_big)
            if time.monotonic() > deadline:
                raise _Transient(f"{self.name} did not answer within {self.timeout:g} s")
            chunks.append(chunk)
        return b"".join(chunks)


def _check_options(
    timeout: float, retries: int, max_response_bytes: int, redirects: str, verify: bool
) -> None:
    """One-line ConfigErrors for the connection options."""
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigError(f"timeout must be a number of seconds, got {timeout!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ConfigError(f"timeout must be a positive number of seconds, got {timeout!r}")
    for what, value, least in (
        ("retries", retries, 0),
        ("max_response_bytes", max_response_bytes, 1),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ConfigError(f"{what} must be a whole number >= {least}, got {value!r}")
    if redirects not in _REDIRECT_MODES:
        raise ConfigError(f"redirects must be 'refuse' or 'same-origin', got {redirects!r}")
    if not isinstance(verify, bool):
        raise ConfigError(f"verify must be True or False, got {verify!r}")
