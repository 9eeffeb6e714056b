"""Switches that the CLI, a playbook or the gateway sets and that every gateway replica obeys.

Rows of one table: ``kill-switch`` (the model answers 503), ``quarantine:<key id>`` (the key is
throttled to ``response.quarantine_rate``), ``block:<key id>`` (the key is refused),
``model-version`` (the model version to serve). A gateway reads them all at once, at most
every ``cache_seconds`` (so a switch set from another process takes effect that much later)
and at once after it sets one itself.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from bastion._extras import require

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from bastion.serve.store import CONTROLS  # noqa: E402

__all__ = ["Control", "Controls"]

KILL_SWITCH = "kill-switch"
MODEL_VERSION = "model-version"


def quarantine_name(key_id: str) -> str:
    return f"quarantine:{key_id}"


def block_name(key_id: str) -> str:
    return f"block:{key_id}"


@dataclass(frozen=True)
class Control:
    name: str
    value: str
    set_at: float
    reason: str
    incident_id: int | None = None


class Controls:
    """The switches of one gateway database, cached for ``cache_seconds``."""

    def __init__(self, engine: sa.Engine, *, cache_seconds: float = 1.0) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._snapshot: dict[str, Control] = {}
        self._read_at = -float("inf")

    def snapshot(self) -> dict[str, Control]:
        """Every switch now set (from the cache when it is fresh)."""
        now = time.monotonic()
        with self._lock:
            if now - self._read_at < self.cache_seconds:
                return self._snapshot
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(CONTROLS)).all()
        snap = {r.name: Control(r.name, r.value, r.set_at, r.reason, r.incident_id) for r in rows}
        with self._lock:
            self._snapshot, self._read_at = snap, now
        return snap

    def get(self, name: str) -> Control | None:
        return self.snapshot().get(name)

    def set(self, name: str, value: str, *, reason: str, incident_id: int | None = None) -> None:
        with self.engine.begin() as conn:
            conn.execute(CONTROLS.delete().where(CONTROLS.c.name == name))
            conn.execute(
                CONTROLS.insert().values(
                    name=name,
                    value=value,
                    set_at=time.time(),
                    reason=reason,
                    incident_id=incident_id,
                )
            )
        self.invalidate()

    def clear(self, name: str) -> bool:
        """Remove a switch; whether it was set."""
        with self.engine.begin() as conn:
            gone = conn.execute(CONTROLS.delete().where(CONTROLS.c.name == name)).rowcount
        self.invalidate()
        return bool(gone)

    def invalidate(self) -> None:
        with self._lock:
            self._read_at = -float("inf")
