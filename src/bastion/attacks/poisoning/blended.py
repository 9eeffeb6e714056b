"""The blended backdoor: a fixed random pattern mixed into the whole image."""

from __future__ import annotations

from typing import Literal

import numpy as np

from bastion.attacks.poisoning.badnets import BackdoorAttack
from bastion.attacks.poisoning.triggers import blend
from bastion.core.registry import register_attack
from bastion.core.threat import Access
from bastion.data import Dataset

__all__ = ["Blended"]


@register_attack(
    "blended",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0018.000", "AML.T0020"),
    data_kinds=("image",),
    cost=20,
    defaults={"rate": 0.05},
    fast={"rate": 0.05},
)
class Blended(BackdoorAttack):
    """A fixed noise pattern blended into poisoned training images, which are relabelled.

    Paper: Chen, Liu, Li, Lu, Song, "Targeted Backdoor Attacks on Deep Learning Systems Using
    Data Poisoning", 2017, arXiv:1712.05526 (the blended-injection strategy with a random
    pattern key).

    Threat: the attacker changes a share of the training data, labels included. Unlike a patch,
    the key covers the whole image at low opacity, so no single region gives it away.

    Args:
        rate: the share of the training set poisoned (0.05).
        target_class: where triggered inputs go in ``all-to-one`` mode (0).
        mode: ``all-to-one`` or ``all-to-all``.
        alpha: the pattern's weight in the blend (0.2).
        pattern_seed: the seed of the noise pattern, the attacker's key (1234).

    Example::

        poisoned = Blended(rate=0.05, alpha=0.2).poison(load_dataset("digits"))
    """

    def __init__(
        self,
        *,
        rate: float = 0.05,
        target_class: int = 0,
        mode: Literal["all-to-one", "all-to-all"] = "all-to-one",
        alpha: float = 0.2,
        pattern_seed: int = 1234,
    ) -> None:
        self.rate = rate
        self.target_class = target_class
        self.mode = mode
        self.alpha = alpha
        self.pattern_seed = pattern_seed

    def apply_trigger(self, x: np.ndarray, data: Dataset) -> np.ndarray:
        return blend(x, self.alpha, self.pattern_seed, data.bounds)
