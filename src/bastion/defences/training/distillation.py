"""Defensive distillation (Papernot 2016), faithfully: a defence whose robustness is mostly
an artefact of vanishing gradients, kept here so the evaluation can show it for what it is."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets import Target, TorchTarget
from bastion.core.threat import Access
from bastion.defences.base import Trainer
from bastion.defences.training._common import like, split_data, torch_module
from bastion.defences.training.adversarial import reinit

__all__ = ["DefensiveDistillation"]

ProgressFn = Callable[[int, int, dict[str, Any]], None]


@register_defence(
    "distill",
    family="evasion",
    defence_kind="trainer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0043",),
    mitigations=("AML.M0003",),
    data_kinds=("image", "tabular"),
    defaults={"temperature": 100.0},
    fast={"epochs": 1},
)
class DefensiveDistillation(Trainer):
    """Defensive distillation: train a teacher at a high softmax temperature, then a student
    of the same architecture on the teacher's soft labels at that temperature.

    Paper: Papernot, McDaniel, Wu, Jha, Swami, "Distillation as a Defense to Adversarial
    Perturbations against Deep Neural Networks", 2016, arXiv:1511.04508. The student is
    deployed at temperature 1, so its logits are about ``temperature`` times larger than a
    normally trained model's and its softmax saturates: the gradient of the cross-entropy
    vanishes in floating point and gradient attacks on that loss stall. Carlini and Wagner
    ("Defensive Distillation is Not Robust to Adversarial Examples", 2016, arXiv:1607.04311)
    showed that attacks on the logits, or on a loss that ignores their scale, succeed as
    before. bastion's evaluation uses such losses (DLR, margin) and probes for vanishing
    gradients, so its figure for a distilled model is close to the undefended one, while
    plain cross-entropy PGD overstates it: the hardening report sets the two side by side.

    Threat: evasion, white-box; this defence does not stop it.

    Args:
        temperature: the softmax temperature of both trainings (100, as in the paper's MNIST
            experiments).
        epochs: epochs of each of the two trainings (20).
        lr: Adam's learning rate (1e-3).
        batch_size: samples per step (64).
        seed: seed of the weights and the batch order (0).

    ``fit(target, data)`` returns the student (the input's model is not changed).

    Example::

        distilled = DefensiveDistillation(temperature=100).fit(target, dataset)
    """

    def __init__(
        self,
        *,
        temperature: float = 100.0,
        epochs: int = 20,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.temperature = temperature
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def _check_params(self) -> None:
        if not self.temperature >= 1:
            raise ConfigError(f"temperature must be at least 1, got {self.temperature}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ConfigError("epochs and batch_size must be at least 1")
        if not self.lr > 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")

    def fit(
        self, target: Target, data: Any, *, progress: ProgressFn | None = None, **_: Any
    ) -> TorchTarget:
        self._check_params()
        base = torch_module(target)
        assert isinstance(target, TorchTarget)  # torch_module() checked it
        x_np, y_np = split_data(data)
        device = target.device
        x = torch.from_numpy(x_np).to(device)
        y = torch.from_numpy(y_np).to(device)
        began = time.perf_counter()
        total = 2 * self.epochs
        done = [0]

        def tick(stage: str, loss: float) -> None:
            done[0] += 1
            if progress is not None:
                progress(done[0], total, {"stage": stage, "loss": loss})

        teacher = reinit(copy.deepcopy(base), self.seed)
        norm = like(target, teacher, "teacher")._normalize
        hard = lambda out, idx: F.cross_entropy(out, y[idx])  # noqa: E731
        self._train(teacher, norm, x, hard, tick, "teacher")
        with torch.no_grad():
            teacher.eval()
            soft = torch.cat(
                [
                    F.softmax(teacher(norm(x[i : i + 512])) / self.temperature, dim=1)
                    for i in range(0, len(x), 512)
                ]
            )
        student = reinit(copy.deepcopy(base), self.seed + 1)
        self._train(
            student,
            norm,
            x,
            lambda out, idx: -(soft[idx] * F.log_softmax(out, dim=1)).sum(1).mean(),
            tick,
            "student",
        )
        student.eval()
        self.seconds_ = time.perf_counter() - began
        return like(target, student, f"{target.name}+distill")

    def _train(
        self,
        module: nn.Module,
        norm: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        tick: Callable[[str, float], None],
        stage: str,
    ) -> None:
        """Train at the temperature: the logits are divided by it before the loss."""
        opt = torch.optim.Adam(module.parameters(), lr=self.lr)
        gen = torch.Generator().manual_seed(self.seed)
        module.train()
        for _ in range(self.epochs):
            perm = torch.randperm(len(x), generator=gen).to(x.device)
            total = 0.0
            for i in range(0, len(perm), self.batch_size):
                idx = perm[i : i + self.batch_size]
                loss = loss_fn(module(norm(x[idx])) / self.temperature, idx)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(loss.detach()) * len(idx)
            tick(stage, total / len(x))
        module.eval()
