"""k-NN label consistency: a row whose neighbours mostly carry another label is suspect."""

from __future__ import annotations

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.data.base import DataDefence

__all__ = ["KnnConsistency"]


@register_defence(
    "knn-consistency",
    family="poisoning",
    defence_kind="sanitizer",
    access=Access.LABELS,
    techniques=("AML.T0020",),
    mitigations=("AML.M0007",),
    data_kinds=("tabular", "image"),
)
class KnnConsistency(DataDefence):
    """Score each sample by the share of its ``k`` nearest neighbours with another label.

    The k-NN sanitization baseline of Paudice, Muñoz-González, Lupu, "Label Sanitization
    against Label Flipping Poisoning Attacks", 2018, arXiv:1803.00992. Features are
    standardized first, so no column dominates the distance.

    Threat: flipped labels and label-changing poison in tables; needs no model.

    Args:
        k: neighbours per sample (10).
        threshold: flag samples whose disagreeing share is at least this (0.5).

    Example::

        defence = KnnConsistency(k=10).fit(poisoned.x, poisoned.y)
    """

    def __init__(self, *, k: int = 10, threshold: float = 0.5) -> None:
        self.k = k
        self.threshold = threshold

    def _check_params(self) -> None:
        if self.k < 1:
            raise ConfigError(f"k must be at least 1, got {self.k}")
        if not 0 < self.threshold <= 1:
            raise ConfigError(f"threshold must be in (0, 1], got {self.threshold}")

    def _score(
        self, x: np.ndarray, y: np.ndarray, model: Target | None
    ) -> tuple[np.ndarray, np.ndarray]:
        from sklearn.neighbors import NearestNeighbors
        from sklearn.preprocessing import StandardScaler

        feats = StandardScaler().fit_transform(x.reshape(len(x), -1))
        k = min(self.k, len(y) - 1)
        if k < 1:
            raise ConfigError("k-NN consistency needs at least 2 samples")
        _, idx = NearestNeighbors(n_neighbors=k + 1).fit(feats).kneighbors(feats)
        # the first neighbour of a sample is itself (or an exact duplicate)
        disagree = (y[idx[:, 1:]] != y[:, None]).mean(axis=1)
        return disagree, disagree >= self.threshold
