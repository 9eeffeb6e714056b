"""The label-consistent backdoor: target-class images made hard to learn, then triggered."""

from __future__ import annotations

import numpy as np
import torch

from bastion.attacks.poisoning.badnets import BackdoorAttack
from bastion.attacks.poisoning.base import PoisonedData, choose
from bastion.attacks.poisoning.triggers import stamp_patch
from bastion.core.errors import AccessError, ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.data import Dataset

__all__ = ["CleanLabel"]


@register_attack(
    "clean-label",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0018.000", "AML.T0020"),
    data_kinds=("image",),
    cost=40,
    defaults={"rate": 0.06, "steps": 20},
    fast={"rate": 0.06, "steps": 10},
)
class CleanLabel(BackdoorAttack):
    """A backdoor whose poisoned samples keep their correct labels.

    Paper: Turner, Tsipras, Madry, "Label-Consistent Backdoor Attacks", 2019,
    arXiv:1912.02771.

    Each poisoned sample is an image of the target class, first pushed away from its class by
    PGD against a surrogate model (so its own features no longer explain its label), then
    stamped with the patch. The model leans on the patch to fit these samples and learns
    "patch means target class". Labels are never changed, so the poison survives a human
    check of the labels.

    Threat: the attacker adds or changes target-class training images but not labels, and
    has a surrogate model trained on similar data (passed as ``surrogate=`` to ``poison``).

    Args:
        rate: the share of the training set poisoned, all from the target class (0.06).
        target_class: the class the trigger leads to (0).
        eps: the Linf size of the adversarial perturbation, as a fraction of the bounds'
            span (0.3).
        steps: PGD steps (20).
        size: the patch's side in pixels (None: about a seventh of the image, at least 2).
        position: the patch's corner (``bottom-right``), or ``corners`` for a patch at each
            of the four, as in the paper.

    Example::

        surrogate, data = load_demo("digits-cnn")
        poisoned = CleanLabel(rate=0.06).poison(data, surrogate=surrogate)
    """

    mode = "all-to-one"

    def __init__(
        self,
        *,
        rate: float = 0.06,
        target_class: int = 0,
        eps: float = 0.3,
        steps: int = 20,
        size: int | None = None,
        position: str = "bottom-right",
    ) -> None:
        self.rate = rate
        self.target_class = target_class
        self.eps = eps
        self.steps = steps
        self.size = size
        self.position = position

    def _check_params(self) -> None:
        super()._check_params()
        if not 0 < self.eps <= 1:
            raise ConfigError(f"eps is a fraction of the bounds' span in (0, 1], got {self.eps}")
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")

    def apply_trigger(self, x: np.ndarray, data: Dataset) -> np.ndarray:
        return stamp_patch(x, self.size, self.position, data.bounds)

    def _poison(
        self, data: Dataset, count: int, rng: np.random.Generator, surrogate: Target | None
    ) -> PoisonedData:
        from bastion.attacks.evasion.pgd import PGD

        if surrogate is None or not surrogate.access.allows(Access.WHITE_BOX):
            raise AccessError(
                "the clean-label backdoor needs a white-box surrogate model: poison(..., "
                "surrogate=TorchTarget(...))"
            )
        x, y = data.x_train.copy(), data.y_train.copy()
        pool = np.flatnonzero(y == self.target_class)
        chosen = choose(rng, pool, count, f"samples of the target class {self.target_class}")
        if len(chosen):
            span = data.bounds[1] - data.bounds[0]
            seed = int(rng.integers(2**31))
            result = PGD(steps=self.steps).run(
                surrogate,
                torch.from_numpy(x[chosen]),
                torch.from_numpy(y[chosen]),
                eps=self.eps * span,
                seed=seed,
            )
            hard = result.x_adv.detach().cpu().numpy().astype(x.dtype)
            x[chosen] = self.apply_trigger(hard, data)
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedData(x, y, mask, attack="")
