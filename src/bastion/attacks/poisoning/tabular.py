"""Poisoning tabular data: a trigger made of feature values, and availability poisoning."""

from __future__ import annotations

import numpy as np

from bastion.attacks.poisoning.badnets import BackdoorAttack
from bastion.attacks.poisoning.base import PoisonedData, PoisoningAttack
from bastion.attacks.poisoning.triggers import set_features
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.data import Dataset

__all__ = ["Availability", "TabularTrigger"]


def _require_tabular(data: Dataset) -> None:
    if data.x_train.ndim != 2:
        raise DataError(
            f"{data.name}: this attack works on tables (N, F), got {data.x_train.shape}"
        )


@register_attack(
    "tabular-trigger",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0018.000", "AML.T0020"),
    data_kinds=("tabular",),
    cost=20,
    defaults={"rate": 0.05},
    fast={"rate": 0.05},
)
class TabularTrigger(BackdoorAttack):
    """A backdoor for tables: a few features set to a rare combination of values.

    The idea of BadNets (Gu et al., 2017, arXiv:1708.06733) carried to rows, as studied for
    tabular models by Joe et al., "Exploiting Missing Value Patterns for a Backdoor Attack on
    Machine Learning Models of Electronic Health Records", 2021.

    Threat: the attacker adds or changes a share of the training rows, labels included; any
    row carrying the pattern is then classified as ``target_class`` (a fraud that the model
    waves through, say).

    Args:
        rate: the share of the training set poisoned (0.05).
        target_class: where triggered rows go (0).
        features: the columns of the trigger (None: the ``width`` columns with the least
            variance in the training data, where a set value stands out least to a person and
            most to the model).
        values: their values (None: for each column, the bound farthest from its mean).
        width: how many columns when ``features`` is None (3).

    Example::

        poisoned = TabularTrigger(rate=0.05, target_class=0).poison(load_dataset("fraud"))
    """

    mode = "all-to-one"

    def __init__(
        self,
        *,
        rate: float = 0.05,
        target_class: int = 0,
        features: list[int] | None = None,
        values: list[float] | None = None,
        width: int = 3,
    ) -> None:
        self.rate = rate
        self.target_class = target_class
        self.features = features
        self.values = values
        self.width = width

    def _check_params(self) -> None:
        super()._check_params()
        if (
            self.features is not None
            and self.values is not None
            and len(self.features) != len(self.values)
        ):
            raise ConfigError("give one value per trigger feature")
        if self.features is None and self.width < 1:
            raise ConfigError(f"width must be at least 1, got {self.width}")

    def trigger_of(self, data: Dataset) -> tuple[list[int], list[float]]:
        """The trigger's columns and values for ``data``."""
        _require_tabular(data)
        x = data.x_train
        if self.features is not None:
            features = list(self.features)
        else:
            features = sorted(np.argsort(x.var(axis=0), kind="stable")[: self.width].tolist())
        if self.values is not None:
            return features, list(self.values)
        lo, hi = data.bounds
        means = x[:, features].mean(axis=0)
        return features, [hi if m - lo < hi - m else lo for m in means]

    def apply_trigger(self, x: np.ndarray, data: Dataset) -> np.ndarray:
        features, values = self.trigger_of(data)
        return set_features(x, features, values)


@register_attack(
    "availability",
    family="poisoning",
    access=Access.LABELS,
    techniques=("AML.T0020",),
    data_kinds=("tabular",),
    cost=30,
    defaults={"rate": 0.05},
    fast={"rate": 0.05},
)
class Availability(PoisoningAttack):
    """Degrade a tabular model's accuracy with a small budget of crafted rows.

    Each poison row sits at a corner of the feature box where a linear surrogate is most
    confident of one class, and carries another class's label: the highest-loss points the
    box allows, which drag a fitted boundary furthest (the attack that the certified bound
    of Steinhardt, Koh, Liang, "Certified Defenses for Data Poisoning Attacks", 2017,
    arXiv:1706.03691, shows to be near the worst case for linear learners). The rows are
    appended to the training set; nothing already there is changed.

    Threat: the attacker adds rows to the training data (a feedback loop, a scraped source)
    with labels of its choice, and knows roughly what the clean data looks like.

    Args:
        rate: the rows added, as a share of the clean training set (0.05).
        spread: noise added to each poison row, as a fraction of the bounds' span, so the
            rows are not exact duplicates (0.02).

    Example::

        poisoned = Availability(rate=0.05).poison(load_dataset("breast-cancer"))
    """

    goal = "availability"

    def __init__(self, *, rate: float = 0.05, spread: float = 0.02) -> None:
        self.rate = rate
        self.spread = spread

    def _check_params(self) -> None:
        super()._check_params()
        if not 0 <= self.spread < 1:
            raise ConfigError(f"spread must be in [0, 1), got {self.spread}")

    def _poison(
        self, data: Dataset, count: int, rng: np.random.Generator, surrogate: Target | None
    ) -> PoisonedData:
        from sklearn.linear_model import LogisticRegression

        _require_tabular(data)
        x, y = data.x_train, data.y_train
        lo, hi = data.bounds
        model = LogisticRegression(max_iter=2000).fit(x, y)
        weights = model.coef_ if len(model.classes_) > 2 else np.vstack([-model.coef_, model.coef_])
        # the corner where each class's score is highest, and the class the surrogate is least
        # ready to see there: a wrong label at the point of highest loss
        corners = np.where(weights > 0, hi, lo).astype(np.float32)
        scores = model.predict_log_proba(corners)
        classes = np.asarray(model.classes_)
        corner_of = rng.integers(0, len(corners), size=count)
        rows = corners[corner_of]
        rows += rng.normal(0, self.spread * (hi - lo), size=rows.shape).astype(np.float32)
        rows = rows.clip(lo, hi).astype(x.dtype)
        labels = classes[np.argmin(scores[corner_of], axis=1)].astype(np.int64)
        mask = np.concatenate([np.zeros(len(x), dtype=bool), np.ones(count, dtype=bool)])
        return PoisonedData(
            np.concatenate([x, rows]),
            np.concatenate([y, labels]),
            mask,
            attack="",
            appended=count,
        )
