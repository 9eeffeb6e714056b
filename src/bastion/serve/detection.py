"""Detectors the gateway runs on its traffic, and what they report.

Two kinds, named in the policy's ``detectors`` with an action each (log, flag, throttle, block):

- **Key detectors** watch one API key's stream of answered queries: :class:`Prada` (model
  extraction, after Juuti et al.) and :class:`QueryStats` (volume, near-duplicates, queries
  outside the region the reference data covers). Their state is per key and per gateway
  process; what they trigger (an incident, a quarantine, a block) is in the database and holds
  for every replica.
- **Input detectors** are the defences layer's detectors (``DEFENCES`` entries of kind
  ``detector``), calibrated on the reference sample to the policy's false-positive rate; they
  screen each batch before the model answers it.

Each detector reports an :class:`Alert` once per key and check (a second alert for the same
state would only repeat the first); every request's verdicts go to its audit row either way.
Signal names and technique ids are the catalog's (``bastion threats incident --signals``).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from bastion.core.errors import ConfigError

__all__ = [
    "GATEWAY_DETECTORS",
    "Alert",
    "Detection",
    "KeyDetector",
    "Prada",
    "QueryStats",
    "check_detector_spec",
    "load_calibration",
]

_MAX_KEYS = 10_000  # per-key state kept, at most (least recently seen keys are dropped)


@dataclass(frozen=True)
class Alert:
    """A detector fired: on which key, which check, how sure, and what it points at."""

    detector: str
    check: str
    action: str
    key_id: str | None
    severity: str
    summary: str
    techniques: tuple[str, ...]
    signals: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)
    ts: float = field(default_factory=time.time)

    @property
    def identity(self) -> tuple[str, str, str | None]:
        return (self.detector, self.check, self.key_id)


@dataclass(frozen=True)
class Finding:
    """What a key detector concluded from one batch: a check that crossed its threshold."""

    check: str
    summary: str
    techniques: tuple[str, ...]
    signals: tuple[str, ...]
    evidence: dict[str, Any]


class _PerKey:
    """Per-key state with a bound on the number of keys (least recently used dropped)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._states: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_id: str) -> Any:
        with self._lock:
            state = self._states.get(key_id)
            if state is None:
                state = self._states[key_id] = self._make()
                if len(self._states) > _MAX_KEYS:
                    self._states.popitem(last=False)
            else:
                self._states.move_to_end(key_id)
            return state

    def items(self) -> list[tuple[str, Any]]:
        with self._lock:
            return list(self._states.items())


class KeyDetector:
    """Base of the detectors that watch each key's stream of answered queries.

    Subclasses take their settings as keyword arguments, may :meth:`fit` on the reference
    sample (flattened inputs), and :meth:`observe` batches (flattened inputs and the model's
    predicted labels), returning the checks that crossed their thresholds.
    """

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False

    def fit(self, reference: np.ndarray, bounds: tuple[float, float]) -> KeyDetector:
        return self

    def observe(self, key_id: str, x: np.ndarray, labels: np.ndarray) -> list[Finding]:
        raise NotImplementedError

    def state(self) -> dict[str, dict[str, Any]]:
        """Each key's current statistics (for the admin page)."""
        return {}


class _PradaState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.growing: dict[int, list[np.ndarray]] = {}
        self.growing_d: dict[int, list[float]] = {}
        self.thresholds: dict[int, float] = {}
        self.distances: deque[float] = deque()
        self.queries = 0
        self.since_test = 0
        self.w: float | None = None


class Prada(KeyDetector):
    """Model extraction by a key: the distances between its queries stop looking natural.

    Paper: Juuti, Szyller, Marchal, Asokan, "PRADA: Protecting against DNN Model Stealing
    Attacks", 2019, arXiv:1805.02628. For each key and predicted class the detector keeps a
    growing set of that key's queries; each new query's minimum L2 distance to the set of its
    class joins the key's distance sample (and the query joins the set when that distance is
    above the set's threshold, mean minus standard deviation of the set's own distances).
    Natural queries give roughly normal distances; synthetic ones (random, interpolated or
    crafted to probe the boundary) do not. Once ``min_queries`` distances are in, the key is
    flagged while the Shapiro-Wilk statistic W of its latest ``window`` distances is below
    ``threshold``.

    Threat: a black-box adversary querying one key to train a copy of the model.

    Args:
        min_queries: distances needed before the first test (100).
        threshold: W below this flags the key (0.9; the paper tunes it per model).
        window: the latest distances tested (2000).
        max_growing: queries kept per key and class (2000).
        test_every: queries between two tests of a key (10).
    """

    name = "prada"

    def __init__(
        self,
        *,
        min_queries: int = 100,
        threshold: float = 0.9,
        window: int = 2000,
        max_growing: int = 2000,
        test_every: int = 10,
    ) -> None:
        self.min_queries = min_queries
        self.threshold = threshold
        self.window = window
        self.max_growing = max_growing
        self.test_every = test_every
        self._check()
        self._keys = _PerKey(_PradaState)

    def _check(self) -> None:
        if self.min_queries < 3:
            raise ConfigError(f"prada min_queries must be at least 3, got {self.min_queries}")
        if not 0 < self.threshold < 1:
            raise ConfigError(f"prada threshold must be in (0, 1), got {self.threshold}")
        if self.window < self.min_queries:
            raise ConfigError("prada window must be at least min_queries")
        if self.max_growing < 1 or self.test_every < 1:
            raise ConfigError("prada max_growing and test_every must be at least 1")

    def observe(self, key_id: str, x: np.ndarray, labels: np.ndarray) -> list[Finding]:
        from scipy.stats import shapiro

        st: _PradaState = self._keys.get(key_id)
        with st.lock:
            for row, label in zip(x, labels.tolist(), strict=True):
                c = int(label)
                st.queries += 1
                members = st.growing.get(c)
                if not members:
                    st.growing[c] = [row]
                    st.growing_d[c] = []
                    st.thresholds[c] = 0.0
                    continue
                d_min = float(np.sqrt(((np.stack(members) - row) ** 2).sum(axis=1)).min())
                st.distances.append(d_min)
                if len(st.distances) > self.window:
                    st.distances.popleft()
                st.since_test += 1
                if d_min > st.thresholds[c] and len(members) < self.max_growing:
                    members.append(row)
                    dg = st.growing_d[c]
                    dg.append(d_min)
                    st.thresholds[c] = max(st.thresholds[c], float(np.mean(dg) - np.std(dg)))
            if len(st.distances) < self.min_queries or (
                st.w is not None and st.since_test < self.test_every
            ):
                return []
            st.since_test = 0
            sample = np.fromiter(st.distances, dtype=np.float64)
            # every distance the same (a key repeating one query) is nothing natural either
            w = 0.0 if np.ptp(sample) == 0 else float(shapiro(sample).statistic)
            st.w = w
            n = len(sample)
        if w >= self.threshold:
            return []
        return [
            Finding(
                "distances",
                f"the key's query distances are not normal (Shapiro-Wilk W {w:.3f} < "
                f"{self.threshold} over {n} queries): a sign of synthetic queries for model "
                "extraction",
                ("AML.T0024.002", "AML.T0040"),
                ("synthetic-query-distribution", "query-volume-spike"),
                {"shapiro_w": round(w, 4), "threshold": self.threshold, "distances": n},
            )
        ]

    def state(self) -> dict[str, dict[str, Any]]:
        return {
            key: {"queries": st.queries, "shapiro_w": None if st.w is None else round(st.w, 4)}
            for key, st in self._keys.items()
        }


class _StatsState:
    def __init__(self, window: int) -> None:
        self.lock = threading.Lock()
        self.recent: deque[np.ndarray] = deque(maxlen=window)
        self.duplicate: deque[bool] = deque(maxlen=window)
        self.outside: deque[bool] = deque(maxlen=window)
        self.times: deque[float] = deque()
        self.queries = 0


class QueryStats(KeyDetector):
    """Query-pattern statistics per key: volume, near-duplicates, queries off the reference.

    Three checks over each key's latest ``window`` queries, once it has sent ``min_queries``:

    - ``volume``: more than ``max_per_minute`` queries in the last 60 seconds (signal
      ``query-volume-spike``; AML.T0040). Off unless set.
    - ``near-duplicates``: more than ``max_duplicate_rate`` of the queries lie within
      ``duplicate_distance`` (a fraction of the input box's diagonal) of another recent query
      of the key, as in an iterative black-box search (``near-duplicate-queries``;
      AML.T0043.001).
    - ``outside-reference``: more than ``max_outside_rate`` of the queries lie outside the
      region the reference sample covers: farther from every reference input than the
      ``outside_quantile`` of the reference inputs' distances to their own nearest neighbours
      (``synthetic-query-distribution``; AML.T0024.002). Needs the reference sample.

    Args:
        window: the latest queries considered per key (200).
        min_queries: queries of a key before its first check (50).
        max_per_minute: the volume check's limit (None: off).
        duplicate_distance: near-duplicate radius, as a fraction of the diagonal (0.01).
        max_duplicate_rate: the near-duplicate check's limit (0.5).
        max_outside_rate: the outside-reference check's limit (0.5; 1: off).
        outside_quantile: where the reference's region ends (0.99).
    """

    name = "query-stats"
    needs_reference = True

    def __init__(
        self,
        *,
        window: int = 200,
        min_queries: int = 50,
        max_per_minute: int | None = None,
        duplicate_distance: float = 0.01,
        max_duplicate_rate: float = 0.5,
        max_outside_rate: float = 0.5,
        outside_quantile: float = 0.99,
    ) -> None:
        self.window = window
        self.min_queries = min_queries
        self.max_per_minute = max_per_minute
        self.duplicate_distance = duplicate_distance
        self.max_duplicate_rate = max_duplicate_rate
        self.max_outside_rate = max_outside_rate
        self.outside_quantile = outside_quantile
        self._check()
        self._keys = _PerKey(lambda: _StatsState(self.window))
        self.reference_: np.ndarray | None = None
        self.radius_: float = float("inf")
        self.duplicate_radius_: float = 0.0

    def _check(self) -> None:
        if not 1 <= self.min_queries <= self.window:
            raise ConfigError("query-stats needs 1 <= min_queries <= window")
        for name in ("max_duplicate_rate", "max_outside_rate", "outside_quantile"):
            if not 0 < getattr(self, name) <= 1:
                raise ConfigError(f"query-stats {name} must be in (0, 1]")
        if self.duplicate_distance < 0:
            raise ConfigError("query-stats duplicate_distance must be at least 0")
        if self.max_per_minute is not None and self.max_per_minute < 1:
            raise ConfigError("query-stats max_per_minute must be at least 1")

    def fit(self, reference: np.ndarray, bounds: tuple[float, float]) -> QueryStats:
        ref = np.asarray(reference, dtype=np.float32)
        if len(ref) < 2:
            raise ConfigError("query-stats needs at least 2 reference inputs")
        d = _pairwise(ref, ref)
        np.fill_diagonal(d, np.inf)
        self.reference_ = ref
        self.radius_ = float(np.quantile(d.min(axis=1), self.outside_quantile))
        lo, hi = bounds
        span = (hi - lo) if np.isfinite(hi - lo) else float(np.ptp(ref)) or 1.0
        self.duplicate_radius_ = self.duplicate_distance * span * float(np.sqrt(ref.shape[1]))
        return self

    def observe(self, key_id: str, x: np.ndarray, labels: np.ndarray) -> list[Finding]:
        st: _StatsState = self._keys.get(key_id)
        outside = (
            _pairwise(x, self.reference_).min(axis=1) > self.radius_
            if self.reference_ is not None
            else np.zeros(len(x), dtype=bool)
        )
        now = time.monotonic()
        with st.lock:
            for row, off in zip(x, outside.tolist(), strict=True):
                dup = False
                if st.recent:
                    dup = bool(
                        _pairwise(row[None], np.stack(st.recent)).min() <= self.duplicate_radius_
                    )
                st.recent.append(row)
                st.duplicate.append(dup)
                st.outside.append(bool(off))
                st.times.append(now)
                st.queries += 1
            while st.times and now - st.times[0] > 60:
                st.times.popleft()
            if self.max_per_minute is not None and len(st.times) > 10 * self.max_per_minute:
                for _ in range(len(st.times) - 10 * self.max_per_minute):
                    st.times.popleft()
            n = len(st.recent)
            per_minute = len(st.times)
            dup_rate = sum(st.duplicate) / n
            out_rate = sum(st.outside) / n
            queries = st.queries
        found: list[Finding] = []
        if self.max_per_minute is not None and per_minute > self.max_per_minute:
            found.append(
                Finding(
                    "volume",
                    f"{per_minute} queries in the last minute (limit {self.max_per_minute})",
                    ("AML.T0040",),
                    ("query-volume-spike",),
                    {"per_minute": per_minute, "limit": self.max_per_minute},
                )
            )
        if queries < self.min_queries:
            return found
        if dup_rate > self.max_duplicate_rate:
            found.append(
                Finding(
                    "near-duplicates",
                    f"{dup_rate:.0%} of the key's last {n} queries are near-duplicates of "
                    f"another (limit {self.max_duplicate_rate:.0%})",
                    ("AML.T0043.001",),
                    ("near-duplicate-queries",),
                    {"rate": round(dup_rate, 4), "limit": self.max_duplicate_rate, "window": n},
                )
            )
        if self.reference_ is not None and out_rate > self.max_outside_rate:
            found.append(
                Finding(
                    "outside-reference",
                    f"{out_rate:.0%} of the key's last {n} queries lie outside the region the "
                    f"reference data covers (limit {self.max_outside_rate:.0%})",
                    ("AML.T0024.002",),
                    ("synthetic-query-distribution",),
                    {"rate": round(out_rate, 4), "limit": self.max_outside_rate, "window": n},
                )
            )
        return found

    def state(self) -> dict[str, dict[str, Any]]:
        out = {}
        for key, st in self._keys.items():
            n = max(1, len(st.recent))
            out[key] = {
                "queries": st.queries,
                "per_minute": len(st.times),
                "near_duplicates": round(sum(st.duplicate) / n, 4),
                "outside_reference": round(sum(st.outside) / n, 4),
            }
        return out


def _pairwise(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` and of ``b``."""
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    out: np.ndarray = np.sqrt(np.maximum(sq, 0.0))
    return out


GATEWAY_DETECTORS: dict[str, type[KeyDetector]] = {"prada": Prada, "query-stats": QueryStats}


def _build(spec: str, extra: dict[str, Any] | None = None) -> Any:
    """A gateway detector or a defence detector from ``name:param=value,...`` (and ``extra``
    parameters, as the policy's ``params`` gives them)."""
    from pydantic import ValidationError

    from bastion.core.registry import DEFENCES, config_model
    from bastion.defences.base import Detector, parse_defence

    name, params = parse_defence(spec)
    both = sorted(set(params) & set(extra or {}))
    if both:
        raise ConfigError(f"{name}: {', '.join(both)} given both in the name and in params")
    params.update(extra or {})
    cls = GATEWAY_DETECTORS.get(name)
    if cls is not None:
        try:
            checked = config_model(cls).model_validate(params).model_dump()
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            raise ConfigError(f"{name}: {loc}: {err['msg']}") from None
        return cls(**checked)
    defence = DEFENCES.create(name, **params)
    check = getattr(defence, "_check_params", None)
    if callable(check):
        check()
    if not isinstance(defence, Detector):
        kind = defence.entry.defence_kind
        if kind == "detector":
            raise ConfigError(
                f"{name} inspects a model or a dataset, not requests: it cannot screen inputs "
                "at the gateway (run it with bastion scan or bastion harden)"
            )
        raise ConfigError(f"{spec!r} is a {kind}, not a detector")
    return defence


def check_detector_spec(spec: str, params: dict[str, Any] | None = None) -> None:
    """Raise ``ValueError`` unless ``spec`` (with ``params``) names a detector with valid
    settings."""
    try:
        _build(spec, params)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


def load_calibration(path: str | Path, shape: tuple[int, ...]) -> np.ndarray:
    """Clean inputs from a ``.npy`` file (or the ``x`` array of an ``.npz``), never unpickled.

    Shape (N, *shape); :class:`ConfigError` for a missing or unreadable file or a wrong shape.
    """
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"calibration file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
        if isinstance(loaded, np.lib.npyio.NpzFile):
            with loaded:
                if "x" not in loaded.files:
                    raise ConfigError(f"{p}: an .npz calibration file needs an array named 'x'")
                arr = np.asarray(loaded["x"])
        else:
            arr = np.asarray(loaded)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read calibration file {p}: {exc}") from None
    if arr.ndim < 1 or tuple(arr.shape[1:]) != tuple(shape) or len(arr) < 2:
        raise ConfigError(
            f"{p}: calibration inputs must have shape (N >= 2, {', '.join(map(str, shape))}), "
            f"got {list(arr.shape)}"
        )
    if not np.issubdtype(arr.dtype, np.number) or not np.isfinite(arr).all():
        raise ConfigError(f"{p}: calibration inputs must be finite numbers")
    return arr.astype(np.float32)


def _fit_inputs(det: Any, target: Any, clean: np.ndarray) -> np.ndarray:
    """Fit ``det`` on the served model if its ``fit`` asks for one; the inputs left to calibrate.

    The convention of the defences' detectors: ``fit(target)`` takes the model, and
    ``fit(target, x_pool)`` also clean inputs it works with (STRIP superimposes them). The pool
    is then half of the clean sample, and the threshold is calibrated on the other half, so a
    clean input is never scored against itself.
    """
    import inspect

    fit = getattr(det, "fit", None)
    if fit is None:
        return clean
    positional = [
        p
        for p in inspect.signature(fit).parameters.values()
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    name = det.registry_name
    if len(positional) not in (1, 2):
        raise ConfigError(
            f"{name}.fit takes {len(positional)} arguments; the gateway fits a detector with "
            "fit(target) or fit(target, x_pool)"
        )
    if target is None:
        raise ConfigError(f"detector {name} needs the served model")
    if len(positional) == 1:
        fit(target)
        return clean
    if len(clean) < 4:
        raise ConfigError(f"detector {name} needs at least 4 clean inputs (a pool and a sample)")
    order = np.random.default_rng(0).permutation(len(clean))
    half = len(clean) // 2
    fit(target, clean[order[:half]])
    return clean[order[half:]]


_SEVERITY = {"log": "low", "flag": "medium", "throttle": "high", "block": "high"}


class Detection:
    """The policy's detectors, fitted or calibrated on the reference sample.

    Args:
        policies: the policy's ``detectors``.
        reference: reference inputs, shape (N, *input_shape); needed by defence detectors
            (to calibrate, unless their ``calibration`` names a file) and by ``query-stats``
            (for its outside-reference check).
        bounds: the inputs' bounds.
        target: the served model before output hardening, for the defence detectors whose
            ``fit`` takes one (STRIP queries it for scores even when callers get labels).
    """

    def __init__(
        self,
        policies: Iterable[Any],
        *,
        reference: np.ndarray | None,
        bounds: tuple[float, float],
        target: Any = None,
    ) -> None:
        import torch

        from bastion.defences.base import Detector

        self.key_detectors: list[tuple[Any, KeyDetector]] = []
        self.input_detectors: list[tuple[Any, Detector]] = []
        self._fired: set[tuple[str, str, str | None]] = set()
        self._lock = threading.Lock()
        for pol in policies:
            det = _build(pol.detector, dict(pol.params))
            name = pol.detector.partition(":")[0].strip()
            if isinstance(det, KeyDetector):
                if reference is not None:
                    det.fit(reference.reshape(len(reference), -1).astype(np.float32), bounds)
                elif det.needs_reference:
                    raise ConfigError(
                        f"detector {name} needs a reference sample of inputs "
                        "(bastion serve --data, or Gateway(reference=...))"
                    )
                self.key_detectors.append((pol, det))
                continue
            if pol.calibration is not None:
                shape = tuple(reference.shape[1:]) if reference is not None else None
                if shape is None and target is not None and target.input_shape is not None:
                    shape = tuple(target.input_shape)
                if shape is None:
                    raise ConfigError(f"detector {name}: the model's input shape is unknown")
                clean = load_calibration(pol.calibration, shape)
            elif reference is not None:
                clean = np.asarray(reference, dtype=np.float32)
            else:
                raise ConfigError(
                    f"detector {name} is calibrated on clean inputs: give it a calibration "
                    "file, or a reference sample (bastion serve --data, Gateway(reference=...))"
                )
            calib = _fit_inputs(det, target, clean)
            with torch.no_grad():
                det.calibrate(torch.from_numpy(np.ascontiguousarray(calib)), pol.fpr)
            self.input_detectors.append((pol, det))

    def __bool__(self) -> bool:
        return bool(self.key_detectors or self.input_detectors)

    @staticmethod
    def _name(pol: Any) -> str:
        return str(pol.detector.partition(":")[0].strip())

    def screen(self, key_id: str, x: np.ndarray) -> tuple[list[Alert], dict[str, Any], bool]:
        """Run the input detectors on a checked batch, before the model.

        Returns the new alerts, the verdicts for the audit row, and whether the batch is to be
        refused (a detector with the ``block`` action flagged one of its inputs).
        """
        import torch

        alerts: list[Alert] = []
        verdicts: dict[str, Any] = {}
        refuse = False
        if not self.input_detectors:
            return alerts, verdicts, refuse
        batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        for pol, det in self.input_detectors:
            name = self._name(pol)
            with torch.no_grad():
                flags = det.detect(batch).reshape(-1).cpu().numpy().astype(bool)
            flagged = int(flags.sum())
            verdicts[name] = {"flagged": flagged}
            if not flagged:
                continue
            refuse = refuse or pol.action == "block"
            entry = det.entry
            alert = Alert(
                detector=name,
                check="inputs",
                action=pol.action,
                key_id=key_id,
                severity=_SEVERITY[pol.action],
                summary=f"{name} flagged {flagged} of {len(flags)} inputs of one request "
                f"(threshold calibrated to {pol.fpr:.1%} false positives)",
                techniques=tuple(entry.techniques) or ("AML.T0043",),
                signals=("detector-flagged-inputs",),
                evidence={"flagged": flagged, "batch": len(flags), "fpr": pol.fpr},
            )
            if self._first(alert):
                alerts.append(alert)
        return alerts, verdicts, refuse

    def observe(
        self, key_id: str, x: np.ndarray, labels: np.ndarray
    ) -> tuple[list[Alert], dict[str, Any]]:
        """Feed an answered batch to the key detectors; the new alerts and the verdicts."""
        alerts: list[Alert] = []
        verdicts: dict[str, Any] = {}
        flat = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        for pol, det in self.key_detectors:
            name = self._name(pol)
            found = det.observe(key_id, flat, labels)
            verdicts[name] = sorted(f.check for f in found)
            for f in found:
                alert = Alert(
                    detector=name,
                    check=f.check,
                    action=pol.action,
                    key_id=key_id,
                    severity=_SEVERITY[pol.action],
                    summary=f.summary,
                    techniques=f.techniques,
                    signals=f.signals,
                    evidence=f.evidence,
                )
                if self._first(alert):
                    alerts.append(alert)
        return alerts, verdicts

    def _first(self, alert: Alert) -> bool:
        with self._lock:
            if alert.identity in self._fired:
                return False
            self._fired.add(alert.identity)
            return True

    def forget(self, key_id: str) -> None:
        """Let the detectors alert on ``key_id`` again (after an incident about it closes)."""
        with self._lock:
            self._fired = {i for i in self._fired if i[2] != key_id}

    def state(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per detector, each key's statistics."""
        return {self._name(pol): det.state() for pol, det in self.key_detectors}
