"""The gateway: a target behind a policy. Everything the HTTP service does, a caller can do here.

One predict request goes through, in order: the key (401 without a valid one, 403 without the
``predict`` scope), the kill switch (503), a block on the key (403), the key's rate limit and,
when it is quarantined, its trickle (429), the body and batch limits (413), the input checks
(400, 422), the input detectors (403 when one that blocks fires), the key's query budget (429),
then the model and the output hardening; the answered batch then feeds the key detectors, whose
alerts open incidents and may quarantine or block the key for its next requests. Whatever the
outcome, the request's audit row is committed before the answer is returned; when it cannot be,
the answer is a 503 and not the model's.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bastion.core.errors import BastionError, ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind
from bastion.serve.audit import AuditLog, AuditRecord, AuditUnavailable
from bastion.serve.controls import (
    KILL_SWITCH,
    MODEL_VERSION,
    Control,
    Controls,
    block_name,
    quarantine_name,
)
from bastion.serve.detection import Alert, Detection
from bastion.serve.incidents import IncidentStore
from bastion.serve.keys import ApiKey, KeyStore, Scope
from bastion.serve.logs import log_event
from bastion.serve.metrics import GatewayMetrics
from bastion.serve.monitoring import DriftReport, Monitor
from bastion.serve.policy import Policy
from bastion.serve.ratelimit import Limiter
from bastion.serve.response import ModelVersions, Responder
from bastion.serve.store import connect
from bastion.serve.validation import InputSpec, InvalidRequest, input_digest, parse_inputs

__all__ = ["Answer", "Denied", "Gateway", "new_request_id"]


def new_request_id() -> str:
    """A fresh request id (the gateway makes its own; a caller's is never trusted)."""
    return uuid.uuid4().hex


class Denied(BastionError):
    """A request the gateway refuses: the status, a one-line reason, and the decision."""

    def __init__(
        self, status: int, message: str, decision: str, *, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.decision = decision
        self.retry_after = retry_after


@dataclass
class Answer:
    """What the gateway answers: status, JSON body and headers, and who asked."""

    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    decision: str = "allowed"
    key: ApiKey | None = None


_MAX_FEEDBACK = 1000


def _feedback_items(body: bytes | None) -> list[tuple[str, list[int]]]:
    """The (request id, labels) pairs of a feedback body, or :class:`Denied` (4xx)."""
    if body is None:
        raise Denied(413, "the request body is over the limit", "invalid")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise Denied(400, "the request body is not valid JSON", "invalid") from None
    if not isinstance(data, dict) or set(data) != {"feedback"}:
        raise Denied(
            422, 'send only {"feedback": [{"request_id": ..., "labels": [...]}]}', "invalid"
        )
    items = data["feedback"]
    if not isinstance(items, list) or not 1 <= len(items) <= _MAX_FEEDBACK:
        raise Denied(422, f"'feedback' must be a list of 1 to {_MAX_FEEDBACK} items", "invalid")
    out = []
    for i, item in enumerate(items):
        ok = (
            isinstance(item, dict)
            and set(item) == {"request_id", "labels"}
            and isinstance(item["request_id"], str)
            and 0 < len(item["request_id"]) <= 64
            and isinstance(item["labels"], list)
            and item["labels"]
            and all(type(v) is int and v >= 0 for v in item["labels"])
        )
        if not ok:
            raise Denied(
                422,
                f'feedback item {i} must be {{"request_id": a string, "labels": a list of '
                "class numbers}",
                "invalid",
            )
        out.append((item["request_id"], list(item["labels"])))
    return out


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Gateway:
    """``target`` served under ``policy``.

    Args:
        target: any bastion target (a demo, a model file, even a remote endpoint).
        policy: what to enforce (:func:`bastion.serve.policy.load_policy`).
        engine: a SQLAlchemy engine for keys and the audit log (default: the policy's
            ``database``).
        namespace: prefix of the rate-limit counters (replicas of one model share it).
        reference: reference inputs, shape (N, *input_shape), drawn from the data the model
            was trained or validated on: the detectors calibrate on it and drift is measured
            against it.
        loader: loads a model file into a target, for rolling back to a registered version.
        version: the registered model version ``target`` is (``ModelVersions.register``).

    Example:
        >>> gw = Gateway(target, load_policy("policy.yaml"))  # doctest: +SKIP
        >>> key, secret = gw.keys.create("alice")  # doctest: +SKIP
        >>> gw.predict(f"Bearer {secret}", b'{"inputs": [...]}').status  # doctest: +SKIP
        200
    """

    def __init__(
        self,
        target: Target,
        policy: Policy | None = None,
        *,
        engine: Any = None,
        namespace: str | None = None,
        reference: np.ndarray | None = None,
        loader: Callable[[str], Target] | None = None,
        version: int | None = None,
    ) -> None:
        from bastion.defences import DefendedTarget, Postprocessor, create_defence

        self.policy = policy or Policy()
        shape = self.policy.inputs.shape or target.input_shape
        if shape is None:
            raise ConfigError(
                "the target does not declare its input shape: set inputs.shape in the policy"
            )
        self.target = target
        posts = [create_defence(spec) for spec in self.policy.output]
        self.postprocessors: list[Postprocessor] = [
            p for p in posts if isinstance(p, Postprocessor)
        ]
        self._wrap: Callable[[Target], Target] = lambda t: (
            DefendedTarget(t, self.postprocessors) if self.postprocessors else t
        )
        self.model: Target = self._wrap(target)
        self.output_kind: OutputKind = self.model.output_kind
        self._decimals = min(
            (int(p.decimals) for p in self.postprocessors if hasattr(p, "decimals")),
            default=None,
        )
        self.input_spec = InputSpec(
            shape=tuple(shape),
            bounds=tuple(self.policy.inputs.bounds or target.bounds),  # type: ignore[arg-type]
            max_batch=self.policy.inputs.max_batch,
            max_body_bytes=self.policy.inputs.max_body_bytes,
            dtype=self.policy.inputs.dtype,
        )
        self.engine = (
            engine
            if engine is not None
            else connect(self.policy.database, durability=self.policy.audit.durability)
        )
        self.keys = KeyStore(self.engine, cache_seconds=self.policy.auth.key_cache_seconds)
        self.audit = AuditLog(self.engine, timeout=self.policy.audit.timeout_seconds)
        self.limiter = Limiter(self.policy.limits, namespace=namespace or f"bastion:{target.name}")
        self.metrics = GatewayMetrics()
        self.controls = Controls(self.engine, cache_seconds=self.policy.auth.key_cache_seconds)
        self.incidents = IncidentStore(self.engine)
        self.versions = ModelVersions(self.engine)
        self.responder = Responder(
            self.engine,
            actor="gateway",
            keys=self.keys,
            controls=self.controls,
            incidents=self.incidents,
        )
        self.reference = None if reference is None else np.asarray(reference, dtype=np.float32)
        if self.reference is not None and tuple(self.reference.shape[1:]) != tuple(shape):
            raise ConfigError(
                f"the reference inputs have shape {list(self.reference.shape[1:])}, the model "
                f"takes {list(shape)}"
            )
        # the model answers in evaluation mode from here on: detectors calibrate on it
        self._modes = contextlib.ExitStack()
        self._modes.enter_context(self.model.inference_mode())
        try:
            self.detection = Detection(
                self.policy.detectors,
                reference=self.reference,
                bounds=self.input_spec.bounds,
                target=target,
            )
        except BaseException:
            self._modes.close()
            raise
        ref_labels = None if self.reference is None else self._answer(self.reference)[1]
        self.monitor = Monitor(
            self.policy.monitoring,
            self.reference,
            ref_labels,
            target.num_classes,
            accuracy=self._feedback_accuracy,
        )
        self.loader = loader
        self.version = version
        self._swap_lock = threading.Lock()
        self._refused_version: str | None = None

    @property
    def kill_switch(self) -> bool:
        """While on, every predict request is answered 503 (and audited) without the model.

        Kept in the database, so ``bastion incident act ID kill-switch`` (or another replica)
        switches a running gateway off within ``auth.key_cache_seconds``.
        """
        return KILL_SWITCH in self.controls.snapshot()

    @kill_switch.setter
    def kill_switch(self, on: bool) -> None:
        if on:
            self.controls.set(KILL_SWITCH, "on", reason="set by the gateway's owner")
        else:
            self.controls.clear(KILL_SWITCH)
        self.metrics.kill_switch.set(1 if on else 0)
        log_event("kill-switch", logging.WARNING, on=bool(on))

    def close(self) -> None:
        """Flush the audit log, give the model its mode back and release the database."""
        self.audit.close()
        self._modes.close()
        self.engine.dispose()

    # ----------------------------------------------------------------- access
    def authorize(self, authorization: str | None, scope: Scope) -> ApiKey:
        """The key an ``Authorization: Bearer`` header carries, if it has ``scope``.

        :class:`Denied` with 401 (no key, or not a valid one: malformed, unknown, revoked) or
        403 (a valid key without the scope). The message never says which ids exist.
        """
        token = _bearer(authorization)
        if token is None:
            raise Denied(401, "an API key is required: 'Authorization: Bearer <key>'", "no-key")
        try:
            key = self.keys.verify(token)
        except Exception as exc:  # the database is away: no key can be checked, fail closed
            log_event("keys-unavailable", logging.ERROR, error=type(exc).__name__)
            raise Denied(
                503,
                "the gateway cannot check keys right now; retry later",
                "keys-unavailable",
                retry_after=1,
            ) from None
        if key is None:
            raise Denied(401, "the API key is not valid", "bad-key")
        if not key.allows(scope):
            raise Denied(403, f"this key does not have the {scope.value!r} scope", "no-scope")
        return key

    # ----------------------------------------------------------------- predict
    def predict(
        self,
        authorization: str | None,
        body: bytes | None,
        *,
        request_id: str | None = None,
        client: str | None = None,
    ) -> Answer:
        """Answer one predict request; ``body`` None means it was larger than the limit.

        Never raises for anything a caller can send: every outcome is an :class:`Answer`,
        and each is in the audit log before it is returned (or the answer is a 503).
        """
        start = time.perf_counter()
        rid = request_id or new_request_id()
        record = AuditRecord(rid, "predict", status=0, decision="", client=client)
        answer: Answer
        try:
            key = self.authorize(authorization, Scope.PREDICT)
            record.key_id = key.key_id
            answer = self._predict(key, body, record)
        except Denied as denied:
            headers = {}
            if denied.status == 401:
                headers["WWW-Authenticate"] = "Bearer"
            if denied.retry_after is not None:
                headers["Retry-After"] = str(denied.retry_after)
            answer = Answer(denied.status, {"detail": str(denied)}, headers, denied.decision)
            record.detail = str(denied)
        except Exception as exc:  # the model itself failed: a 500, logged, never a traceback out
            log_event("model-error", logging.ERROR, request_id=rid, error=type(exc).__name__)
            answer = Answer(500, {"detail": "the model failed to answer"}, decision="error")
            record.detail = f"{type(exc).__name__}: {exc}"
        answer = self._recorded(record, answer, start)
        elapsed = time.perf_counter() - start
        self.metrics.requests.labels("predict", str(answer.status), answer.decision).inc()
        self.metrics.latency.observe(elapsed)
        if answer.status == 200:
            self.metrics.inputs.inc(record.n_inputs)
        log_event(
            "predict",
            request_id=rid,
            key_id=record.key_id,
            status=answer.status,
            decision=answer.decision,
            n_inputs=record.n_inputs,
            latency_ms=round(elapsed * 1000, 3),
            client=client,
        )
        answer.headers["X-Request-ID"] = rid
        return answer

    def _switches(self) -> dict[str, Control]:
        try:
            return self.controls.snapshot()
        except Exception as exc:  # the database is away: the switches are unknown, fail closed
            log_event("controls-unavailable", logging.ERROR, error=type(exc).__name__)
            raise Denied(
                503,
                "the gateway cannot read its controls right now; retry later",
                "controls-unavailable",
                retry_after=1,
            ) from None

    def _predict(self, key: ApiKey, body: bytes | None, record: AuditRecord) -> Answer:
        switches = self._switches()
        self.metrics.kill_switch.set(1 if KILL_SWITCH in switches else 0)
        if KILL_SWITCH in switches:
            raise Denied(503, "this model is switched off", "kill-switch", retry_after=60)
        blocked = switches.get(block_name(key.key_id))
        if blocked is not None:
            about = f" (incident {blocked.incident_id})" if blocked.incident_id else ""
            raise Denied(403, f"this key is blocked pending review{about}", "blocked")
        self._follow_version(switches.get(MODEL_VERSION))
        refused = self.limiter.check_rate(key.key_id)
        if refused is not None:
            raise Denied(
                429,
                f"rate limit of {refused.limit} reached for this key",
                "rate-limited",
                retry_after=refused.retry_after,
            )
        if quarantine_name(key.key_id) in switches:
            refused = self.limiter.check_trickle(key.key_id, self.policy.response.quarantine_rate)
            if refused is not None:
                raise Denied(
                    429,
                    f"this key is quarantined: {refused.limit} at most",
                    "quarantined",
                    retry_after=refused.retry_after,
                )
        if body is None:
            limit = self.input_spec.max_body_bytes
            raise Denied(413, f"the request body is over the limit of {limit} bytes", "invalid")
        try:
            x = parse_inputs(body, self.input_spec)
        except InvalidRequest as exc:
            raise Denied(exc.status, str(exc), "invalid") from None
        record.n_inputs = int(x.shape[0])
        record.input_digest = input_digest(x)
        if self.detection.input_detectors:
            alerts, verdicts, refuse = self.detection.screen(key.key_id, x)
            record.verdicts.update(verdicts)
            self._respond(alerts, record)
            if refuse:
                raise Denied(403, "the inputs were refused by an input detector", "blocked")
        refused = self.limiter.charge(key.key_id, int(x.shape[0]))
        if refused is not None:
            left = self.limiter.remaining(key.key_id)
            raise Denied(
                429,
                f"{len(x)} more inputs would pass this key's query budget of "
                f"{refused.limit} ({left} left in this window)",
                "over-budget",
                retry_after=refused.retry_after,
            )
        outputs, labels = self._answer(x)
        record.labels = labels.tolist()
        self.monitor.observe(x, labels)
        if self.detection.key_detectors:
            alerts, verdicts = self.detection.observe(key.key_id, x, labels)
            record.verdicts.update(verdicts)
            self._respond(alerts, record)
        return Answer(200, {"outputs": outputs}, decision="allowed", key=key)

    # ----------------------------------------------------------------- feedback
    def feedback(
        self,
        authorization: str | None,
        body: bytes | None,
        *,
        request_id: str | None = None,
        client: str | None = None,
    ) -> Answer:
        """Delayed labels for answered requests: ``{"feedback": [{"request_id": ...,
        "labels": [...]}, ...]}``, one label per input of that request, ``feedback`` scope.

        Each item is ``accepted``, ``unknown`` (no answered request has that id),
        ``duplicate`` (it has labels already) or ``mismatch`` (not one label per input).
        The request is audited like a predict request.
        """
        start = time.perf_counter()
        rid = request_id or new_request_id()
        record = AuditRecord(rid, "feedback", status=0, decision="", client=client)
        try:
            key = self.authorize(authorization, Scope.FEEDBACK)
            record.key_id = key.key_id
            items = _feedback_items(body)
            record.n_inputs = len(items)
            results = [self._label(key, rid_, labels) for rid_, labels in items]
            accepted = sum(r == "accepted" for r in results)
            body_out = {
                "accepted": accepted,
                "results": [
                    {"request_id": r_id, "status": r}
                    for (r_id, _), r in zip(items, results, strict=True)
                ],
            }
            answer = Answer(200, body_out, decision="allowed", key=key)
        except Denied as denied:
            headers = {"WWW-Authenticate": "Bearer"} if denied.status == 401 else {}
            if denied.retry_after is not None:
                headers["Retry-After"] = str(denied.retry_after)
            answer = Answer(denied.status, {"detail": str(denied)}, headers, denied.decision)
            record.detail = str(denied)
        answer = self._recorded(record, answer, start)
        self.metrics.requests.labels("feedback", str(answer.status), answer.decision).inc()
        answer.headers["X-Request-ID"] = rid
        return answer

    def _recorded(self, record: AuditRecord, answer: Answer, start: float) -> Answer:
        """``answer`` once ``record`` (with its outcome) is in the audit log; a 503 in its
        place when the log cannot take it: nothing is acknowledged unrecorded."""
        record.status, record.decision = answer.status, answer.decision
        record.latency_ms = (time.perf_counter() - start) * 1000
        try:
            self.audit.append(record)
        except AuditUnavailable:
            return Answer(
                503,
                {"detail": "the gateway cannot record requests right now; retry later"},
                {"Retry-After": "1"},
                "audit-unavailable",
                answer.key,
            )
        return answer

    def _label(self, key: ApiKey, request_id: str, labels: list[int]) -> str:
        import sqlalchemy as sa

        from bastion.serve.store import AUDIT, FEEDBACK

        with self.engine.begin() as conn:
            row = conn.execute(
                sa.select(AUDIT.c.labels).where(
                    AUDIT.c.request_id == request_id,
                    AUDIT.c.endpoint == "predict",
                    AUDIT.c.status == 200,
                )
            ).first()
            if row is None or row.labels is None:
                return "unknown"
            predicted = json.loads(row.labels)
            if len(predicted) != len(labels):
                return "mismatch"
            seen = conn.execute(
                sa.select(FEEDBACK.c.id).where(FEEDBACK.c.request_id == request_id)
            ).first()
            if seen is not None:
                return "duplicate"
            correct = sum(int(a == b) for a, b in zip(predicted, labels, strict=True))
            conn.execute(
                FEEDBACK.insert().values(
                    request_id=request_id,
                    ts=time.time(),
                    key_id=key.key_id,
                    n=len(labels),
                    correct=correct,
                )
            )
        return "accepted"

    def _feedback_accuracy(self) -> tuple[int, float | None]:
        """(labels, accuracy) over the latest ``monitoring.window`` labelled requests."""
        import sqlalchemy as sa

        from bastion.serve.store import FEEDBACK

        latest = (
            sa.select(FEEDBACK.c.n, FEEDBACK.c.correct)
            .order_by(FEEDBACK.c.id.desc())
            .limit(self.policy.monitoring.window)
            .subquery()
        )
        with self.engine.connect() as conn:
            n, correct = conn.execute(
                sa.select(sa.func.sum(latest.c.n), sa.func.sum(latest.c.correct))
            ).one()
        if not n:
            return 0, None
        return int(n), float(correct) / float(n)

    # ----------------------------------------------------------------- monitoring
    def drift(self, *, fresh: bool = False) -> DriftReport:
        """Input drift, prediction shift and accuracy (see :mod:`bastion.serve.monitoring`)."""
        return self.monitor.report(fresh=fresh)

    def refresh_metrics(self) -> None:
        """Bring the monitoring gauges up to date (before ``/metrics`` is rendered)."""
        m = self.metrics
        try:
            report = self.drift()
            m.window.set(report.window)
            m.labelled.set(report.labelled)
            m.accuracy.set(float("nan") if report.accuracy is None else report.accuracy)
            nan = float("nan")
            m.drifted_features.set(
                nan if report.drifted_features is None else report.drifted_features
            )
            m.mmd.set(nan if report.mmd is None else report.mmd)
            m.mmd_pvalue.set(nan if report.mmd_pvalue is None else report.mmd_pvalue)
            m.prediction_pvalue.set(
                nan if report.prediction_pvalue is None else report.prediction_pvalue
            )
            open_ = [i for i in self.incidents.list() if i.status != "resolved"]
            m.incidents_open.set(len(open_))
        except Exception as exc:  # the metrics still render; the gauges keep their last value
            log_event("monitoring-unavailable", logging.ERROR, error=type(exc).__name__)

    def _respond(self, alerts: list[Alert], record: AuditRecord) -> None:
        """Carry out each new alert's action: log it, open an incident, quarantine or block."""
        for alert in alerts:
            self.metrics.alerts.labels(alert.detector, alert.check, alert.action).inc()
            log_event(
                "alert",
                logging.WARNING,
                request_id=record.request_id,
                detector=alert.detector,
                check=alert.check,
                action=alert.action,
                key_id=alert.key_id,
                summary=alert.summary,
            )
            if alert.action == "log":
                continue
            try:
                incident = self.incidents.report(alert)
                if alert.key_id is not None and alert.action == "throttle":
                    self.responder.quarantine(incident.id, alert.key_id)
                elif (
                    alert.key_id is not None and alert.action == "block" and alert.check != "inputs"
                ):
                    self.responder.block(incident.id, alert.key_id)
            except Exception as exc:  # the alert stays in the audit row and the log
                log_event("incident-unrecorded", logging.ERROR, error=type(exc).__name__)
                continue
            record.verdicts.setdefault("incidents", []).append(incident.id)

    def _follow_version(self, chosen: Control | None) -> None:
        """Swap in the model version a rollback chose, if it is not the one served."""
        if (
            chosen is None
            or chosen.value == str(self.version)
            or chosen.value == self._refused_version
        ):
            return
        with self._swap_lock:
            if chosen.value == str(self.version):
                return
            try:
                if self.loader is None:
                    raise ConfigError("this gateway was started without a model loader")
                v = self.versions.verify(int(chosen.value))
                model = self._wrap(self.loader(v.path))
                self._modes.enter_context(model.inference_mode())
            except Exception as exc:  # keep serving the current model; say why loudly
                self._refused_version = chosen.value
                log_event(
                    "rollback-refused",
                    logging.ERROR,
                    version=chosen.value,
                    error=str(exc) if isinstance(exc, BastionError) else type(exc).__name__,
                )
                return
            self.model = model
            self.version = v.version
            log_event("model-version", logging.WARNING, version=v.version, sha256=v.sha256)

    def answer(self, x: np.ndarray) -> list[Any]:
        """The hardened model's answers for a checked batch, as JSON-ready lists."""
        return self._answer(x)[0]

    def _answer(self, x: np.ndarray) -> tuple[list[Any], np.ndarray]:
        """The answers, and the labels they predict (for detectors, drift and feedback)."""
        with torch.no_grad():
            out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
        arr = out.detach().cpu().numpy()
        if self.output_kind is OutputKind.LABELS:
            labels = arr.reshape(-1).astype(np.int64)
            return [int(v) for v in labels], labels
        labels = arr.reshape(len(arr), -1).argmax(axis=1)
        values = arr.astype(np.float64)
        if self._decimals is not None:
            # the rounding happened in float32; say it in the digits it means (0.13, not
            # 0.12999999523)
            values = np.round(values, self._decimals)
        result: list[Any] = values.tolist()
        return result, labels

    # ----------------------------------------------------------------- health
    def ready(self) -> Mapping[str, bool]:
        """Each readiness check: the database, the limits storage, the kill switch."""
        database = self.audit.ping()
        try:
            serving = not self.kill_switch
        except Exception:
            serving = False
        return {"database": database, "limits": self.limiter.ping(), "serving": serving}

    def describe(self) -> dict[str, Any]:
        """What the gateway serves, for the admin surface and ``/readyz``."""
        lo, hi = self.input_spec.bounds
        return {
            "target": self.target.name,
            "output_kind": self.output_kind.value,
            "num_classes": self.target.num_classes,
            "input_shape": list(self.input_spec.shape),
            "bounds": [lo, hi] if math.isfinite(lo) else None,
            "output": list(self.policy.output),
            "max_batch": self.input_spec.max_batch,
        }
