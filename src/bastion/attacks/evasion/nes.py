"""NES: score-based black-box evasion by gradients estimated from queries."""

from __future__ import annotations

import math

import torch

from bastion.attacks._ops import distances, project
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, OutputKind, Threat

__all__ = ["NES"]

# inputs per call to the target: one estimate asks for many at once
_BATCH = 1024


@register_attack(
    "nes",
    family="evasion",
    access=Access.SCORES,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.001", "AML.T0043", "AML.T0015"),
    cost=85,
    defaults={"max_queries": 1000},
    fast={"max_queries": 150, "samples": 10},
    # Square stands for the score-based adversary in a scan; NES is run when named
    in_scan=False,
)
class NES(Attack):
    """Projected gradient descent on the score margin, its gradient estimated from queries.

    Each step estimates the gradient of the margin between the true class and the best
    other one (log-probabilities for probability outputs) by natural evolution strategies:
    the margin is read at pairs of points a small Gaussian step either side of the current
    one (antithetic sampling, which cancels the estimate's even-order error), and their
    differences weight the step directions. The current point then moves against the
    estimate (its sign under Linf, its direction under L2) and back into the epsilon ball.
    An input stops as soon as a point within epsilon is misclassified.

    Paper: Ilyas, Engstrom, Athalye, Lin, "Black-box Adversarial Attacks with Limited Queries
    and Information", 2018, arXiv:1804.08598.

    Threat: score-based black-box (logits or probabilities); Linf or L2; untargeted or
    targeted.

    Args:
        max_queries: the most queries per input, the initial one included (1000). A threat's
            ``queries_per_input`` lowers it. Each step costs ``2 * samples + 1``.
        samples: antithetic pairs per gradient estimate (25).
        sigma: the probes' standard deviation per feature, as a share of the input range
            (0.001).
        step_size: each step's size as a fraction of epsilon (0.3).

    Returns: an :class:`~bastion.core.results.AttackResult` with ``queries_per_sample``.

    Example:
        >>> result = NES(max_queries=2000).run(target, x, y, eps=0.1)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        max_queries: int = 1000,
        samples: int = 25,
        sigma: float = 0.001,
        step_size: float = 0.3,
    ) -> None:
        self.max_queries = max_queries
        self.samples = samples
        self.sigma = sigma
        self.step_size = step_size

    def _check_params(self) -> None:
        self._at_least(max_queries=1, samples=1)
        for name in ("sigma", "step_size"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}")

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        budget = self.queries_per_input(threat)
        eps, norm = threat.epsilon, threat.norm
        lo, hi = target.bounds
        n = len(x)
        flat = x.reshape(n, -1)
        d = flat.shape[1]
        sigma = self.sigma * (hi - lo)
        step = self.step_size * eps
        spent = torch.zeros(n, dtype=torch.long, device=x.device)

        def margin_of(points: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                scores = target.outputs(points.view(-1, *x.shape[1:]), batch_size=_BATCH)
            spent.index_add_(0, owners, torch.ones_like(owners))
            if target.output_kind is OutputKind.PROBABILITIES:
                # on a softmax output, log-probability margins equal logit margins
                scores = scores.clamp_min(1e-30).log()
            return threat.goal.margin(scores, y[owners]).to(device=x.device, dtype=torch.float64)

        cur = flat.clone()
        best = flat.clone()
        everyone = torch.arange(n, device=x.device)
        margin = margin_of(cur, everyone)
        while True:
            # an input goes on while unfooled and able to pay for a pair and the check
            pairs = ((budget - spent - 1) // 2).clamp(max=self.samples)
            idx = ((margin > 0) & (pairs >= 1)).nonzero().squeeze(1)
            if len(idx) == 0:
                break
            m, k, count = len(idx), int(pairs[idx].max()), pairs[idx]
            u = torch.randn((m, k, d), generator=generator).to(device=x.device, dtype=x.dtype)
            valid = torch.arange(k, device=x.device)[None, :] < count[:, None]
            owners = idx[:, None].expand(m, k)[valid]
            here = cur[idx][:, None]
            plus = (here + sigma * u).clamp(lo, hi)[valid]
            minus = (here - sigma * u).clamp(lo, hi)[valid]
            probes = torch.cat([plus, minus])
            both = torch.cat([owners, owners])
            found = margin_of(probes, both)
            diff = torch.zeros((m, k), dtype=torch.float64, device=x.device)
            diff[valid] = found[: len(owners)] - found[len(owners) :]
            grad = (diff.to(x.dtype)[:, :, None] * u).sum(dim=1)  # the 1 / (2 sigma n) aside
            # a probe the target misclassifies, within epsilon, already ends its input
            won = (found <= 0) & (distances(probes - flat[both], norm) <= eps)
            if bool(won.any()):
                hits = _first_of_each(both, won)
                best[both[hits]] = probes[hits]
                margin[both[hits]] = found[hits]
            sel = margin[idx] > 0
            move, grad = idx[sel], grad[sel]
            if len(move) == 0:
                continue
            if norm is Norm.LINF:
                direction = grad.sign()
            else:
                direction = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
            moved = flat[move] + project(cur[move] - step * direction - flat[move], norm, eps)
            cur[move] = moved.clamp(lo, hi)
            afford = (budget - spent[move]) >= 1
            move = move[afford]
            if len(move) == 0:
                continue
            new = margin_of(cur[move], move)
            better = new < margin[move]
            best[move[better]] = cur[move[better]]
            margin[move[better]] = new[better]
        log.queries_per_sample = spent.cpu()
        return best.view_as(x)


def _first_of_each(owners: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Positions of the first entry where ``mask`` holds, for each owner that has one."""
    pos = mask.nonzero().squeeze(1)
    pos = pos[owners[pos].argsort(stable=True)]
    keep = torch.ones_like(pos, dtype=torch.bool)
    keep[1:] = owners[pos[1:]] != owners[pos[:-1]]
    return pos[keep]
