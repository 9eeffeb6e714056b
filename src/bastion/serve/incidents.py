"""Incidents: detector alerts kept beside the audit log, with a timeline of what was done.

An alert with an action other than ``log`` opens an incident (or adds to the open one of the
same detector, check and key): severity, the evidence, the ATLAS technique ids and the
catalog's signal names, and the catalog playbook those techniques point at. Its timeline
holds the opening alert, each acknowledgement and each playbook action
(:mod:`bastion.serve.response`), with who did it and when. Statuses: ``open`` ->
``acknowledged`` -> ``resolved``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from bastion._extras import require
from bastion.core.errors import ConfigError

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from bastion.serve.detection import Alert  # noqa: E402
from bastion.serve.store import EVENTS, INCIDENTS  # noqa: E402

__all__ = ["Event", "Incident", "IncidentStore", "playbook_for"]

STATUSES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True)
class Event:
    """One entry of an incident's timeline."""

    ts: float
    actor: str
    action: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class Incident:
    id: int
    opened_at: float
    updated_at: float
    status: str
    severity: str
    title: str
    detector: str
    check: str
    key_id: str | None
    techniques: tuple[str, ...]
    signals: tuple[str, ...]
    playbook: str | None
    evidence: dict[str, Any]
    timeline: tuple[Event, ...] = field(default=())

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "opened_at": self.opened_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "severity": self.severity,
            "title": self.title,
            "detector": self.detector,
            "check": self.check,
            "key_id": self.key_id,
            "techniques": list(self.techniques),
            "signals": list(self.signals),
            "playbook": self.playbook,
            "evidence": self.evidence,
            "timeline": [
                {"ts": e.ts, "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in self.timeline
            ],
        }


def playbook_for(techniques: tuple[str, ...]) -> str | None:
    """The catalog playbook of the first technique that has one (a sub-technique inherits)."""
    from bastion.catalog import load_catalog

    catalog = load_catalog(links=False)
    for tid in techniques:
        tech = catalog.techniques.get(tid)
        if tech is not None and tech.playbook:
            return tech.playbook
    return None


class IncidentStore:
    """The incidents of one gateway database."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def report(self, alert: Alert) -> Incident:
        """Open an incident for ``alert``, or add it to the open one it repeats."""
        now = time.time()
        detail = {"summary": alert.summary, "evidence": alert.evidence, "action": alert.action}
        with self.engine.begin() as conn:
            same = conn.execute(
                sa.select(INCIDENTS.c.id)
                .where(
                    INCIDENTS.c.detector == alert.detector,
                    INCIDENTS.c.check_name == alert.check,
                    INCIDENTS.c.status != "resolved",
                    (INCIDENTS.c.key_id == alert.key_id)
                    if alert.key_id is not None
                    else INCIDENTS.c.key_id.is_(None),
                )
                .order_by(INCIDENTS.c.id.desc())
            ).first()
            if same is not None:
                incident_id = int(same.id)
                conn.execute(
                    INCIDENTS.update()
                    .where(INCIDENTS.c.id == incident_id)
                    .values(updated_at=now, evidence=json.dumps(alert.evidence))
                )
            else:
                incident_id = int(
                    conn.execute(
                        INCIDENTS.insert().values(
                            opened_at=now,
                            updated_at=now,
                            status="open",
                            severity=alert.severity,
                            title=alert.summary[:500],
                            detector=alert.detector,
                            check_name=alert.check,
                            key_id=alert.key_id,
                            techniques=json.dumps(list(alert.techniques)),
                            signals=json.dumps(list(alert.signals)),
                            playbook=playbook_for(alert.techniques),
                            evidence=json.dumps(alert.evidence),
                        )
                    ).inserted_primary_key[0]  # type: ignore[index]
                )
            conn.execute(
                EVENTS.insert().values(
                    incident_id=incident_id,
                    ts=alert.ts,
                    actor=f"detector:{alert.detector}",
                    action="alert",
                    detail=json.dumps(detail),
                )
            )
        return self.get(incident_id)

    def record(
        self, incident_id: int, action: str, detail: dict[str, Any], *, actor: str
    ) -> Incident:
        """Add ``action`` to the incident's timeline."""
        self.get(incident_id)  # exists, or a one-line error
        now = time.time()
        with self.engine.begin() as conn:
            conn.execute(
                EVENTS.insert().values(
                    incident_id=incident_id,
                    ts=now,
                    actor=actor,
                    action=action,
                    detail=json.dumps(detail, default=str),
                )
            )
            conn.execute(
                INCIDENTS.update().where(INCIDENTS.c.id == incident_id).values(updated_at=now)
            )
        return self.get(incident_id)

    def _status(self, incident_id: int, status: str, note: str, actor: str) -> Incident:
        current = self.get(incident_id)
        if current.status == "resolved":
            raise ConfigError(f"incident {incident_id} is already resolved")
        if current.status == status:
            raise ConfigError(f"incident {incident_id} is already {status}")
        with self.engine.begin() as conn:
            conn.execute(
                INCIDENTS.update().where(INCIDENTS.c.id == incident_id).values(status=status)
            )
        return self.record(
            incident_id,
            "acknowledge" if status == "acknowledged" else "resolve",
            {"note": note} if note else {},
            actor=actor,
        )

    def ack(self, incident_id: int, *, note: str = "", actor: str = "operator") -> Incident:
        """Acknowledge: someone is on it."""
        return self._status(incident_id, "acknowledged", note, actor)

    def resolve(self, incident_id: int, *, note: str = "", actor: str = "operator") -> Incident:
        """Close the incident (the switches its actions set stay until released)."""
        return self._status(incident_id, "resolved", note, actor)

    def get(self, incident_id: int) -> Incident:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(INCIDENTS).where(INCIDENTS.c.id == incident_id)).first()
            if row is None:
                raise ConfigError(f"no incident {incident_id}")
            events = conn.execute(
                sa.select(EVENTS)
                .where(EVENTS.c.incident_id == incident_id)
                .order_by(EVENTS.c.ts, EVENTS.c.id)
            ).all()
        timeline = tuple(Event(e.ts, e.actor, e.action, json.loads(e.detail)) for e in events)
        return _incident(row, timeline)

    def list(self, *, status: str | None = None, key_id: str | None = None) -> list[Incident]:
        """Incidents, newest first (without their timelines)."""
        if status is not None and status not in STATUSES:
            raise ConfigError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        query = sa.select(INCIDENTS).order_by(INCIDENTS.c.id.desc())
        if status is not None:
            query = query.where(INCIDENTS.c.status == status)
        if key_id is not None:
            query = query.where(INCIDENTS.c.key_id == key_id)
        with self.engine.connect() as conn:
            return [_incident(r, ()) for r in conn.execute(query).all()]


def _incident(row: Any, timeline: tuple[Event, ...]) -> Incident:
    return Incident(
        id=int(row.id),
        opened_at=float(row.opened_at),
        updated_at=float(row.updated_at),
        status=str(row.status),
        severity=str(row.severity),
        title=str(row.title),
        detector=str(row.detector),
        check=str(row.check_name),
        key_id=row.key_id,
        techniques=tuple(json.loads(row.techniques)),
        signals=tuple(json.loads(row.signals)),
        playbook=row.playbook,
        evidence=json.loads(row.evidence),
        timeline=timeline,
    )
