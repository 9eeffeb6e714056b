"""STRIP: a triggered input keeps its label whatever is superimposed on it."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind
from bastion.defences.base import Detector

__all__ = ["STRIP"]


@register_defence(
    "strip",
    family="poisoning",
    defence_kind="detector",
    access=Access.SCORES,
    techniques=("AML.T0018.000", "AML.T0018"),
    mitigations=("AML.M0008",),
    data_kinds=("image", "tabular"),
)
class STRIP(Detector):
    """Flag inputs whose prediction barely changes when clean inputs are superimposed.

    Paper: Gao, Xu, Wang, Chen, Ranasinghe, Nepal, "STRIP: A Defence Against Trojan Attacks
    on Deep Neural Networks", 2019, arXiv:1902.06531.

    Each input is added to ``overlays`` clean inputs drawn from a held-out pool (the sum
    clipped to the bounds, as in the paper); a clean input's predictions then scatter over
    classes (high entropy) while a triggered one stays with the trigger's class (low entropy).
    The score is minus the mean entropy, so higher is more suspicious, and
    :meth:`calibrate` sets the threshold for a chosen false-rejection rate on clean inputs.

    Threat: a trojaned model at run time; needs scores (probabilities or logits) and a pool
    of clean inputs.

    Args:
        overlays: clean inputs superimposed on each input (20).
        seed: seed of the draws from the pool (0).

    Example::

        strip = STRIP().fit(model, x_pool).calibrate(x_clean, fpr=0.01)
        strip.detect(x_suspect)
    """

    def __init__(self, *, overlays: int = 20, seed: int = 0) -> None:
        self.overlays = overlays
        self.seed = seed

    def fit(self, target: Target, x_pool: Any) -> STRIP:
        """Use ``target`` and the clean inputs ``x_pool`` to superimpose."""
        if self.overlays < 1:
            raise ConfigError(f"overlays must be at least 1, got {self.overlays}")
        if target.output_kind is OutputKind.LABELS:
            raise ConfigError(f"STRIP needs scores; {target.name} returns labels only")
        pool = torch.as_tensor(np.asarray(x_pool)).float()
        if len(pool) == 0:
            raise DataError("STRIP needs a pool of clean inputs to superimpose")
        self.target_ = target
        self.pool_ = pool
        return self

    def score(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "target_"):
            raise ConfigError("STRIP is not fitted: call fit(target, x_pool) first")
        x = torch.as_tensor(x).float()
        lo, hi = self.target_.bounds
        gen = torch.Generator().manual_seed(self.seed)
        picks = torch.randint(0, len(self.pool_), (len(x), self.overlays), generator=gen)
        entropy = torch.zeros(len(x))
        for j in range(self.overlays):
            mixed = (x + (self.pool_[picks[:, j]] - lo)).clamp(lo, hi)
            out = self.target_.outputs(mixed.to(self.target_.device)).cpu()
            probs = out if self.target_.output_kind is OutputKind.PROBABILITIES else out.softmax(1)
            entropy += -(probs * probs.clamp_min(1e-12).log()).sum(dim=1)
        return -(entropy / self.overlays)
