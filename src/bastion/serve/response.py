"""Response playbooks that act, each action recorded on the incident's timeline.

Every action works on the gateway's database, so the CLI (``bastion incident act``), a Python
caller and the gateway itself (a detector's ``throttle`` or ``block`` action) share them, and
every replica obeys within its cache time:

=================  ==============================================  ===============
action             what it does                                    playbook phase
=================  ==============================================  ===============
``quarantine``     throttle the key to ``response.quarantine_rate``  contain
``block``          refuse every request of the key                   contain
``release``        lift the key's quarantine and block               restore
``kill-switch``    answer 503 for the model (``off`` to lift it)     contain
``revoke``         revoke the key                                    evict
``rotate``         revoke the key and issue its replacement          evict
``rollback``       serve an earlier model version (hash checked)     restore
``rescan``         run ``bastion scan`` on the served model          restore
=================  ==============================================  ===============

The phases are those of the catalog's playbooks (``bastion threats incident``), whose steps
``bastion incident show`` lists beside the timeline.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion._extras import require
from bastion.core.errors import ConfigError

require("sqlalchemy")

import sqlalchemy as sa  # noqa: E402

from bastion.serve.controls import (  # noqa: E402
    KILL_SWITCH,
    MODEL_VERSION,
    Controls,
    block_name,
    quarantine_name,
)
from bastion.serve.incidents import IncidentStore  # noqa: E402
from bastion.serve.keys import ApiKey, KeyStore  # noqa: E402
from bastion.serve.store import VERSIONS  # noqa: E402

__all__ = ["ACTIONS", "ModelVersion", "ModelVersions", "Responder", "file_sha256"]

ACTIONS = {
    "quarantine": "contain",
    "block": "contain",
    "kill-switch": "contain",
    "revoke": "evict",
    "rotate": "evict",
    "release": "restore",
    "rollback": "restore",
    "rescan": "restore",
}


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelVersion:
    version: int
    path: str
    sha256: str
    registered_at: float
    note: str


class ModelVersions:
    """Model files the gateway has served, each with its content hash."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def register(self, path: str | Path, *, note: str = "") -> ModelVersion:
        """The version of the file at ``path`` as it is now (a new one if it changed)."""
        real = Path(path).resolve()
        if not real.is_file():
            raise ConfigError(f"no model file at {path}")
        digest = file_sha256(real)
        with self.engine.begin() as conn:
            found = conn.execute(
                sa.select(VERSIONS).where(VERSIONS.c.path == str(real), VERSIONS.c.sha256 == digest)
            ).first()
            if found is not None:
                return _version(found)
            number = conn.execute(
                VERSIONS.insert().values(
                    path=str(real), sha256=digest, registered_at=time.time(), note=note
                )
            ).inserted_primary_key[0]  # type: ignore[index]
        return self.get(int(number))

    def get(self, version: int) -> ModelVersion:
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(VERSIONS).where(VERSIONS.c.version == version)).first()
        if row is None:
            raise ConfigError(f"no model version {version}")
        return _version(row)

    def list(self) -> list[ModelVersion]:
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(VERSIONS).order_by(VERSIONS.c.version)).all()
        return [_version(r) for r in rows]

    def verify(self, version: int) -> ModelVersion:
        """The version, if its file still holds the bytes it was registered with."""
        v = self.get(version)
        if not Path(v.path).is_file():
            raise ConfigError(f"model version {version}: its file {v.path} is gone")
        digest = file_sha256(v.path)
        if digest != v.sha256:
            raise ConfigError(
                f"model version {version}: {v.path} no longer matches its recorded hash "
                f"(sha256 {v.sha256[:12]}..., now {digest[:12]}...); refusing it"
            )
        return v


def _version(row: Any) -> ModelVersion:
    return ModelVersion(
        int(row.version), str(row.path), str(row.sha256), float(row.registered_at), str(row.note)
    )


class Responder:
    """The playbook actions on one gateway database.

    Args:
        engine: the gateway's database (:func:`bastion.serve.store.connect`).
        actor: who acts, as recorded on the timelines (``operator``, ``gateway``, a name).
    """

    def __init__(
        self,
        engine: sa.Engine,
        *,
        actor: str = "operator",
        keys: KeyStore | None = None,
        controls: Controls | None = None,
        incidents: IncidentStore | None = None,
    ) -> None:
        self.engine = engine
        self.actor = actor
        self.keys = keys or KeyStore(engine, cache_seconds=0)
        self.controls = controls or Controls(engine, cache_seconds=0)
        self.incidents = incidents or IncidentStore(engine)
        self.versions = ModelVersions(engine)

    def _key(self, incident_id: int, key: str | None) -> ApiKey:
        ref = key or self.incidents.get(incident_id).key_id
        if ref is None:
            raise ConfigError(f"incident {incident_id} is about no key: name one")
        return self.keys.find(ref)

    def _record(self, incident_id: int, action: str, detail: dict[str, Any]) -> None:
        detail = {"phase": ACTIONS.get(action, "contain"), **detail}
        self.incidents.record(incident_id, action, detail, actor=self.actor)

    # ----------------------------------------------------------------- keys
    def quarantine(self, incident_id: int, key: str | None = None) -> ApiKey:
        """Throttle the key to a trickle (``response.quarantine_rate`` of the policy)."""
        k = self._key(incident_id, key)
        self.controls.set(
            quarantine_name(k.key_id), "on", reason="quarantined", incident_id=incident_id
        )
        self._record(incident_id, "quarantine", {"key_id": k.key_id, "key": k.name})
        return k

    def block(self, incident_id: int, key: str | None = None) -> ApiKey:
        """Refuse every request of the key (403) until released."""
        k = self._key(incident_id, key)
        self.controls.set(block_name(k.key_id), "on", reason="blocked", incident_id=incident_id)
        self._record(incident_id, "block", {"key_id": k.key_id, "key": k.name})
        return k

    def release(self, incident_id: int, key: str | None = None) -> ApiKey:
        """Lift the key's quarantine and block."""
        k = self._key(incident_id, key)
        lifted = [
            what
            for what, name in (
                ("quarantine", quarantine_name(k.key_id)),
                ("block", block_name(k.key_id)),
            )
            if self.controls.clear(name)
        ]
        if not lifted:
            raise ConfigError(f"key {k.name} ({k.key_id}) is neither quarantined nor blocked")
        self._record(incident_id, "release", {"key_id": k.key_id, "lifted": lifted})
        return k

    def revoke(self, incident_id: int, key: str | None = None) -> ApiKey:
        k = self.keys.revoke(self._key(incident_id, key).key_id)
        self._record(incident_id, "revoke", {"key_id": k.key_id, "key": k.name})
        return k

    def rotate(self, incident_id: int, key: str | None = None) -> tuple[ApiKey, str]:
        """Revoke the key and issue its replacement; the new secret is returned, never stored."""
        old = self._key(incident_id, key)
        new, secret = self.keys.rotate(old.key_id)
        self._record(
            incident_id, "rotate", {"key_id": old.key_id, "key": old.name, "new_key_id": new.key_id}
        )
        return new, secret

    # ----------------------------------------------------------------- the model
    def kill_switch(self, incident_id: int, on: bool = True) -> None:
        """Answer 503 for the model (``on``), or serve it again."""
        if on:
            self.controls.set(KILL_SWITCH, "on", reason="kill switch", incident_id=incident_id)
        elif not self.controls.clear(KILL_SWITCH):
            raise ConfigError("the kill switch is not on")
        self._record(incident_id, "kill-switch", {"on": on})

    def rollback(self, incident_id: int, version: int) -> ModelVersion:
        """Serve model ``version``; refused when its file no longer matches its hash."""
        self.incidents.get(incident_id)
        v = self.versions.verify(version)
        self.controls.set(MODEL_VERSION, str(v.version), reason="rollback", incident_id=incident_id)
        self._record(
            incident_id, "rollback", {"version": v.version, "path": v.path, "sha256": v.sha256}
        )
        return v

    def rescan(
        self,
        incident_id: int,
        *,
        target: str | None = None,
        data: str | None = None,
        out: str | Path,
        options: Sequence[str] = (),
        run: bool = True,
        background: bool = False,
        timeout: float = 3600.0,
    ) -> list[str]:
        """Re-scan the served model with ``bastion scan``; the command and its outcome are
        recorded (``run=False`` records the command for someone to run).

        ``target`` defaults to the model version being served (the latest registered unless a
        rollback chose another). With ``background`` the scan runs on a thread and this returns
        at once; ``rescan-finished`` joins the timeline when it ends. Returns the command.
        """
        self.incidents.get(incident_id)
        if target is None:
            target = self._served_path()
        command = ["bastion", "scan", "--target", target]
        if data:
            command += ["--data", data]
        command += ["--out", str(out), *options]
        self._record(
            incident_id,
            "rescan",
            {"command": shlex.join(command), "started": run},
        )
        if not run:
            return command

        def work() -> None:
            started = time.monotonic()
            argv = [sys.executable, "-m", "bastion.cli.main", *command[1:]]
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=timeout, check=False
                )
                code, tail = done.returncode, (done.stderr.strip().splitlines() or [""])[-1]
            except subprocess.TimeoutExpired:
                code, tail = -1, f"timed out after {timeout:g} s"
            detail: dict[str, Any] = {
                "exit_code": code,
                "seconds": round(time.monotonic() - started, 1),
                "last_line": tail[:500],
            }
            report = Path(out) / "report.json"
            if report.is_file():
                detail["report"] = str(report)
                detail.update(_report_summary(report))
            self.incidents.record(incident_id, "rescan-finished", detail, actor=self.actor)

        if background:
            threading.Thread(target=work, name="bastion-rescan", daemon=True).start()
        else:
            work()
        return command

    def _served_path(self) -> str:
        chosen = self.controls.get(MODEL_VERSION)
        versions = self.versions.list()
        if chosen is not None:
            return self.versions.get(int(chosen.value)).path
        if versions:
            return versions[-1].path
        raise ConfigError("no model version is registered: give the target to re-scan")


def _report_summary(path: Path) -> dict[str, Any]:
    try:
        report = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, Any] = {}
    for assessment in report.get("assessments", [])[:1]:
        for metric in assessment.get("metrics", []):
            if metric.get("name") in ("clean_accuracy", "robust_accuracy"):
                out[metric["name"]] = metric.get("value")
        out["findings"] = len(assessment.get("findings", []))
    return out
