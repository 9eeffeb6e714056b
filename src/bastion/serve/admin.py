"""The admin page: traffic per key, detector alerts, drift plots, open incidents and their
timelines, keys and their state, rendered on the server from jinja2 templates.

No script at all and nothing fetched from elsewhere: the plots are inline SVG, the style is
inline, and the page's Content-Security-Policy forbids any other source. A browser signs in
with an admin key through a form; the gateway then keeps a session (a random token, of which
only a hash is held, in memory, for an hour) in an HttpOnly, SameSite=Strict cookie.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
import threading
import time
from typing import Any

import jinja2
from markupsafe import escape

from bastion.serve.controls import KILL_SWITCH, MODEL_VERSION, block_name, quarantine_name
from bastion.serve.keys import ApiKey, Scope

__all__ = ["CSP", "Sessions", "render_dashboard", "render_login"]

CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
COOKIE = "bastion_admin"
SESSION_SECONDS = 3600


class Sessions:
    """Admin sessions of one gateway process: token hash -> (key id, expiry)."""

    def __init__(self) -> None:
        self._by_hash: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _hash(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def open(self, key: ApiKey) -> str:
        token = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._by_hash = {h: v for h, v in self._by_hash.items() if v[1] > now}
            self._by_hash[self._hash(token)] = (key.key_id, now + SESSION_SECONDS)
        return token

    def key_id(self, token: str | None) -> str | None:
        if not token or len(token) > 100:
            return None
        with self._lock:
            found = self._by_hash.get(self._hash(token))
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def close(self, token: str | None) -> None:
        if token:
            with self._lock:
                self._by_hash.pop(self._hash(token), None)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("bastion.serve", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["when"] = lambda ts: (
        "-" if ts is None else datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    )
    return env


_ENV: jinja2.Environment | None = None


def _template(name: str) -> jinja2.Template:
    global _ENV
    if _ENV is None:
        _ENV = _env()
    return _ENV.get_template(name)


def render_login(message: str = "") -> str:
    return _template("login.html.j2").render(message=message)


def bar_chart(
    series: list[tuple[str, list[float], str]],
    labels: list[str],
    *,
    width: int = 640,
    height: int = 160,
    line: float | None = None,
    title: str = "",
) -> str:
    """An inline SVG bar chart (grouped when there are several series); values in [0, 1]."""
    n = max(1, len(labels))
    groups = len(series)
    pad = 24
    slot = (width - 2 * pad) / n
    bar = max(1.0, slot * 0.8 / max(1, groups))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" '
        f'height="{height + 20}" viewBox="0 0 {width} {height + 20}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{pad}" y1="{height}" x2="{width - pad}" y2="{height}" stroke="#555"/>',
    ]
    for g, (name, values, colour) in enumerate(series):
        for i, v in enumerate(values):
            h = max(0.0, min(1.0, float(v))) * (height - 10)
            x = pad + i * slot + g * bar + slot * 0.1
            parts.append(
                f'<rect class="bar" x="{x:.1f}" y="{height - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{escape(name)} '
                f"{escape(labels[i])}: {v:.3f}</title></rect>"
            )
    if line is not None:
        y = height - max(0.0, min(1.0, line)) * (height - 10)
        parts.append(
            f'<line x1="{pad}" y1="{y:.1f}" x2="{width - pad}" y2="{y:.1f}" '
            'stroke="#b00" stroke-dasharray="4 3"/>'
        )
    step = max(1, n // 16)
    for i in range(0, n, step):
        x = pad + i * slot + slot / 2
        parts.append(
            f'<text x="{x:.1f}" y="{height + 14}" font-size="10" text-anchor="middle">'
            f"{escape(labels[i])}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def render_dashboard(gateway: Any, admin: ApiKey) -> str:
    """The admin page of ``gateway`` as ``admin`` sees it."""
    switches = gateway.controls.snapshot()
    traffic = gateway.audit.traffic()
    keys = []
    for k in gateway.keys.list():
        if not k.active:
            state = "revoked"
        elif block_name(k.key_id) in switches:
            state = "blocked"
        elif quarantine_name(k.key_id) in switches:
            state = "quarantined"
        else:
            state = "active"
        t = traffic.get(k.key_id, {})
        keys.append(
            {
                "name": k.name,
                "key_id": k.key_id,
                "scopes": ", ".join(sorted(s.value for s in k.scopes)),
                "created_at": k.created_at,
                "state": state,
                "requests": t.get("requests", 0),
                "answered": t.get("answered", 0),
                "inputs": t.get("inputs", 0),
                "refused": t.get("refused", {}),
            }
        )
    incidents = [
        gateway.incidents.get(i.id) for i in gateway.incidents.list() if i.status != "resolved"
    ][:50]
    alerts = [
        {
            "incident": i.id,
            "ts": e.ts,
            "detector": i.detector,
            "check": i.check,
            "key": i.key_id,
            "summary": e.detail.get("summary", ""),
            "action": e.detail.get("action", ""),
        }
        for i in incidents
        for e in i.timeline
        if e.action == "alert"
    ]
    alerts.sort(key=lambda a: a["ts"], reverse=True)
    drift = gateway.drift()
    plots: dict[str, str] = {}
    if drift.ks_statistics:
        plots["features"] = bar_chart(
            [("KS statistic", drift.ks_statistics, "#2a6fb0")],
            [str(i) for i in range(len(drift.ks_statistics))],
            title="Per-feature KS statistic, window against reference",
        )
    if drift.window_classes:
        plots["classes"] = bar_chart(
            [
                ("reference", drift.reference_classes, "#888"),
                ("window", drift.window_classes, "#2a6fb0"),
            ],
            [str(i) for i in range(len(drift.window_classes))],
            title="Predicted classes: reference (grey) and window (blue)",
        )
    version = switches.get(MODEL_VERSION)
    return _template("admin.html.j2").render(
        describe=gateway.describe(),
        admin=admin,
        kill_switch=KILL_SWITCH in switches,
        model_version=gateway.version,
        chosen_version=None if version is None else version.value,
        keys=keys,
        detectors=gateway.detection.state(),
        alerts=alerts[:100],
        incidents=incidents,
        drift=drift,
        plots=plots,
        now=time.time(),
        scope=Scope,
    )
