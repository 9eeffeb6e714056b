"""Small models fitted to arrays: the copies an extraction trains, the shadows of a membership
attack, and the regularized or private models a defence trains.

Everything is seeded (the initial weights and the batch order come from ``seed``) and runs on
the CPU by default; the caller's global random state is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.core.errors import ConfigError
from bastion.zoo.models import MLP, SmallCNN

__all__ = ["FitSettings", "build_model", "fit_model", "predict_proba"]


@dataclass(frozen=True)
class FitSettings:
    """How a small model is trained.

    Attributes:
        arch: ``mlp``, ``cnn`` (images of shape (C, H, W)) or ``auto`` (a CNN for images,
            an MLP otherwise).
        hidden: width of the MLP's hidden layers.
        epochs: passes over the data.
        lr: Adam's learning rate.
        batch_size: samples per step.
        weight_decay: L2 penalty.
        label_smoothing: share of each hard label spread over the other classes.
        patience: early stopping: stop once the loss on a held-out share of the data
            (``validation``) has not improved for this many epochs, and keep the weights of
            the best epoch (None: train every epoch on all the data).
        validation: the share of the data held out to judge early stopping.
    """

    arch: str = "auto"
    hidden: int = 64
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.0
    label_smoothing: float = 0.0
    patience: int | None = None
    validation: float = 0.1

    def check(self) -> None:
        if self.arch not in ("auto", "mlp", "cnn"):
            raise ConfigError(f"arch must be auto, mlp or cnn, got {self.arch!r}")
        if self.hidden < 1 or self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("hidden, epochs and batch_size must be at least 1")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError("lr must be positive and weight_decay at least 0")
        if not 0 <= self.label_smoothing < 1:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 (or None), got {self.patience}")
        if not 0 < self.validation < 1:
            raise ConfigError(f"validation must be in (0, 1), got {self.validation}")


def build_model(
    input_shape: Sequence[int], num_classes: int, settings: FitSettings, seed: int = 0
) -> nn.Module:
    """A fresh model for inputs of ``input_shape``, its weights drawn from ``seed``."""
    settings.check()
    shape = tuple(int(d) for d in input_shape)
    arch = settings.arch
    if arch == "auto":
        arch = "cnn" if len(shape) == 3 else "mlp"
    if arch == "cnn" and len(shape) != 3:
        raise ConfigError(f"a CNN needs image inputs (C, H, W), got shape {shape}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if arch == "cnn":
            return SmallCNN(shape[0], num_classes, shape[1])
        return MLP(math.prod(shape), num_classes, hidden=settings.hidden)


def fit_model(
    model: nn.Module,
    x: torch.Tensor,
    targets: torch.Tensor,
    settings: FitSettings,
    seed: int = 0,
    record: dict[str, Any] | None = None,
) -> nn.Module:
    """Train ``model`` from its current weights on ``x`` against ``targets``: (N,) labels,
    or (N, C) probabilities (soft labels, as a copy learns from a victim's scores). Returns
    the model in evaluation mode; ``record``, if given, receives the epochs trained and, with
    early stopping, the best epoch (the one whose weights are kept)."""
    settings.check()
    if len(x) == 0:
        raise ConfigError("nothing to fit: no samples")
    gen = torch.Generator().manual_seed(seed)
    x_val = t_val = None
    if settings.patience is not None:
        split = torch.randperm(len(x), generator=gen)
        n_val = max(1, round(settings.validation * len(x)))
        if n_val >= len(x):
            raise ConfigError("early stopping needs more samples than its validation share")
        x_val, t_val = x[split[:n_val]], targets[split[:n_val]]
        x, targets = x[split[n_val:]], targets[split[n_val:]]
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None
    epochs = 0
    opt = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    soft = targets.ndim == 2
    hard_loss = nn.CrossEntropyLoss(label_smoothing=settings.label_smoothing)
    model.train()
    for epoch in range(settings.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), settings.batch_size):
            idx = order[start : start + settings.batch_size]
            opt.zero_grad()
            out = model(x[idx])
            if soft:
                loss = -(targets[idx] * out.log_softmax(dim=1)).sum(dim=1).mean()
            else:
                loss = hard_loss(out, targets[idx])
            loss.backward()
            opt.step()
        epochs = epoch + 1
        if x_val is not None and t_val is not None and settings.patience is not None:
            model.eval()
            with torch.no_grad():
                out = model(x_val)
                if soft:
                    val = float(-(t_val * out.log_softmax(dim=1)).sum(dim=1).mean())
                else:
                    val = float(nn.functional.cross_entropy(out, t_val))
            model.train()
            if best is None or val < best[0]:
                state = {k: v.detach().clone() for k, v in model.state_dict().items()}
                best = (val, epochs, state)
            elif epochs - best[1] >= settings.patience:
                break
    if best is not None:
        model.load_state_dict(best[2])
    if record is not None:
        record["epochs"] = epochs
        if best is not None:
            record["best_epoch"] = best[1]
    model.eval()
    return model


def predict_proba(model: nn.Module, x: torch.Tensor, batch_size: int = 1024) -> np.ndarray:
    """The model's probabilities for ``x`` as a float64 array."""
    model.eval()
    out = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            out.append(model(x[start : start + batch_size]).softmax(dim=1).double())
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
