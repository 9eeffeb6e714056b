"""Property-based fuzzing of the predict API on a real server: nothing a caller sends is a 500."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz test needs hypothesis")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from .conftest import Client  # noqa: E402

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=40,
)
NUMBER = st.one_of(
    st.floats(min_value=0, max_value=1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
)


@st.composite
def near_valid(draw: st.DrawFn) -> bytes:
    """A batch of about the right shape, with a few numbers, sizes or types off."""
    n = draw(st.integers(0, 3))
    rows = draw(st.integers(7, 9))
    cols = draw(st.integers(7, 9))
    value = draw(NUMBER)
    batch = [[[[value] * cols] * rows] for _ in range(n)]
    return json.dumps({"inputs": batch}).encode()


BODIES = st.one_of(
    st.binary(max_size=200),
    JSON.map(lambda v: json.dumps(v).encode()),
    JSON.map(lambda v: json.dumps({"inputs": v}).encode()),
    near_valid(),
)
# header values a client can send: visible ASCII and spaces
AUTH = st.one_of(
    st.just("valid"),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60),
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60).map(
        lambda t: f"Bearer bst_{t}"
    ),
)


def test_no_request_makes_the_gateway_fail(serve: Callable[..., Client]) -> None:
    c = serve({"limits": {"rate": None, "budget": None}})
    seen: set[int] = set()

    @settings(
        max_examples=150,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(body=BODIES, auth=AUTH)
    def check(body: bytes, auth: str) -> None:
        header = f"Bearer {c.key}" if auth == "valid" else auth
        headers: dict[str, Any] = {"Content-Type": "application/json"}
        if header.strip():  # HTTP drops a value's outer spaces, and clients refuse to send them
            headers["Authorization"] = header.strip()
        r = c.http.post("/predict", content=body, headers=headers)
        seen.add(r.status_code)
        assert r.status_code < 500, (r.status_code, r.text, body[:200])
        assert "detail" in r.json() or "outputs" in r.json()

    check()
    # the fuzz reached past authentication into validation, and some inputs were answered
    assert {401, 422} <= seen
    assert c.gateway.audit.count() >= 150
