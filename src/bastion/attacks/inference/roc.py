"""How well scores separate two groups: the ROC curve, its area, and the true-positive rate at
a low false-positive rate (what matters for membership: confident claims about a few people,
Carlini et al. 2022, arXiv:2112.03570)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["auc", "auc_interval", "roc", "tpr_at_fpr"]


def roc(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false-positive rates, true-positive rates) over every threshold, from (0, 0) to (1, 1);
    a higher score means "positive". Tied scores move together."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    order = np.argsort(-scores, kind="mergesort")
    s, p = scores[order], positive[order]
    tp = np.cumsum(p)
    fp = np.cumsum(~p)
    # keep only the last point of each run of tied scores
    last = np.r_[np.diff(s) != 0, True]
    n_pos, n_neg = max(int(p.sum()), 1), max(int((~p).sum()), 1)
    fpr = np.r_[0.0, fp[last] / n_neg]
    tpr = np.r_[0.0, tp[last] / n_pos]
    return fpr, tpr


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """The area under the ROC curve: the chance a random positive outscores a random
    negative (ties count half)."""
    fpr, tpr = roc(scores, positive)
    # the trapezoid rule, written out (numpy renamed trapz to trapezoid in 2.0)
    return float(((fpr[1:] - fpr[:-1]) * (tpr[1:] + tpr[:-1]) / 2).sum())


def auc_interval(value: float, n_pos: int, n_neg: int, z: float = 1.96) -> tuple[float, float]:
    """A 95% interval for an AUC (Hanley and McNeil, 1982)."""
    if n_pos < 1 or n_neg < 1:
        return (0.0, 1.0)
    a = min(max(value, 1e-9), 1 - 1e-9)
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    var = (a * (1 - a) + (n_pos - 1) * (q1 - a * a) + (n_neg - 1) * (q2 - a * a)) / (n_pos * n_neg)
    half = z * math.sqrt(max(var, 0.0))
    return (max(0.0, value - half), min(1.0, value + half))


def tpr_at_fpr(scores: np.ndarray, positive: np.ndarray, fpr: float) -> tuple[int, int]:
    """``(true positives, positives)`` at the best threshold whose false-positive rate is at
    most ``fpr``: the threshold lies above all but ``floor(fpr * negatives)`` negatives."""
    scores = np.asarray(scores, dtype=np.float64)
    positive = np.asarray(positive, dtype=bool)
    neg = np.sort(scores[~positive])[::-1]
    allowed = math.floor(fpr * len(neg))
    threshold = neg[allowed] if allowed < len(neg) else -np.inf
    hits = int((scores[positive] > threshold).sum())
    return hits, int(positive.sum())
