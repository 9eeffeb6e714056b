"""Knockoff / Copycat model stealing: query with the adversary's own data, train a copy."""

from __future__ import annotations

import torch
from torch import nn

from bastion.attacks.extraction.base import Extraction, ExtractionLog, round_sizes
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.zoo.fit import FitSettings, build_model, fit_model

__all__ = ["KnockoffNets"]

_QUERIES = ("pool", "mixup", "uniform")
_SAMPLERS = ("adaptive", "random")


@register_attack(
    "knockoff",
    family="extraction",
    access=Access.LABELS,
    techniques=("AML.T0024.002", "AML.T0024"),
    cost=40,
    defaults={"max_queries": 2000},
    fast={"max_queries": 300, "rounds": 2, "epochs": 10},
)
class KnockoffNets(Extraction):
    """Steal a model by asking it about the adversary's own inputs and training a copy on its
    answers (its probabilities when it gives them, else its labels).

    Papers: Orekondy, Schiele, Fritz, "Knockoff Nets: Stealing Functionality of Black-Box
    Models", 2019, arXiv:1812.02766; Correia-Silva et al., "Copycat CNN", 2018,
    arXiv:1806.05476; the adaptive sampler picks the inputs the copy is least sure of, as in
    Pal et al., "ActiveThief", 2020 (AAAI).

    Threat: black box, score-based or label-only (``soft_labels=False`` reads labels only,
    whatever the target returns); a query budget.

    Args:
        max_queries: queries to spend (2000).
        queries: where queries come from: ``pool`` (the adversary's inputs, natural or
            out-of-distribution; ``mixup`` of them once the pool is spent), ``mixup`` (random
            convex mixtures of pool inputs: synthetic, near the natural data) or ``uniform``
            (synthetic inputs drawn uniformly within the bounds, no data needed) ("pool").
        sampler: ``adaptive`` (after the first round, half of each round goes to the inputs
            whose copy's top two classes are closest, half to random ones) or ``random``.
        rounds: rounds of querying, each twice the size of the one before (5).
        soft_labels: learn from the victim's probabilities when it gives them (True).
        arch: the copy's architecture: ``auto`` (a CNN for images, an MLP otherwise),
            ``mlp`` or ``cnn``.
        hidden: the MLP's width (128).
        epochs: training epochs per round (30).
        lr: learning rate (3e-3).

    Returns:
        an :class:`ExtractionResult`: the copy, its fidelity and accuracy per round.

    Example:
        >>> result = KnockoffNets(max_queries=1000).run(target, x_pool, x_eval=x, y_eval=y)
        ...  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        max_queries: int = 2000,
        queries: str = "pool",
        sampler: str = "adaptive",
        rounds: int = 5,
        soft_labels: bool = True,
        arch: str = "auto",
        hidden: int = 128,
        epochs: int = 30,
        lr: float = 3e-3,
    ) -> None:
        self.max_queries = max_queries
        self.queries = queries
        self.sampler = sampler
        self.rounds = rounds
        self.soft_labels = soft_labels
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr

    @property
    def uses_scores(self) -> bool:  # type: ignore[override]
        return self.soft_labels

    def _check_params(self) -> None:
        if self.queries not in _QUERIES:
            raise ConfigError(f"knockoff queries must be one of {', '.join(_QUERIES)}")
        if self.sampler not in _SAMPLERS:
            raise ConfigError(f"knockoff sampler must be one of {', '.join(_SAMPLERS)}")
        if self.rounds < 1 or self.max_queries < 1:
            raise ConfigError("knockoff rounds and max_queries must be at least 1")
        self.settings.check()

    @property
    def settings(self) -> FitSettings:
        return FitSettings(arch=self.arch, hidden=self.hidden, epochs=self.epochs, lr=self.lr)

    def _candidates(
        self,
        n: int,
        pool: torch.Tensor | None,
        used: torch.Tensor | None,
        shape: tuple[int, ...],
        bounds: tuple[float, float],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``n`` candidate inputs, and their indices in the pool when they come from it."""
        lo, hi = bounds
        if self.queries == "uniform" or pool is None:
            return lo + (hi - lo) * torch.rand((n, *shape), generator=generator), None
        if self.queries == "pool" and used is not None:
            free = (~used).nonzero().squeeze(1)
            if len(free) >= n:
                pick = free[torch.randperm(len(free), generator=generator)[:n]]
                return pool[pick], pick
        a = torch.randint(0, len(pool), (n,), generator=generator)
        b = torch.randint(0, len(pool), (n,), generator=generator)
        w = torch.rand((n,) + (1,) * len(shape), generator=generator)
        return w * pool[a] + (1 - w) * pool[b], None

    def _extract(
        self,
        target: Target,
        x_seed: torch.Tensor | None,
        input_shape: tuple[int, ...],
        generator: torch.Generator,
        log: ExtractionLog,
    ) -> nn.Module:
        if self.queries != "uniform" and (x_seed is None or len(x_seed) == 0):
            raise DataError(f"knockoff with queries={self.queries} needs the adversary's inputs")
        pool = x_seed.detach().float().cpu() if x_seed is not None else None
        used = torch.zeros(len(pool), dtype=torch.bool) if pool is not None else None
        xs: list[torch.Tensor] = []
        answers: list[torch.Tensor] = []
        copy: nn.Module | None = None
        ran_out = False
        for size in round_sizes(log.budget, self.rounds):
            if copy is None or self.sampler == "random":
                batch, idx = self._candidates(
                    size, pool, used, input_shape, target.bounds, generator
                )
            else:
                # twice as many candidates as needed: keep the copy's least certain half
                cand, idx = self._candidates(
                    2 * size, pool, used, input_shape, target.bounds, generator
                )
                with torch.no_grad():
                    top2 = copy(cand).softmax(dim=1).topk(2, dim=1).values
                margin = top2[:, 0] - top2[:, 1]
                keep = margin.argsort()[: size - size // 2]
                rest = torch.ones(len(cand), dtype=torch.bool)
                rest[keep] = False
                others = rest.nonzero().squeeze(1)
                others = others[torch.randperm(len(others), generator=generator)[: size // 2]]
                chosen = torch.cat([keep, others])
                batch = cand[chosen]
                idx = idx[chosen] if idx is not None else None
            if idx is not None and used is not None:
                used[idx] = True
            elif self.queries == "pool" and not ran_out:
                ran_out = True
                log.notes.append("the adversary's pool ran out: mixtures of it were asked next")
            xs.append(batch)
            answers.append(log.ask(batch.to(target.device)).cpu())
            copy = build_model(input_shape, target.num_classes, self.settings, seed=len(xs))
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            fit_model(copy, torch.cat(xs), torch.cat(answers), self.settings, seed=seed)
            log.measure(copy)
        assert copy is not None  # at least one round ran: the budget is at least 1
        return copy
