"""Confident learning: samples whose label disagrees with out-of-sample predictions."""

from __future__ import annotations

import numpy as np

from bastion._extras import require
from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.data.base import DataDefence

__all__ = ["ConfidentLearning"]


@register_defence(
    "confident-learning",
    family="poisoning",
    defence_kind="sanitizer",
    access=Access.LABELS,
    techniques=("AML.T0020", "AML.T0018.000"),
    mitigations=("AML.M0007",),
    data_kinds=("image", "tabular"),
)
class ConfidentLearning(DataDefence):
    """Find label errors (and relabelled poison) by confident learning, with cleanlab.

    Paper: Northcutt, Jiang, Chuang, "Confident Learning: Estimating Uncertainty in Dataset
    Labels", 2021, arXiv:1911.00068; implemented by the ``cleanlab`` library.

    Out-of-sample class probabilities come from ``folds``-fold cross-validation of a
    logistic regression on the raw inputs (or on a model's activations when a model is
    given); cleanlab ranks each sample by the self-confidence of its given label (the score
    is one minus it) and flags the label issues it finds. It needs no model of the suspect
    data, and catches flipped labels and dirty-label backdoors whose inputs still look like
    their true class.

    Args:
        folds: cross-validation folds for the out-of-sample probabilities (5).
        seed: seed of the folds (0).

    Example::

        defence = ConfidentLearning().fit(poisoned.x, poisoned.y)
    """

    def __init__(self, *, folds: int = 5, seed: int = 0) -> None:
        self.folds = folds
        self.seed = seed

    def _check_params(self) -> None:
        if self.folds < 2:
            raise ConfigError(f"folds must be at least 2, got {self.folds}")

    def _score(
        self, x: np.ndarray, y: np.ndarray, model: Target | None
    ) -> tuple[np.ndarray, np.ndarray]:
        filt = require("cleanlab.filter")
        rank = require("cleanlab.rank")
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        if model is not None:
            from bastion.defences.data.base import activations

            feats = activations(model, x)
        else:
            feats = x.reshape(len(x), -1).astype(np.float64)
        counts = np.bincount(y)
        folds = min(self.folds, int(counts[counts > 0].min()))
        if folds < 2:
            raise ConfigError("confident learning needs at least 2 samples of every class")
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.1))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        probs = cross_val_predict(clf, feats, y, cv=cv, method="predict_proba")
        quality = rank.get_label_quality_scores(y, probs, method="self_confidence")
        issues = filt.find_label_issues(y, probs)
        return 1.0 - np.asarray(quality), np.asarray(issues, dtype=bool)
