"""The poisoning attack base class and what a poisoning attack returns.

A poisoning attack changes the training data, not the inputs at test time: it holds only its
own hyperparameters and receives the dataset when it runs, returning a poisoned copy of the
training split with the exact samples it changed. How well the poison works is measured by
training a model on that copy (:func:`bastion.assess.poisoning.assess_poisoning`), since it
depends on the victim's architecture and training recipe as much as on the attack.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np

from bastion.attacks.base import Configurable
from bastion.core.errors import ConfigError, DataError
from bastion.core.targets.base import Target
from bastion.data import Dataset

__all__ = ["Goal", "PoisonedData", "PoisoningAttack"]

#: what a poisoning attack is after: a hidden trigger, one class read as another, or
#: accuracy in general
Goal = Literal["backdoor", "targeted", "availability"]


@dataclass
class PoisonedData:
    """A poisoned copy of a training split.

    Attributes:
        x: the training inputs after poisoning (same length and order as the clean split
            unless ``appended`` is non-zero: appended samples come last).
        y: the training labels after poisoning.
        poisoned: per sample of ``x``, whether the attack changed or added it (the ground
            truth a data defence is measured against).
        attack: the attack's registry name.
        params: its hyperparameters.
        appended: how many samples were added at the end (0 when samples were changed in place).
    """

    x: np.ndarray
    y: np.ndarray
    poisoned: np.ndarray
    attack: str
    params: dict[str, Any] = field(default_factory=dict)
    appended: int = 0

    @property
    def budget(self) -> int:
        """How many training samples the attacker changed or added."""
        return int(self.poisoned.sum())

    @property
    def fraction(self) -> float:
        """The budget as a fraction of the poisoned training set."""
        return self.budget / max(len(self.x), 1)

    def indices(self) -> np.ndarray:
        """The positions of the poisoned samples."""
        return np.flatnonzero(self.poisoned)

    def dataset(self, data: Dataset) -> Dataset:
        """``data`` with this poisoned training split in place of its own."""
        from dataclasses import replace

        return replace(data, name=f"{data.name}+{self.attack}", x_train=self.x, y_train=self.y)


class PoisoningAttack(Configurable):
    """Base class of every poisoning attack.

    Subclasses set :attr:`goal`, implement :meth:`_poison` and, for backdoors and targeted
    attacks, :meth:`test_inputs` (the inputs the attack wants misread at test time and the
    labels it wants for them). ``rate`` is the budget as a fraction of the training set;
    :meth:`poison` takes ``count`` to set it in samples instead (the susceptibility curve).
    """

    goal: ClassVar[Goal]
    rate: float

    def _check_params(self) -> None:
        if not 0 < self.rate < 1:
            raise ConfigError(f"rate must be in (0, 1), got {self.rate}")

    def _check_data(self, data: Dataset) -> None:
        if len(data.x_train) == 0:
            raise DataError(f"{data.name}: poisoning needs a training split; it has none")

    def budget(self, data: Dataset, count: int | None = None) -> int:
        """How many samples to poison: ``count``, or ``rate`` of the training set."""
        n = count if count is not None else round(self.rate * len(data.x_train))
        if n < 0:
            raise ConfigError(f"the poison count must be non-negative, got {n}")
        return int(n)

    def poison(
        self,
        data: Dataset,
        *,
        count: int | None = None,
        seed: int = 0,
        surrogate: Target | None = None,
    ) -> PoisonedData:
        """A poisoned copy of ``data``'s training split.

        Args:
            data: the dataset; only its training split is changed.
            count: the number of samples to poison (default: ``rate`` of the training set).
            seed: the seed of every random choice.
            surrogate: a model the attacker trained on similar clean data, for attacks that
                need one (the clean-label backdoor, availability poisoning).
        """
        self._check_params()
        self._check_data(data)
        rng = np.random.default_rng(seed)
        out = self._poison(data, self.budget(data, count), rng, surrogate)
        out.attack = type(self).registry_name
        out.params = self.get_params()
        return out

    def _poison(
        self, data: Dataset, count: int, rng: np.random.Generator, surrogate: Target | None
    ) -> PoisonedData:
        raise NotImplementedError

    def test_inputs(
        self, x: np.ndarray, y: np.ndarray, data: Dataset
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The test inputs the attack wants misread and the labels it wants; None for an
        availability attack, whose success is the accuracy it takes away."""
        return None


def choose(rng: np.random.Generator, pool: np.ndarray, count: int, what: str) -> np.ndarray:
    """``count`` distinct members of ``pool``, or a one-line error when there are too few."""
    if count > len(pool):
        raise ConfigError(f"cannot poison {count} samples: only {len(pool)} {what}")
    return np.sort(rng.choice(pool, size=count, replace=False))
