"""Monitoring what the model is asked and what it answers, against a reference sample.

- **Input drift**: a two-sample Kolmogorov-Smirnov test per feature (Bonferroni-corrected over
  the features) and one multivariate test, the maximum mean discrepancy with an RBF kernel
  (bandwidth by the median heuristic) and a permutation p-value (Gretton et al., "A Kernel
  Two-Sample Test", JMLR 2012), between the latest ``window`` answered inputs and the
  reference inputs.
- **Prediction shift**: a chi-square test of the predicted classes of the window against those
  of the reference.
- **Accuracy**: once delayed labels arrive through ``/feedback`` (by request id), the share of
  labelled answers the model got right, over the latest ``window`` labels (kept in the
  database, so it survives restarts and counts every replica's feedback).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["DriftReport", "Monitor"]

_MMD_SAMPLE = 200  # points per side in the MMD test
_PERMUTATIONS = 200


@dataclass(frozen=True)
class DriftReport:
    """The latest drift and accuracy figures (``None`` where there is too little data)."""

    window: int
    reference: int
    min_samples: int
    alpha: float
    ks_statistics: list[float] = field(default_factory=list)
    ks_pvalues: list[float] = field(default_factory=list)
    drifted_features: int | None = None
    mmd: float | None = None
    mmd_pvalue: float | None = None
    reference_classes: list[float] = field(default_factory=list)
    window_classes: list[float] = field(default_factory=list)
    prediction_pvalue: float | None = None
    labelled: int = 0
    accuracy: float | None = None
    computed_at: float = field(default_factory=time.time)

    @property
    def input_drift(self) -> bool:
        return bool(
            (self.drifted_features or 0) > 0
            or (self.mmd_pvalue is not None and self.mmd_pvalue < self.alpha)
        )

    @property
    def prediction_shift(self) -> bool:
        return self.prediction_pvalue is not None and self.prediction_pvalue < self.alpha

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_drift"] = self.input_drift
        out["prediction_shift"] = self.prediction_shift
        return out


class Monitor:
    """The window of answered inputs and predictions, compared with the reference.

    Args:
        policy: the policy's ``monitoring`` section.
        reference: reference inputs, (N, *input_shape), or None (no drift tests then).
        reference_labels: the model's predicted classes for the reference inputs.
        num_classes: classes of the model (None: taken from the labels seen).
        accuracy: a callable giving (labels, correct) over the latest ``window`` feedback.
    """

    def __init__(
        self,
        policy: Any,
        reference: np.ndarray | None,
        reference_labels: np.ndarray | None,
        num_classes: int | None,
        accuracy: Any = None,
        seed: int = 0,
    ) -> None:
        self.policy = policy
        self.reference = (
            None if reference is None else reference.reshape(len(reference), -1).astype(np.float64)
        )
        self.reference_labels = reference_labels
        self.num_classes = num_classes
        self._accuracy = accuracy
        self.seed = seed
        self._inputs: deque[np.ndarray] = deque(maxlen=policy.window)
        self._labels: deque[int] = deque(maxlen=policy.window)
        self._lock = threading.Lock()
        self._cached: DriftReport | None = None

    def observe(self, x: np.ndarray, labels: np.ndarray) -> None:
        flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        with self._lock:
            self._inputs.extend(flat)
            self._labels.extend(int(v) for v in labels)

    def report(self, *, fresh: bool = False) -> DriftReport:
        """The drift report, recomputed at most every ``cache_seconds`` unless ``fresh``."""
        cached = self._cached
        if (
            not fresh
            and cached is not None
            and time.time() - cached.computed_at < self.policy.cache_seconds
        ):
            return cached
        report = self._compute()
        self._cached = report
        return report

    def _compute(self) -> DriftReport:
        from scipy.stats import chisquare, ks_2samp

        with self._lock:
            window = np.stack(self._inputs).astype(np.float64) if self._inputs else None
            labels = np.fromiter(self._labels, dtype=np.int64)
        n = 0 if window is None else len(window)
        labelled, accuracy = self._accuracy() if self._accuracy is not None else (0, None)
        base: dict[str, Any] = {
            "window": n,
            "reference": 0 if self.reference is None else len(self.reference),
            "min_samples": self.policy.min_samples,
            "alpha": self.policy.alpha,
            "labelled": labelled,
            "accuracy": accuracy,
        }
        if self.reference is None or window is None or n < self.policy.min_samples:
            return DriftReport(**base)
        ref = self.reference
        stats, pvalues = [], []
        for j in range(ref.shape[1]):
            a, b = ref[:, j], window[:, j]
            if np.ptp(a) == 0 and np.ptp(b) == 0 and a[0] == b[0]:
                stats.append(0.0)  # the same constant on both sides: nothing to test
                pvalues.append(1.0)
                continue
            res = ks_2samp(a, b)
            stats.append(float(res.statistic))
            pvalues.append(float(res.pvalue))
        drifted = int(sum(p < self.policy.alpha / len(pvalues) for p in pvalues))
        mmd, mmd_p = _mmd_test(ref, window, self.seed)

        k = self.num_classes or int(max(labels.max(initial=0), self._ref_labels_max()) + 1)
        ref_labels = (
            self.reference_labels if self.reference_labels is not None else np.zeros(0, int)
        )
        ref_counts = np.bincount(ref_labels, minlength=k)[:k]
        win_counts = np.bincount(labels, minlength=k)[:k]
        ref_share = (ref_counts + 0.5) / (ref_counts + 0.5).sum()
        # expected counts from the reference's shares, smoothed so no class expects zero
        chi = chisquare(win_counts + 0.5, ref_share * (win_counts + 0.5).sum())
        return DriftReport(
            **base,
            ks_statistics=[round(s, 4) for s in stats],
            ks_pvalues=pvalues,
            drifted_features=drifted,
            mmd=round(mmd, 6),
            mmd_pvalue=mmd_p,
            reference_classes=[round(float(v), 4) for v in ref_counts / max(1, ref_counts.sum())],
            window_classes=[round(float(v), 4) for v in win_counts / max(1, win_counts.sum())],
            prediction_pvalue=float(chi.pvalue),
        )

    def _ref_labels_max(self) -> int:
        if self.reference_labels is None or not len(self.reference_labels):
            return 0
        return int(self.reference_labels.max())


def _mmd_test(a: np.ndarray, b: np.ndarray, seed: int) -> tuple[float, float]:
    """Squared MMD (biased estimate) between ``a`` and ``b``, and its permutation p-value."""
    rng = np.random.default_rng(seed)
    a = a[rng.choice(len(a), min(len(a), _MMD_SAMPLE), replace=False)]
    b = b[rng.choice(len(b), min(len(b), _MMD_SAMPLE), replace=False)]
    pooled = np.concatenate([a, b])
    sq = (pooled * pooled).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    positive = d2[d2 > 0]
    bandwidth = float(np.median(positive)) if len(positive) else 1.0
    kernel = np.exp(-d2 / bandwidth)
    m = len(a)

    def statistic(idx: np.ndarray) -> float:
        x, y = idx[:m], idx[m:]
        return float(
            kernel[np.ix_(x, x)].mean()
            + kernel[np.ix_(y, y)].mean()
            - 2 * kernel[np.ix_(x, y)].mean()
        )

    order = np.arange(len(pooled))
    observed = statistic(order)
    exceed = sum(statistic(rng.permutation(order)) >= observed for _ in range(_PERMUTATIONS))
    return observed, (exceed + 1) / (_PERMUTATIONS + 1)
