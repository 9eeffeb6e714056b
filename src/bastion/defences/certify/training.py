"""Training under Gaussian noise, the base classifier randomized smoothing needs."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets import Target, TorchTarget
from bastion.core.threat import Access
from bastion.defences.base import Trainer
from bastion.defences.certify.smoothing import SmoothedClassifier, _check_sigma
from bastion.defences.training._common import like, split_data, torch_module

__all__ = ["GaussianAugmentation"]

ProgressFn = Callable[[int, int, dict[str, Any]], None]


@register_defence(
    "smoothing",
    family="evasion",
    defence_kind="trainer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0043", "AML.T0043.000", "AML.T0015"),
    mitigations=("AID-H-016", "AML.M0003"),
    data_kinds=("image", "tabular"),
    fast={"epochs": 1},
)
class GaussianAugmentation(Trainer):
    """Train a model on inputs with Gaussian noise, and return it smoothed: a classifier with
    certified L2 robustness (randomized smoothing).

    Paper: Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized
    Smoothing", 2019, arXiv:1902.02918.

    Smoothing certifies any base model, but the certificate is only as large as the base
    model is right under the noise it votes over; a model trained on clean inputs is mostly
    wrong at useful noise levels. So the base model is trained, batch by batch, on inputs
    with noise ``N(0, (sigma * (high - low))^2)`` added: ``sigma`` is relative to the input
    range of the target's bounds (``sigma=0.25`` on [0, 1] images is a standard deviation of
    0.25; on [0, 255] images, of 63.75), the same noise the returned classifier votes over.
    Noisy inputs are not clipped to the bounds, as in the paper.

    Threat: L2-bounded evasion (AML.T0043); needs the PyTorch model and labelled training data.

    Args:
        sigma: noise level relative to the input range (0.25).
        epochs: training epochs (20).
        lr: Adam's learning rate (1e-3).
        batch_size: batch size (64).
        seed: seeds the noise, the batch order, and the weights when re-initialized (0).
        from_scratch: re-initialize the weights and train afresh (True), or fine-tune the
            given model under noise (False, the default: faster, and as good on small data).

    ``fit(target, (x, y))`` (or a :class:`~bastion.data.Dataset`, its training split)
    returns a :class:`SmoothedClassifier` at the same ``sigma`` around the noise-trained
    model, which is ``base_`` (the input's model is not changed); ``history_`` has a record
    per epoch, ``seconds_`` the training time. Certify with
    :meth:`SmoothedClassifier.certify`, or report with
    :func:`bastion.assess.certification.assess_certification`.

    Example::

        smoothed = GaussianAugmentation(sigma=0.25).fit(target, data)
        cert = smoothed.certify(x_test, n0=100, n=1000, alpha=0.001)
    """

    def __init__(
        self,
        *,
        sigma: float = 0.25,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
        from_scratch: bool = False,
    ) -> None:
        self.sigma = sigma
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed
        self.from_scratch = from_scratch

    def _check_params(self) -> None:
        _check_sigma(self.sigma)
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError(
                f"smoothing epochs and batch_size must be at least 1, "
                f"got {self.epochs} and {self.batch_size}"
            )
        if not self.lr > 0:
            raise ConfigError(f"smoothing lr must be positive, got {self.lr}")

    def fit(
        self,
        target: Target,
        data: Any,
        *,
        progress: ProgressFn | None = None,
        checkpoint: str | Path | None = None,
    ) -> SmoothedClassifier:
        """Train a copy of ``target``'s model under noise and return it smoothed.

        Args:
            target: a PyTorch target; its architecture, bounds and normalization are kept.
            data: ``(x, y)`` arrays or a :class:`~bastion.data.Dataset` (its training split).
            progress: called after every epoch with ``(epoch, epochs, record)``; the record
                (also kept in ``history_``) has the epoch's loss and training accuracy on
                the noisy inputs, and its seconds.
            checkpoint: accepted for the call the adversarial trainers share, and unused:
                training under noise costs what plain training does (seconds on the demos).
        """
        del checkpoint
        self._check_params()
        started = time.perf_counter()
        module = copy.deepcopy(torch_module(target))
        assert isinstance(target, TorchTarget)  # torch_module() checked it
        x, y = split_data(data)
        work = like(target, module, f"{target.name}+noise-trained")
        device = work.device
        xt = torch.from_numpy(x).to(device)
        yt = torch.from_numpy(y).to(device)
        scale = self.sigma * (target.bounds[1] - target.bounds[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            if self.from_scratch:
                for m in module.modules():
                    reset = getattr(m, "reset_parameters", None)
                    if callable(reset) and m is not module:
                        reset()
            self._train(work, module, xt, yt, scale, progress)
        self.base_ = work
        self.seconds_ = time.perf_counter() - started
        return SmoothedClassifier(work, self.sigma, seed=self.seed, name=f"{target.name}+smoothing")

    def _train(
        self,
        work: TorchTarget,
        module: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        scale: float,
        progress: ProgressFn | None,
    ) -> None:
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        loss_fn = nn.CrossEntropyLoss()
        self.history_: list[dict[str, Any]] = []
        module.train()
        try:
            for epoch in range(self.epochs):
                began = time.perf_counter()
                total, hits = 0.0, 0
                order = torch.randperm(len(x), generator=gen).to(x.device)
                for start in range(0, len(x), self.batch_size):
                    idx = order[start : start + self.batch_size]
                    noise = torch.randn((len(idx), *x.shape[1:]), generator=gen)
                    opt.zero_grad()
                    # through the target's own preprocessing, as the smoothed classifier asks it
                    out = work._forward(x[idx] + scale * noise.to(x.device, x.dtype))
                    loss = loss_fn(out, y[idx])
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                    hits += int((out.argmax(dim=1) == y[idx]).sum())
                record: dict[str, Any] = {
                    "epoch": epoch + 1,
                    "loss": total / len(x),
                    "train_accuracy": hits / len(x),
                    "seconds": time.perf_counter() - began,
                }
                self.history_.append(record)
                if progress is not None:
                    progress(epoch + 1, self.epochs, record)
        finally:
            module.eval()
