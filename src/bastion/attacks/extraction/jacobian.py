"""Jacobian-based dataset augmentation: grow a few seed inputs towards the victim's boundaries."""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.extraction.base import Extraction, ExtractionLog
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.zoo.fit import FitSettings, build_model, fit_model

__all__ = ["JacobianAugmentation"]


@register_attack(
    "jacobian",
    family="extraction",
    access=Access.LABELS,
    techniques=("AML.T0024.002", "AML.T0024"),
    cost=45,
    defaults={"max_queries": 2000},
    fast={"max_queries": 300, "seed_size": 40, "epochs": 10},
)
class JacobianAugmentation(Extraction):
    """Steal a model from a few seed inputs and the victim's labels: train a copy, step each
    input along the sign of the copy's gradient for the victim's label, ask the victim about
    the new inputs, and repeat; each round doubles the set, towards the decision boundaries.

    Paper: Papernot, McDaniel, Goodfellow, Jha, Celik, Swami, "Practical Black-Box Attacks
    against Machine Learning", 2017, arXiv:1602.02697.

    Threat: label-only black box (it never reads scores); a query budget; a few inputs of the
    task (the seed).

    Args:
        max_queries: queries to spend (2000).
        seed_size: seed inputs taken from the adversary's inputs (100).
        step: the augmentation step, as a share of the input range (0.1); its sign flips
            every ``flip_every`` rounds, as in the paper, so the set does not leave the data.
        flip_every: rounds between flips of the step's sign (3).
        arch, hidden, epochs, lr: the copy and its training per round (see ``knockoff``).

    Returns:
        an :class:`ExtractionResult`.
    """

    uses_scores = False

    def __init__(
        self,
        *,
        max_queries: int = 2000,
        seed_size: int = 100,
        step: float = 0.1,
        flip_every: int = 3,
        arch: str = "auto",
        hidden: int = 128,
        epochs: int = 30,
        lr: float = 3e-3,
    ) -> None:
        self.max_queries = max_queries
        self.seed_size = seed_size
        self.step = step
        self.flip_every = flip_every
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr

    @property
    def settings(self) -> FitSettings:
        return FitSettings(arch=self.arch, hidden=self.hidden, epochs=self.epochs, lr=self.lr)

    def _check_params(self) -> None:
        if self.seed_size < 1 or self.max_queries < 1 or self.flip_every < 1:
            raise ConfigError("jacobian seed_size, max_queries and flip_every must be at least 1")
        if not 0 < self.step < 1:
            raise ConfigError(f"jacobian step is a share of the input range in (0, 1): {self.step}")
        self.settings.check()

    def _extract(
        self,
        target: Target,
        x_seed: torch.Tensor | None,
        input_shape: tuple[int, ...],
        generator: torch.Generator,
        log: ExtractionLog,
    ) -> nn.Module:
        if x_seed is None or len(x_seed) == 0:
            raise DataError("jacobian augmentation needs a few seed inputs of the task")
        lo, hi = target.bounds
        pick = torch.randperm(len(x_seed), generator=generator)[: min(self.seed_size, log.left)]
        x = x_seed.detach().float().cpu()[pick]
        y = log.ask(x.to(target.device)).cpu()
        copy: nn.Module | None = None
        rounds = 0
        while True:
            copy = build_model(input_shape, target.num_classes, self.settings, seed=rounds)
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            fit_model(copy, x, y, self.settings, seed=seed)
            log.measure(copy)
            if log.left < 1:
                break
            sign = -1.0 if (rounds // self.flip_every) % 2 else 1.0
            # the newest inputs first: they lie nearest the boundaries found so far
            base = x.flip(0)[: log.left]
            grown = self._augment(copy, base, y.flip(0)[: log.left], sign, lo, hi)
            x = torch.cat([x, grown])
            y = torch.cat([y, log.ask(grown.to(target.device)).cpu()])
            rounds += 1
        return copy

    def _augment(
        self, copy: nn.Module, x: torch.Tensor, y: torch.Tensor, sign: float, lo: float, hi: float
    ) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            logits = copy(x)
            picked = logits.gather(1, y.view(-1, 1)).sum()
            (grad,) = torch.autograd.grad(picked, x)
        return (x.detach() + sign * self.step * (hi - lo) * grad.sign()).clamp(lo, hi)
