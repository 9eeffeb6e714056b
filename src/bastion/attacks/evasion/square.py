"""Square Attack: score-based black-box evasion by random square updates."""

from __future__ import annotations

import math

import torch

from bastion.attacks.base import Attack, RunLog
from bastion.core.criteria import Criterion
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, OutputKind, Threat

__all__ = ["SquareAttack"]

# The fraction of pixels changed shrinks as queries are spent: halved at these points of a
# 10,000-query run (Andriushchenko et al., section 3), scaled to the budget in hand.
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """View a batch as (N, C, H, W): tabular rows become 1 x 1 x D images."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], 1, 1, -1)


@register_attack(
    "square",
    family="evasion",
    access=Access.SCORES,
    norms=(Norm.LINF,),
    techniques=("AML.T0043.001", "AML.T0043", "AML.T0015"),
    cost=80,
    defaults={"max_queries": 1000},
    fast={"max_queries": 150},
)
class SquareAttack(Attack):
    """Random search over squares at the corners of the Linf ball, using scores only.

    Each step picks a random square window and sets it to a random corner of the epsilon ball
    (one sign per channel), keeping the change when the margin between the true class and the
    best other class falls. The window shrinks on a fixed schedule. Tabular inputs are treated
    as one row of features, windows as runs of neighbouring features.

    Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient
    black-box adversarial attack via random search", 2020, arXiv:1912.00049.

    Threat: score-based black-box (logits or probabilities); Linf; untargeted or targeted.

    Args:
        max_queries: the most queries per input, the initial one included (1000). A threat's
            ``queries_per_input`` lowers it.
        p_init: the fraction of features the first windows cover (0.1).

    Returns: an :class:`~bastion.core.results.AttackResult` with ``queries_per_sample``.

    Example:
        >>> result = SquareAttack(max_queries=500).run(target, x, y, eps=0.1)  # doctest: +SKIP
    """

    def __init__(self, *, max_queries: int = 1000, p_init: float = 0.1) -> None:
        self.max_queries = max_queries
        self.p_init = p_init

    def _check_params(self) -> None:
        if self.max_queries < 1:
            raise ConfigError(f"max_queries must be at least 1, got {self.max_queries}")
        if not 0 < self.p_init <= 1:
            raise ConfigError(f"p_init must be in (0, 1], got {self.p_init}")

    def _fraction(self, iteration: int, budget: int) -> float:
        point = int(iteration / budget * 10000)
        halvings = sum(point > s for s in _SCHEDULE)
        return float(self.p_init) / float(2**halvings)

    @staticmethod
    def _margin(
        target: Target, scores: torch.Tensor, y: torch.Tensor, goal: Criterion
    ) -> torch.Tensor:
        if target.output_kind is OutputKind.PROBABILITIES:
            # on a softmax output, log-probability margins equal logit margins
            scores = scores.clamp_min(1e-30).log()
        return goal.margin(scores, y)

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        eps = threat.epsilon
        budget = self.max_queries
        if threat.queries_per_input is not None:
            budget = min(budget, threat.queries_per_input)
        lo, hi = target.bounds
        n = len(x)
        img = _as_image(x)
        _, c, h, w = img.shape

        def signs(*shape: int) -> torch.Tensor:
            draw = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8)
            return (draw.to(img.dtype) * 2 - 1).to(img.device)

        # start at vertical stripes: one random corner of the ball per column and channel
        best = (img + eps * signs(n, c, 1, w)).clamp(lo, hi)
        with torch.no_grad():
            margin = self._margin(target, target(best.view_as(x)), y, threat.goal)
        spent = torch.ones(n, dtype=torch.long)
        rows = torch.arange(h, device=img.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=img.device).view(1, 1, 1, w)
        for i in range(1, budget):
            todo = (margin > 0).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            p = self._fraction(i, budget)
            if h == 1:
                sh, sw = 1, min(max(round(p * w), 1), w)
            else:
                side = min(max(round(math.sqrt(p * h * w)), 1), h - 1 if h > 1 else 1, w)
                sh = sw = side
            k = len(todo)
            top = torch.randint(0, h - sh + 1, (k,), generator=generator).to(img.device)
            left = torch.randint(0, w - sw + 1, (k,), generator=generator).to(img.device)
            window = (
                (rows >= top.view(-1, 1, 1, 1))
                & (rows < (top + sh).view(-1, 1, 1, 1))
                & (cols >= left.view(-1, 1, 1, 1))
                & (cols < (left + sw).view(-1, 1, 1, 1))
            )
            x0, cur = img[todo], best[todo]
            corner = eps * signs(k, c, 1, 1)
            cand = torch.where(window, (x0 + corner).clamp(lo, hi), cur)
            # a window already at that corner would waste the query: flip it to the other one
            same = ((cand - cur).abs() * window).flatten(1).amax(dim=1) < 1e-7
            if bool(same.any()):
                flipped = torch.where(window, (x0 - corner).clamp(lo, hi), cur)
                cand = torch.where(same.view(-1, 1, 1, 1), flipped, cand)
            with torch.no_grad():
                new = self._margin(
                    target, target(cand.view((k, *x.shape[1:]))), y[todo], threat.goal
                )
            spent[todo.cpu()] += 1
            better = new < margin[todo]
            best[todo[better]] = cand[better]
            margin[todo[better]] = new[better]
        log.queries_per_sample = spent
        return best.view_as(x)
