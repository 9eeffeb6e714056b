"""Reconnaissance of a black-box endpoint: what it accepts and what it gives away."""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from bastion.attacks.base import Configurable
from bastion.core.errors import BastionError, ConfigError, DataError, QueryBudgetExceeded
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access

__all__ = ["ReconResult", "Reconnaissance"]


@dataclass
class ReconResult:
    """What a few queries revealed about an endpoint.

    Attributes:
        output_kind: ``labels``, ``top-k`` (k scores, the rest zero), ``probabilities`` or
            ``logits``, as the answers look.
        num_classes: classes seen: the width of the score vector, or the distinct labels.
        decimals: the digits the scores are rounded to (None: not rounded to 6 or fewer).
        top_k: how many scores are non-zero per answer, when fewer than the classes.
        deterministic: whether asking twice gives the same answer (noise is a defence, and
            makes gradient estimates and equation solving harder).
        input_shape: the per-sample shape the endpoint answered.
        accepts_flat: whether it also answers the same inputs flattened (None: not tried).
        accepts_out_of_range: whether it answers inputs outside the declared bounds (False:
            it validates them).
        sensitive: whether its answers change when the input does (a constant model says
            nothing).
        queries_per_second: answered inputs per second over a burst of single queries.
        throttled: whether the burst met refusals or a marked slowdown (a rate limit).
        queries: queries spent.
        notes: what each probe found, in words.
    """

    output_kind: str
    num_classes: int
    decimals: int | None
    top_k: int | None
    deterministic: bool
    input_shape: tuple[int, ...]
    accepts_flat: bool | None
    accepts_out_of_range: bool | None
    sensitive: bool
    queries_per_second: float
    throttled: bool
    queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["input_shape"] = list(self.input_shape)
        return out

    def suggests(self) -> list[str]:
        """The attack families these answers leave open, in words."""
        out = []
        if self.output_kind in ("probabilities", "logits") and self.decimals is None:
            out.append(
                "full-precision scores: equation-solving extraction, score-based evasion and "
                "loss-based membership inference all apply"
            )
        elif self.output_kind != "labels":
            out.append("hardened scores: score-based attacks lose precision; label-only ones apply")
        else:
            out.append("labels only: label-only extraction, evasion and membership inference")
        if not self.throttled:
            out.append("no rate limit met: thousands of queries are cheap")
        return out


@register_attack(
    "recon",
    family="recon",
    access=Access.LABELS,
    techniques=("AML.T0013", "AML.T0014"),
    cost=1,
    defaults={"max_queries": 64},
    fast={"max_queries": 32},
)
class Reconnaissance(Configurable):
    """Learn from a few queries what a black box accepts and returns: the output kind (labels,
    top-k, probabilities, logits), the classes, any rounding of the scores, whether answers
    are random, whether the input bounds are enforced, and whether a burst meets a rate limit.

    The adversary's first step (MITRE ATLAS AML.T0013 Discover ML Model Ontology, AML.T0014
    Discover ML Model Family); what it finds says which attacks follow (Tramer et al. 2016,
    arXiv:1609.02943, section 3, on what prediction APIs return).

    Threat: any black box; a handful of queries.

    Args:
        max_queries: the most queries to spend (64); at least 16.
        burst: single queries timed one after another to look for a rate limit (8).

    Returns:
        a :class:`ReconResult`.

    Example:
        >>> Reconnaissance().run(target, x[:4]).output_kind  # doctest: +SKIP
        'probabilities'
    """

    def __init__(self, *, max_queries: int = 64, burst: int = 8) -> None:
        self.max_queries = max_queries
        self.burst = burst

    def _check_params(self) -> None:
        if self.max_queries < 16:
            raise ConfigError(f"recon needs at least 16 queries, got {self.max_queries}")
        if not 1 <= self.burst <= self.max_queries // 2:
            raise ConfigError(f"recon burst must be between 1 and max_queries/2: {self.burst}")

    def run(self, target: Target, x: torch.Tensor | None = None, *, seed: int = 0) -> ReconResult:
        """Probe ``target``, starting from example inputs ``x`` (or random ones within its
        bounds when it declares an input shape)."""
        self.entry.require(access=target.access, norm=None, target=target.name)
        self._check_params()
        gen = torch.Generator().manual_seed(seed)
        lo, hi = target.bounds
        if x is None:
            if target.input_shape is None:
                raise DataError(f"{target.name} declares no input shape: give example inputs")
            x = lo + (hi - lo) * torch.rand((4, *target.input_shape), generator=gen)
        x = x.detach().float()[:4]
        started = time.perf_counter()
        before = target.queries
        budget = self.max_queries
        if target.queries_left is not None:
            budget = min(budget, target.queries_left)
        if budget < 16:
            raise QueryBudgetExceeded(f"{target.name} has fewer than 16 queries left for recon")
        notes: list[str] = []

        # 1. plain answers, twice: the output kind, rounding, top-k, randomness
        random_x = lo + (hi - lo) * torch.rand((4, *x.shape[1:]), generator=gen)
        probe = torch.cat([x, random_x])
        first = target(probe).detach().cpu()
        second = target(probe).detach().cpu()
        deterministic = bool(torch.equal(first, second))
        if not deterministic:
            notes.append("the same inputs got different answers: the outputs are randomized")
        kind, num_classes, decimals, top_k = _read_outputs(first)
        rounded = f" rounded to {decimals} digits" if decimals is not None else ""
        notes.append(f"answers look like {kind}{rounded}")
        sensitive = not bool((first == first[:1]).all())
        if not sensitive:
            notes.append("every probe got the same answer: the model may ignore its inputs")

        # 2. the input contract: flattened inputs, values outside the bounds
        accepts_flat = None
        if len(x.shape) > 2:
            accepts_flat = _answers(target, probe[:1].reshape(1, -1))
        span = hi - lo
        accepts_out = _answers(target, (probe[:1] + 2 * span).clone())
        notes.append(
            "inputs outside the declared bounds are answered (no validation)"
            if accepts_out
            else "inputs outside the declared bounds are refused"
        )

        # 3. a burst of single queries: throughput and signs of a rate limit
        times: list[float] = []
        refused = 0
        for i in range(self.burst):
            t0 = time.perf_counter()
            try:
                target(probe[i % len(probe)].unsqueeze(0))
            except QueryBudgetExceeded:
                raise
            except BastionError:
                refused += 1
            times.append(time.perf_counter() - t0)
        half = max(1, len(times) // 2)
        early, late = statistics.median(times[:half]), statistics.median(times[half:] or times)
        throttled = refused > 0 or late > 3 * early + 0.05
        if throttled:
            notes.append(f"the burst met {refused} refusals and slowed {late / early:.1f}x")
        return ReconResult(
            output_kind=kind,
            num_classes=num_classes,
            decimals=decimals,
            top_k=top_k,
            deterministic=deterministic,
            input_shape=tuple(int(d) for d in x.shape[1:]),
            accepts_flat=accepts_flat,
            accepts_out_of_range=accepts_out,
            sensitive=sensitive,
            queries_per_second=len(times) / max(sum(times), 1e-9),
            throttled=throttled,
            queries=target.queries - before,
            seconds=time.perf_counter() - started,
            notes=notes,
        )

    __call__ = run


def _answers(target: Target, x: torch.Tensor) -> bool:
    try:
        target(x)
    except QueryBudgetExceeded:
        raise
    except BastionError:
        return False
    return True


def _read_outputs(out: torch.Tensor) -> tuple[str, int, int | None, int | None]:
    """(kind, classes, decimals, top-k) as the answers show them."""
    if out.ndim == 1:
        return "labels", max(int(out.max()) + 1, len(torch.unique(out))), None, None
    out = out.double()
    classes = int(out.shape[1])
    nonneg = bool((out >= 0).all())
    sums_to_one = bool(((out.sum(dim=1) - 1).abs() < 1e-3).all())
    decimals = None
    for d in range(0, 7):
        if bool(((out * 10**d - (out * 10**d).round()).abs() < 1e-4).all()):
            decimals = d
            break
    nonzero = (out != 0).sum(dim=1)
    # top-k zeroes the same number of classes in every answer; rounding zeroes a varying number
    same_count = bool((nonzero == nonzero[0]).all())
    top_k = int(nonzero[0]) if nonneg and same_count and int(nonzero[0]) < classes else None
    if top_k is not None:
        kind = "top-k"
    elif nonneg and (sums_to_one or decimals is not None):
        kind = "probabilities"
    else:
        kind = "logits"
    return kind, classes, decimals, top_k
