"""Spectral signatures: poison leaves a trace along the top singular vector of a class."""

from __future__ import annotations

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.data.base import DataDefence, activations

__all__ = ["SpectralSignatures"]


@register_defence(
    "spectral-signatures",
    family="poisoning",
    defence_kind="sanitizer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0020", "AML.T0018.000"),
    mitigations=("AML.M0007",),
    data_kinds=("image", "tabular"),
)
class SpectralSignatures(DataDefence):
    """Score each sample by its projection on its class's top singular vector.

    Paper: Tran, Li, Madry, "Spectral Signatures in Backdoor Attacks", 2018,
    arXiv:1811.00636.

    In the penultimate activations of a model trained on the data, the poisoned samples of a
    class differ from the clean ones along one direction, which dominates the centred
    class's top singular vector. The score of a sample is its squared projection on that
    vector, divided by the class's median so classes compare; the top ``1.5 * expected`` of
    each class are flagged (Tran et al.'s rule), and, in a class whose spectrum is dominated
    by one direction, every sample scoring above ``threshold`` times the median.

    Threat: dirty-label backdoors; needs the model trained on the suspect data (white-box).

    Args:
        expected: an upper bound on the share of poison in a class (0.05).
        threshold: flag samples scoring above this many medians (10.0).

    Example::

        defence = SpectralSignatures().fit(poisoned.x, poisoned.y, model=model)
        x_clean, y_clean = defence.filter(poisoned.x, poisoned.y)
    """

    needs_model = True

    def __init__(self, *, expected: float = 0.05, threshold: float = 10.0) -> None:
        self.expected = expected
        self.threshold = threshold

    def _check_params(self) -> None:
        if not 0 < self.expected < 1:
            raise ConfigError(f"expected must be in (0, 1), got {self.expected}")
        if self.threshold <= 1:
            raise ConfigError(f"threshold must be above 1, got {self.threshold}")

    def _score(
        self, x: np.ndarray, y: np.ndarray, model: Target | None
    ) -> tuple[np.ndarray, np.ndarray]:
        assert model is not None  # checked by fit()
        feats = activations(model, x)
        scores = np.zeros(len(y))
        flagged = np.zeros(len(y), dtype=bool)
        for c in np.unique(y):
            idx = np.flatnonzero(y == c)
            if len(idx) < 3:
                continue
            centred = feats[idx] - feats[idx].mean(axis=0)
            _, _, vt = np.linalg.svd(centred, full_matrices=False)
            proj = (centred @ vt[0]) ** 2
            scores[idx] = proj / max(float(np.median(proj)), 1e-12)
            top = int(np.ceil(1.5 * self.expected * len(idx)))
            order = np.argsort(-scores[idx], kind="stable")
            flagged[idx[order[:top]]] = True
            flagged[idx[scores[idx] > self.threshold]] = True
        return scores, flagged
