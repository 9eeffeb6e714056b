"""Neural Cleanse: reverse-engineer the smallest trigger for each class; an outlier is a trojan."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bastion.core.errors import AccessError, ConfigError, DataError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.base import Defence

__all__ = ["NeuralCleanse"]

#: the MAD of a normal distribution is this many times smaller than its standard deviation
_CONSISTENCY = 1.4826


@register_defence(
    "neural-cleanse",
    family="poisoning",
    defence_kind="detector",
    access=Access.WHITE_BOX,
    techniques=("AML.T0018.000", "AML.T0018", "AML.T0020"),
    mitigations=("AML.M0008",),
    data_kinds=("image",),
)
class NeuralCleanse(Defence):
    """Find, for every class, the smallest mask and pattern that send clean inputs to it.

    Paper: Wang, Yao, Shan, Li, Viswanath, Zheng, Zhao, "Neural Cleanse: Identifying and
    Mitigating Backdoor Attacks in Neural Networks", IEEE S&P 2019.

    For each class ``t`` a mask ``m`` (H x W, in [0, 1]) and a pattern ``p`` (within the
    bounds) are optimized so that ``(1 - m) * x + m * p`` is classified as ``t`` for clean
    ``x``, while the mask's L1 norm is kept small; the weight of the norm adapts, as in the
    paper, to keep the success rate near ``target_success``. A backdoor is a shortcut to its
    target class, so that class's mask is far smaller than the others': the anomaly index of
    a class is how many (consistency-scaled) median absolute deviations its norm lies below
    the median, and a class above ``threshold`` (2, the paper's) is flagged. All classes are
    optimized together in one batch.

    Threat: a trojaned model (poisoned training data or tampered weights); needs white-box
    access and a few clean inputs.

    Args:
        steps: optimization steps (300).
        lr: Adam's learning rate (0.1).
        cost: the initial weight of the mask's L1 norm, per pixel of the image (1e-3).
        target_success: the success rate the reversed trigger must keep (0.95).
        batch_size: clean inputs per step (64).
        threshold: the anomaly index above which a class is flagged (2.0).
        seed: seed of the initial masks and the batches (0).

    After :meth:`fit`: ``norms_`` (per class L1 norm), ``success_``, ``anomaly_``,
    ``flagged_`` (class indices), ``backdoored_``, ``target_class_`` (the most anomalous
    flagged class or None), ``masks_`` and ``patterns_``.

    Example::

        nc = NeuralCleanse(steps=200).fit(model, x_clean)
        nc.backdoored_, nc.target_class_
    """

    def __init__(
        self,
        *,
        steps: int = 300,
        lr: float = 0.1,
        cost: float = 1e-3,
        target_success: float = 0.95,
        batch_size: int = 64,
        threshold: float = 2.0,
        seed: int = 0,
    ) -> None:
        self.steps = steps
        self.lr = lr
        self.cost = cost
        self.target_success = target_success
        self.batch_size = batch_size
        self.threshold = threshold
        self.seed = seed

    def _check_params(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError("steps and batch_size must be at least 1")
        if self.lr <= 0 or self.cost <= 0:
            raise ConfigError("lr and cost must be positive")
        if not 0 < self.target_success <= 1:
            raise ConfigError(f"target_success must be in (0, 1], got {self.target_success}")

    def fit(self, target: Target, x_clean: Any) -> NeuralCleanse:
        """Reverse-engineer a trigger per class of ``target`` on clean inputs ``x_clean``."""
        self._check_params()
        if not target.access.allows(Access.WHITE_BOX):
            raise AccessError(f"Neural Cleanse needs gradients; {target.name} gives none")
        x = torch.as_tensor(
            np.asarray(x_clean) if not isinstance(x_clean, torch.Tensor) else x_clean
        )
        if x.ndim != 4 or len(x) == 0:
            raise DataError(f"Neural Cleanse needs clean images (N, C, H, W), got {tuple(x.shape)}")
        x = x.float().to(target.device)
        k = target.num_classes
        _, c, h, w = x.shape
        lo, hi = target.bounds
        gen = torch.Generator().manual_seed(self.seed)
        mask_logit = (torch.rand((k, 1, h, w), generator=gen) * 0.2 - 2).to(x.device)
        pattern_logit = (torch.rand((k, c, h, w), generator=gen) - 0.5).to(x.device)
        mask_logit.requires_grad_(True)
        pattern_logit.requires_grad_(True)
        opt = torch.optim.Adam([mask_logit, pattern_logit], lr=self.lr, betas=(0.5, 0.9))
        weight = torch.full((k,), self.cost, device=x.device)
        labels = torch.arange(k, device=x.device)
        best_norm = torch.full((k,), math.inf)
        best_mask = torch.zeros((k, h, w))
        best_pattern = torch.zeros((k, c, h, w))
        best_success = torch.zeros(k)
        hits = torch.zeros(k)
        seen = 0
        with target.inference_mode():
            for step in range(self.steps):
                idx = torch.randint(0, len(x), (min(self.batch_size, len(x)),), generator=gen)
                batch = x[idx.to(x.device)]
                mask = torch.sigmoid(mask_logit)
                pattern = lo + (hi - lo) * torch.sigmoid(pattern_logit)
                stamped = (1 - mask[:, None]) * batch[None] + (mask * pattern)[:, None]
                logits = target(stamped.reshape(-1, c, h, w)).reshape(k, len(batch), k)
                goal = labels[:, None].expand(k, len(batch))
                ce = F.cross_entropy(logits.reshape(-1, k), goal.reshape(-1), reduction="none")
                l1 = mask.flatten(1).sum(dim=1)
                loss = (ce.reshape(k, -1).mean(dim=1) + weight * l1).sum()
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                with torch.no_grad():
                    success = (logits.argmax(dim=2) == goal).float().mean(dim=1).cpu()
                    hits += success
                    seen += 1
                    better = (success >= self.target_success) & (l1.cpu() < best_norm)
                    best_norm[better] = l1.cpu()[better]
                    best_mask[better] = mask[better, 0].cpu()
                    best_pattern[better] = pattern[better].cpu()
                    best_success[better] = success[better]
                    # every ten steps: a heavier norm where the trigger works, lighter where not
                    if (step + 1) % 10 == 0:
                        rate = (hits / seen).to(weight.device)
                        weight = torch.where(
                            rate >= self.target_success, weight * 1.5, weight / 1.5
                        )
                        hits.zero_()
                        seen = 0
        # a class never reached keeps its last mask: its norm then says "no shortcut found"
        with torch.no_grad():
            final = torch.sigmoid(mask_logit)[:, 0].cpu()
            missing = torch.isinf(best_norm)
            best_mask[missing] = final[missing]
            best_pattern[missing] = (lo + (hi - lo) * torch.sigmoid(pattern_logit)).cpu()[missing]
            best_norm[missing] = final[missing].flatten(1).sum(dim=1)
        self.norms_ = best_norm.numpy().astype(np.float64)
        self.success_ = best_success.numpy().astype(np.float64)
        self.masks_ = best_mask.numpy()
        self.patterns_ = best_pattern.numpy()
        self.anomaly_ = anomaly_index(self.norms_)
        self.flagged_ = [int(i) for i in np.flatnonzero(self.anomaly_ > self.threshold)]
        self.backdoored_ = bool(self.flagged_)
        self.target_class_ = (
            int(max(self.flagged_, key=lambda i: self.anomaly_[i])) if self.flagged_ else None
        )
        return self

    def triggers(self) -> np.ndarray:
        """Each class's reversed trigger as an image, ``mask * pattern`` (K, C, H, W)."""
        return np.asarray(self.masks_[:, None] * self.patterns_)


def anomaly_index(norms: np.ndarray) -> np.ndarray:
    """How many consistency-scaled MADs each norm lies *below* the median (0 above it)."""
    median = float(np.median(norms))
    mad = _CONSISTENCY * float(np.median(np.abs(norms - median)))
    below = np.maximum(median - norms, 0.0)
    return below / max(mad, 1e-12)
