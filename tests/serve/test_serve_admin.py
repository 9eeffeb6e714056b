"""The admin page: behind an admin key (bearer token or sign-in form), server-rendered, no
script, nothing fetched from outside; checked over HTTP and in a real headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bastion.data import Dataset
from bastion.serve import BackgroundServer

from .conftest import Client, MakeGateway

_CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
POLICY = {
    "limits": {"rate": None, "budget": None},
    "monitoring": {"cache_seconds": 0},
    "detectors": [{"detector": "query-stats", "action": "throttle"}],
}


@pytest.fixture
def busy(make_gateway: MakeGateway, demo: tuple[Any, Dataset]) -> Iterator[Client]:
    """A gateway with traffic: a benign key, a thief quarantined by a detector, drift data."""
    _, data = demo
    rng = np.random.default_rng(0)
    reference = data.x_train[rng.choice(len(data.x_train), 300, replace=False)]
    server = BackgroundServer(make_gateway(POLICY, reference=reference)).start()
    c = Client(server)
    for i in range(0, 100, 25):
        assert c.predict(data.x_test[i : i + 25].tolist()).status_code == 200
    _, thief = c.gateway.keys.create("thief")
    for _ in range(7):
        c.predict(rng.random((10, 1, 8, 8)).tolist(), key=thief)
    try:
        yield c
    finally:
        server.stop()


def test_admin_page_needs_an_admin_key_and_shows_everything(busy: Client) -> None:
    c = busy
    anon = c.http.get("/admin")
    assert anon.status_code == 401 and 'name="key"' in anon.text
    csp = anon.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    not_admin = c.http.get("/admin", headers={"Authorization": f"Bearer {c.key}"})
    assert not_admin.status_code == 401 and "Keys and traffic" not in not_admin.text

    r = c.http.get("/admin", headers={"Authorization": f"Bearer {c.admin}"})
    assert r.status_code == 200
    html = r.text
    assert "<script" not in html.lower()
    assert "quarantined" in html and "thief" in html and "alice" in html
    assert "query-stats/outside-reference" in html  # the alert
    assert "AML.T0024.002" in html and "quarantine" in html  # the incident and its timeline
    assert html.count("<svg") == 2  # the drift plots
    assert c.key not in html and c.admin not in html


def test_sign_in_form_sets_a_strict_httponly_session(busy: Client) -> None:
    c = busy
    bad = c.http.post("/admin/login", data={"key": "bst_nope"})
    assert bad.status_code == 401 and "not a valid admin key" in bad.text
    scope = c.http.post("/admin/login", data={"key": c.key})
    assert scope.status_code == 403 and "admin scope" in scope.text
    ok = c.http.post("/admin/login", data={"key": c.admin})
    assert ok.status_code == 303 and ok.headers["location"] == "/admin"
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin" in cookie
    assert c.admin not in ok.headers["set-cookie"]  # a session token, not the key
    assert c.http.get("/admin").status_code == 200  # the client keeps the cookie
    c.gateway.keys.revoke("root")
    assert c.http.get("/admin").status_code == 401  # a revoked key's session ends with it


# ---------------------------------------------------------------------- a real browser
def _chromium() -> str | None:
    return next((p for p in map(shutil.which, _CHROMIUM_NAMES) if p), None)


def _place(read_end: int, write_end: int) -> None:
    os.dup2(read_end, 3)
    os.dup2(write_end, 4)


class Chromium:
    """Headless Chromium driven over the DevTools protocol on a pipe (no extra packages)."""

    def __init__(self, binary: str, profile: Path) -> None:
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        self.proc = subprocess.Popen(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                f"--user-data-dir={profile}",
                "--remote-debugging-pipe",
                "about:blank",
            ],
            # Chromium reads commands from fd 3 and writes replies to fd 4; the fds are kept
            # open through the exec (pass_fds), then moved into place via fresh copies so
            # neither dup2 overwrites the other's source
            pass_fds=(3, 4, to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=lambda: _place(os.dup(to_child_r), os.dup(from_child_w)),
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []
        self.session: str | None = None

    def send(self, method: str, params: dict[str, Any] | None = None, *, page: bool = True) -> Any:
        self._next += 1
        msg: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if page and self.session:
            msg["sessionId"] = self.session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                assert "error" not in reply, reply
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            if time.monotonic() > deadline:
                raise TimeoutError("chromium did not answer")
            chunk = os.read(self._from_child, 65536)
            if not chunk:
                raise RuntimeError("chromium closed its pipe")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message

    def wait_for(self, method: str) -> dict[str, Any]:
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            event = self._read()
            if event.get("method") == method:
                return event
            self.events.append(event)

    def open_page(self) -> None:
        target = self.send("Target.createTarget", {"url": "about:blank"}, page=False)
        attached = self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}, page=False
        )
        self.session = attached["sessionId"]
        self.send("Page.enable")
        self.send("Network.enable")

    def navigate(self, url: str) -> None:
        self.send("Page.navigate", {"url": url})
        self.wait_for("Page.loadEventFired")

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result["result"].get("value")

    def requested_urls(self) -> list[str]:
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self._to_child)
        os.close(self._from_child)


@pytest.fixture
def chromium(tmp_path: Path) -> Iterator[Chromium]:
    binary = _chromium()
    assert binary is not None
    browser = Chromium(binary, tmp_path / "profile")
    try:
        browser.open_page()
        yield browser
    finally:
        browser.close()


@pytest.mark.skipif(
    _chromium() is None,
    reason="no Chromium binary found (looked for: " + ", ".join(_CHROMIUM_NAMES) + ")",
)
def test_admin_page_in_headless_chromium(busy: Client, chromium: Chromium) -> None:
    c = busy
    chromium.navigate(f"{c.server.url}/admin")
    assert chromium.evaluate("document.querySelector('input[name=key]') !== null")
    # sign in as a person would: type the key into the form and submit it
    chromium.evaluate(f"document.getElementById('key').value = {json.dumps(c.admin)}")
    chromium.evaluate("document.querySelector('form').submit()")
    chromium.wait_for("Page.loadEventFired")
    page: Callable[[str], Any] = chromium.evaluate
    assert page("location.pathname") == "/admin"
    assert page("document.title").startswith("bastion gateway")
    assert page("document.cookie") == ""  # HttpOnly: no script can read the session
    text = page("document.body.innerText")
    assert "Keys and traffic" in text and "thief" in text and "quarantined" in text
    assert "outside-reference" in text and "AML.T0024.002" in text
    rows = page("document.querySelectorAll('#keys-table tr').length")
    assert rows == 1 + len(c.gateway.keys.list())
    assert page("document.querySelectorAll('.incident .timeline tr').length") >= 3
    # the drift plots render as SVG with bars of real size
    assert page("document.querySelectorAll('svg').length") == 2
    widths = page(
        "[...document.querySelectorAll('#plot-features rect.bar')]"
        ".map(r => r.getBoundingClientRect().height).filter(h => h > 0).length"
    )
    assert widths > 10
    assert page("document.scripts.length") == 0
    urls = chromium.requested_urls()
    assert urls and all(u.startswith(c.server.url) for u in urls), urls
