"""Retraining on filtered data: drop what a data defence flags, train the model afresh."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from bastion.core.errors import ConfigError
from bastion.core.registry import DEFENCES, register_defence
from bastion.core.targets import Target, TorchTarget
from bastion.core.threat import Access
from bastion.defences.base import Trainer
from bastion.defences.training._common import like, split_data, torch_module

__all__ = ["FilterRetrain"]


@register_defence(
    "filter-retrain",
    family="poisoning",
    defence_kind="trainer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0020", "AML.T0018.000"),
    mitigations=("AML.M0007",),
    data_kinds=("image", "tabular"),
)
class FilterRetrain(Trainer):
    """Screen the training data with a data defence, then retrain the architecture from scratch.

    The data defence (any registered sanitizer, by name) scores the suspect training set,
    reading the suspect model's activations if it needs them; the flagged samples are
    dropped and a fresh copy of the model (re-initialized weights, same architecture) is
    trained on the rest with bastion's training loop.

    Threat: poisoned training data; needs the model's architecture (white-box) and the
    training data.

    Args:
        sanitizer: the registered data defence to filter with (``activation-clustering``).
        epochs: training epochs (10).
        lr: learning rate (3e-3).
        batch_size: batch size (64).
        seed: seed of the initial weights and the batch order (0).

    ``fit(target, (x, y))`` returns the retrained target; ``flagged_`` holds what was dropped.

    Example::

        clean = FilterRetrain(sanitizer="knn-consistency").fit(trojaned, (x_train, y_train))
    """

    def __init__(
        self,
        *,
        sanitizer: str = "activation-clustering",
        epochs: int = 10,
        lr: float = 3e-3,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.sanitizer = sanitizer
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def fit(self, target: Target, data: Any) -> TorchTarget:
        from bastion.data import Dataset
        from bastion.defences.data.base import DataDefence
        from bastion.zoo.models import Recipe, train_classifier

        if self.epochs < 1:
            raise ConfigError(f"epochs must be at least 1, got {self.epochs}")
        module = copy.deepcopy(torch_module(target))
        assert isinstance(target, TorchTarget)  # torch_module() checked it
        defence = DEFENCES.create(self.sanitizer)
        if not isinstance(defence, DataDefence):
            raise ConfigError(f"{self.sanitizer!r} is not a data defence that scores samples")
        x, y = split_data(data)
        defence.fit(x, y, model=target if defence.needs_model else None)
        self.flagged_ = defence.flagged_
        x_kept, y_kept = defence.filter(x, y)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            for m in module.modules():
                reset = getattr(m, "reset_parameters", None)
                if callable(reset) and m is not module:
                    reset()
        recipe = Recipe(
            "filtered",
            "custom",
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            seed=self.seed,
        )
        filtered = Dataset(
            "filtered",
            "image" if x.ndim == 4 else "tabular",
            x_kept,
            y_kept,
            x_kept[:1],
            y_kept[:1],
            target.num_classes,
            bounds=target.bounds,
        )
        trained: nn.Module = train_classifier(module, filtered, recipe)
        return like(target, trained, f"{target.name}+filter-retrain")
