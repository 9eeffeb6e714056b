"""Label flipping: random, or every chosen sample of one class relabelled as another."""

from __future__ import annotations

import numpy as np

from bastion.attacks.poisoning.base import Goal, PoisonedData, PoisoningAttack, choose
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.data import Dataset

__all__ = ["LabelFlip"]


@register_attack(
    "label-flip",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0020",),
    cost=10,
    defaults={"rate": 0.1},
    fast={"rate": 0.1},
)
class LabelFlip(PoisoningAttack):
    """Relabel a share of the training samples: at random, or class ``source`` as ``target``.

    Paper: Biggio, Nelson, Laskov, "Support Vector Machines Under Adversarial Label Noise",
    2011 (random flips); targeted flips as in Tolpegin et al., "Data Poisoning Attacks Against
    Federated Learning Systems", 2020, arXiv:2007.08432.

    Threat: the attacker labels part of the training data (a labeler, a feedback loop); inputs
    are untouched. Random flips degrade accuracy; targeted flips make the model read class
    ``source`` as ``target``.

    Args:
        rate: the share of the training set relabelled (0.1); a targeted flip takes it from
            class ``source`` only.
        source: the class to relabel (None: random flips).
        target: the label given to it (None: random flips).

    Returns a :class:`PoisonedData`. Example::

        poisoned = LabelFlip(rate=0.05, source=3, target=8).poison(load_dataset("digits"))
    """

    def __init__(
        self, *, rate: float = 0.1, source: int | None = None, target: int | None = None
    ) -> None:
        self.rate = rate
        self.source = source
        self.target = target

    @property
    def goal(self) -> Goal:  # type: ignore[override]
        return "availability" if self.source is None else "targeted"

    def _check_params(self) -> None:
        super()._check_params()
        if (self.source is None) != (self.target is None):
            raise ConfigError("give both source and target for a targeted flip, or neither")
        if self.source is not None and self.source == self.target:
            raise ConfigError("source and target must be different classes")

    def _check_data(self, data: Dataset) -> None:
        super()._check_data(data)
        for name, cls in (("source", self.source), ("target", self.target)):
            if cls is not None and not 0 <= cls < data.num_classes:
                raise ConfigError(f"{name} class {cls} is not one of {data.num_classes} classes")

    def _poison(
        self, data: Dataset, count: int, rng: np.random.Generator, surrogate: Target | None
    ) -> PoisonedData:
        x, y = data.x_train.copy(), data.y_train.copy()
        if self.source is None or self.target is None:
            chosen = choose(rng, np.arange(len(y)), count, "training samples")
            # a different label for each, uniformly among the other classes
            shift = rng.integers(1, data.num_classes, size=len(chosen))
            y[chosen] = (y[chosen] + shift) % data.num_classes
        else:
            pool = np.flatnonzero(y == self.source)
            chosen = choose(rng, pool, count, f"samples of class {self.source}")
            y[chosen] = self.target
        mask = np.zeros(len(y), dtype=bool)
        mask[chosen] = True
        return PoisonedData(x, y, mask, attack="")

    def test_inputs(
        self, x: np.ndarray, y: np.ndarray, data: Dataset
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if self.source is None or self.target is None:
            return None
        keep = y == self.source
        return x[keep], np.full(int(keep.sum()), self.target, dtype=np.int64)
