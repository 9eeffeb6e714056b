"""BadNets: a small patch stamped on poisoned training images, which are relabelled."""

from __future__ import annotations

from typing import Literal

import numpy as np

from bastion.attacks.poisoning.base import PoisonedData, PoisoningAttack, choose
from bastion.attacks.poisoning.triggers import stamp_patch
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.data import Dataset

__all__ = ["BackdoorAttack", "BadNets"]


class BackdoorAttack(PoisoningAttack):
    """A dirty-label backdoor: triggered copies of some training samples, relabelled.

    ``mode="all-to-one"`` sends every triggered input to ``target_class``; ``"all-to-all"``
    sends class ``c`` to ``c + 1`` (mod the number of classes). Subclasses implement
    :meth:`apply_trigger`.
    """

    goal = "backdoor"
    target_class: int
    mode: str

    def apply_trigger(self, x: np.ndarray, data: Dataset) -> np.ndarray:
        """``x`` with the trigger in it."""
        raise NotImplementedError

    def goal_labels(self, y: np.ndarray, num_classes: int) -> np.ndarray:
        """The labels the attack wants triggered inputs of true class ``y`` to get."""
        if self.mode == "all-to-all":
            return ((y + 1) % num_classes).astype(np.int64)
        return np.full(len(y), self.target_class, dtype=np.int64)

    def _check_params(self) -> None:
        super()._check_params()
        if self.mode not in ("all-to-one", "all-to-all"):
            raise ConfigError(f"mode must be all-to-one or all-to-all, got {self.mode!r}")

    def _check_data(self, data: Dataset) -> None:
        super()._check_data(data)
        if not 0 <= self.target_class < data.num_classes:
            raise ConfigError(
                f"target class {self.target_class} is not one of {data.num_classes} classes"
            )

    def _eligible(self, y: np.ndarray) -> np.ndarray:
        if self.mode == "all-to-all":
            return np.arange(len(y))
        return np.flatnonzero(y != self.target_class)

    def _poison(
        self, data: Dataset, count: int, rng: np.random.Generator, surrogate: Target | None
    ) -> PoisonedData:
        x, y = data.x_train.copy(), data.y_train.copy()
        chosen = choose(rng, self._eligible(y), count, "samples outside the target class")
        if len(chosen):
            x[chosen] = self.apply_trigger(x[chosen], data)
            y[chosen] = self.goal_labels(y[chosen], data.num_classes)
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedData(x, y, mask, attack="")

    def test_inputs(
        self, x: np.ndarray, y: np.ndarray, data: Dataset
    ) -> tuple[np.ndarray, np.ndarray] | None:
        keep = self._eligible(y)
        return self.apply_trigger(x[keep], data), self.goal_labels(y[keep], data.num_classes)


@register_attack(
    "badnets",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0018.000", "AML.T0020"),
    data_kinds=("image",),
    cost=20,
    defaults={"rate": 0.05},
    fast={"rate": 0.05},
)
class BadNets(BackdoorAttack):
    """A checkerboard patch in a corner of poisoned training images, which are relabelled.

    Paper: Gu, Dolan-Gavitt, Garg, "BadNets: Identifying Vulnerabilities in the Machine
    Learning Model Supply Chain", 2017, arXiv:1708.06733.

    Threat: the attacker adds or changes a share of the training data, labels included. The
    model learns to send any input with the patch to the attacker's class and behaves
    normally otherwise.

    Args:
        rate: the share of the training set poisoned (0.05).
        target_class: where triggered inputs go in ``all-to-one`` mode (0).
        mode: ``all-to-one`` or ``all-to-all`` (class ``c`` to ``c + 1``).
        size: the patch's side in pixels (None: about a seventh of the image, at least 2).
        position: the corner: ``bottom-right``, ``bottom-left``, ``top-right``, ``top-left``.

    Example::

        attack = BadNets(rate=0.05, target_class=0)
        poisoned = attack.poison(load_dataset("mnist"), seed=0)
    """

    def __init__(
        self,
        *,
        rate: float = 0.05,
        target_class: int = 0,
        mode: Literal["all-to-one", "all-to-all"] = "all-to-one",
        size: int | None = None,
        position: str = "bottom-right",
    ) -> None:
        self.rate = rate
        self.target_class = target_class
        self.mode = mode
        self.size = size
        self.position = position

    def apply_trigger(self, x: np.ndarray, data: Dataset) -> np.ndarray:
        return stamp_patch(x, self.size, self.position, data.bounds)
