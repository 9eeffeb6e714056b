"""Carlini-Wagner L2: the smallest perturbation by optimization, with a search on its weight."""

from __future__ import annotations

import torch

from bastion.attacks.evasion._minimal import Best, MinimalAttack
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["CarliniWagnerL2"]

# inputs sit on the bounds; tanh reaches them only at infinity, so they start just inside
_INSIDE = 1 - 1e-6


@register_attack(
    "cw",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.L2,),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=60,
    # a tenth of the steps at ten times the rate: the same travel in w, and on the demo digits
    # the same median size as the paper's rate over 1000 steps (benchmarks/minimal.py)
    defaults={"binary_search_steps": 9, "steps": 100, "lr": 0.1},
    fast={"binary_search_steps": 4, "steps": 20, "lr": 0.1},
    # minimal-perturbation attacks answer 'how small?', run when named (--attacks)
    in_scan=False,
)
class CarliniWagnerL2(MinimalAttack):
    """Minimize ``||delta||_2^2 + c * max(margin, -confidence)`` with Adam, searching ``c``.

    The input is written as ``lo + (hi - lo) * (tanh(w) + 1) / 2``, so every ``w`` gives a
    point within the bounds (any bounds, not only ``[0, 1]``), and Adam optimizes ``w``. The
    margin is the threat's (for misclassification, the true class's logit less the best other
    one: the paper's f6); ``confidence`` (kappa) asks for a margin that far past the boundary.
    Each input has its own ``c``, found by a binary search: after a round of ``steps`` Adam
    steps, ``c`` halves towards the last failure if the round succeeded, and otherwise moves
    up (tenfold while no success is known). A round stops early once no input's loss has
    fallen by 0.01% over a tenth of its steps. The smallest successful point of any round is
    kept.

    Minimal search under a threat's epsilon: a point found within epsilon is returned as it
    is; for a point beyond it (or none found), ``ball_steps`` projected gradient steps on the
    success margin start from its projection onto the ball. The unprojected sizes of the last
    run stay in ``minimal_distances_`` (``inf`` where none was found).

    Paper: Carlini, Wagner, "Towards Evaluating the Robustness of Neural Networks", 2017,
    arXiv:1608.04644.

    Threat: white-box; L2; untargeted or targeted.

    Args:
        binary_search_steps: rounds of the search on ``c`` (9).
        steps: Adam steps per round (1000; scans use 100, with ``lr=0.1``).
        initial_const: the first ``c`` of every input (1e-3).
        lr: Adam's learning rate, in ``w`` (0.01).
        confidence: kappa, the margin asked for beyond the boundary (0).
        abort_early: end a round when the losses stop falling (True).
        ball_steps: gradient steps within the epsilon ball for inputs whose minimal point lies
            beyond it (10; 0: return it, and the base class projects it).

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> attack = CarliniWagnerL2(steps=100)  # doctest: +SKIP
        >>> result = attack.run(target, x, y, eps=1.0, norm="l2")  # doctest: +SKIP
        >>> attack.minimal_distances_.median()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        binary_search_steps: int = 9,
        steps: int = 1000,
        initial_const: float = 1e-3,
        lr: float = 0.01,
        confidence: float = 0.0,
        abort_early: bool = True,
        ball_steps: int = 10,
    ) -> None:
        self.binary_search_steps = binary_search_steps
        self.steps = steps
        self.initial_const = initial_const
        self.lr = lr
        self.confidence = confidence
        self.abort_early = abort_early
        self.ball_steps = ball_steps

    def _check_params(self) -> None:
        self._at_least(binary_search_steps=1, steps=1)
        if self.initial_const <= 0:
            raise ConfigError(f"initial_const must be positive, got {self.initial_const}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        self._at_least(confidence=0)
        self._check_ball_steps()

    def _minimize(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        best: Best,
    ) -> None:
        lo, hi = target.bounds
        half = (hi - lo) / 2
        n = len(x)
        todo = torch.arange(n, device=x.device)
        w0 = torch.atanh(((x - lo) / half - 1).clamp(-_INSIDE, _INSIDE))
        const = torch.full((n,), self.initial_const, dtype=x.dtype, device=x.device)
        lower = torch.zeros_like(const)
        upper = torch.full_like(const, float("inf"))
        check = max(self.steps // 10, 1)
        for _ in range(self.binary_search_steps):
            w = w0.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([w], lr=self.lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x.device)
            for i in range(self.steps):
                with torch.enable_grad():
                    point = lo + half * (torch.tanh(w) + 1)
                    margin = threat.goal.margin(target(point), y)
                    size = (point - x).flatten(1).pow(2).sum(dim=1)
                    loss = size + const * margin.clamp_min(-self.confidence)
                if i == 0:
                    before = loss.detach()
                hit = margin.detach() <= -self.confidence
                best.offer(todo, point.detach(), hit)
                succeeded |= hit
                # the gradient of w alone: the model's own .grad stays untouched
                (w.grad,) = torch.autograd.grad(loss.sum(), w)
                optimizer.step()
                if self.abort_early and (i + 1) % check == 0:
                    now = loss.detach()
                    if not bool((now < before - 1e-4 * before.abs()).any()):
                        break
                    before = now
            # the search on c: down towards the last failure after a success, else up
            upper = torch.where(succeeded, torch.minimum(upper, const), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, const))
            known = torch.isfinite(upper)
            const = torch.where(known, (lower + upper) / 2, const * 10)
