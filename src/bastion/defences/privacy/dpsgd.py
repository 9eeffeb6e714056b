"""Differentially private training (DP-SGD) through Opacus."""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from bastion._extras import require
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_defence
from bastion.core.targets.torch import TorchTarget
from bastion.core.threat import Access
from bastion.data import Dataset
from bastion.defences.base import Trainer
from bastion.zoo.fit import FitSettings, build_model

__all__ = ["DPSGD"]


@register_defence(
    "dp-sgd",
    family="privacy",
    defence_kind="trainer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0024.000", "AML.T0024.001"),
    mitigations=("AID-H-005.001", "AID-H-005"),
    defaults={"epsilon": 8.0},
    fast={"epsilon": 8.0, "epochs": 3},
)
class DPSGD(Trainer):
    """Train a model with differentially private SGD: per-sample gradients clipped to
    ``max_grad_norm`` and Gaussian noise added, the noise chosen so that training for
    ``epochs`` spends at most ``epsilon`` for ``delta``; what it spent is ``epsilon_``.

    Paper: Abadi, Chu, Goodfellow, McMahan, Mironov, Talwar, Zhang, "Deep Learning with
    Differential Privacy", 2016, arXiv:1607.00133; the accounting is Opacus' (Yousefpour et
    al. 2021, arXiv:2109.12298). Needs the ``privacy`` extra.

    Args:
        epsilon: the privacy budget (8.0).
        delta: the failure probability (None: 1 / (10 * training samples)).
        max_grad_norm: the per-sample gradient clipping norm (1.0).
        epochs: passes over the data (20).
        lr: SGD learning rate (0.5).
        batch_size: expected samples per step (Poisson sampling) (128).
        arch, hidden: the model (see :class:`~bastion.zoo.fit.FitSettings`).
        seed: seeds the weights, the sampling and the noise (0).

    Returns (``fit``): a :class:`TorchTarget` of the privately trained model.
    """

    def __init__(
        self,
        *,
        epsilon: float = 8.0,
        delta: float | None = None,
        max_grad_norm: float = 1.0,
        epochs: int = 20,
        lr: float = 0.5,
        batch_size: int = 128,
        arch: str = "auto",
        hidden: int = 128,
        seed: int = 0,
    ) -> None:
        self.epsilon = epsilon
        self.delta = delta
        self.max_grad_norm = max_grad_norm
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.arch = arch
        self.hidden = hidden
        self.seed = seed

    def _check_params(self) -> None:
        if not (self.epsilon > 0 and self.max_grad_norm > 0 and self.lr > 0):
            raise ConfigError("dp-sgd epsilon, max_grad_norm and lr must be positive")
        if self.delta is not None and not 0 < self.delta < 1:
            raise ConfigError(f"dp-sgd delta must be in (0, 1), got {self.delta}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("dp-sgd epochs and batch_size must be at least 1")

    def fit_arrays(
        self, x: torch.Tensor, y: torch.Tensor, num_classes: int, model: nn.Module | None = None
    ) -> nn.Module:
        """Train ``model`` (default: a fresh one for ``x``'s shape) privately on ``x, y``."""
        self._check_params()
        opacus = require("opacus")
        if len(x) < 2:
            raise DataError("dp-sgd needs training data")
        delta = self.delta if self.delta is not None else 1 / (10 * len(x))
        settings = FitSettings(arch=self.arch, hidden=self.hidden)
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            # Opacus warns about its (here deliberate) non-cryptographic noise and about the
            # backward hooks it installs; neither is the user's to act on
            warnings.filterwarnings("ignore", message=".*[Ss]ecure.*RNG.*")
            warnings.filterwarnings("ignore", message=".*Full backward hook.*")
            warnings.filterwarnings("ignore", message=".*[Ss]ecure mode.*")
            torch.manual_seed(self.seed)
            if model is None:
                model = build_model(tuple(x.shape[1:]), num_classes, settings, seed=self.seed)
            loader = torch.utils.data.DataLoader(
                torch.utils.data.TensorDataset(x, y),
                batch_size=self.batch_size,
                generator=torch.Generator().manual_seed(self.seed),
            )
            optimizer = torch.optim.SGD(model.parameters(), lr=self.lr)
            engine = opacus.PrivacyEngine(secure_mode=False)
            private, optimizer, loader = engine.make_private_with_epsilon(
                module=model,
                optimizer=optimizer,
                data_loader=loader,
                target_epsilon=self.epsilon,
                target_delta=delta,
                epochs=self.epochs,
                max_grad_norm=self.max_grad_norm,
                noise_generator=torch.Generator().manual_seed(self.seed + 1),
            )
            loss_fn = nn.CrossEntropyLoss()
            private.train()
            for _ in range(self.epochs):
                for xb, yb in loader:
                    if len(xb) == 0:
                        continue
                    optimizer.zero_grad()
                    loss_fn(private(xb), yb).backward()
                    optimizer.step()
        self.epsilon_ = float(engine.get_epsilon(delta))
        self.delta_ = delta
        self.noise_multiplier_ = float(optimizer.noise_multiplier)
        model.eval()
        return model

    def fit(self, target: Any, data: Dataset) -> TorchTarget:
        """A privately trained model on ``data``'s training split, as a target; ``target``
        (the model to replace) gives its name, or None."""
        if len(data.x_train) == 0:
            raise DataError(f"{data.name} has no training split to train on")
        model = self.fit_arrays(
            torch.from_numpy(data.x_train), torch.from_numpy(data.y_train), data.num_classes
        )
        name = getattr(target, "name", None) or data.name
        return TorchTarget(
            model,
            num_classes=data.num_classes,
            bounds=data.bounds,
            input_shape=data.input_shape,
            name=f"{name} [dp-sgd eps={self.epsilon_:.2g}]",
        )
