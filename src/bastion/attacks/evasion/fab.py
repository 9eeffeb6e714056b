"""FAB: the Fast Adaptive Boundary attack, minimal perturbations by projections on the boundary."""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.attacks._ops import distances
from bastion.attacks.evasion._minimal import (
    Best,
    MinimalAttack,
    boundary_gradients,
    candidate_classes,
    dual_size,
    project_on_plane,
)
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["FAB"]

Classes = torch.Tensor | Callable[[torch.Tensor], torch.Tensor]


@register_attack(
    "fab",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=50,
    defaults={"steps": 100},
    fast={"steps": 10},
    # minimal-perturbation attacks answer 'how small?', run when named (--attacks)
    in_scan=False,
)
class FAB(MinimalAttack):
    """Step onto the nearest linearized boundary, biased towards the input, and back off.

    Each step linearizes the model at the current point and picks the hyperplane of the class
    whose linearized boundary is nearest. It projects both the current point and the input
    onto the intersection of that hyperplane with the box of valid inputs (exactly, under L2
    or Linf), and moves to a mix of the two projections, extrapolated by ``eta``: the weight
    of the input's projection is the share of its distance in the two (at most
    ``alpha_max``), which keeps the point near the input. Once the point is fooled, it is kept
    if it is the smallest so far and moved back towards the input by the factor ``beta``.

    Untargeted (``targets=0``), the hyperplanes are those between the true class and its
    ``candidates - 1`` most likely rivals. With ``targets=k``, FAB-T: one run per target
    class, the ``k`` most likely other classes in turn, each following the hyperplane between
    the true class and its target. Under a targeted threat (``y`` holds the target labels),
    each step follows the hyperplane between the target and its strongest rival. Restarts
    after the first begin at a random point at half the smallest size found so far (or half
    of epsilon) from the input. The smallest successful point of all runs is kept.

    Minimal search under a threat's epsilon: a point found within epsilon is returned as it
    is; for a point beyond it (or none found), ``ball_steps`` projected gradient steps on the
    success margin start from its projection onto the ball. The unprojected sizes of the last
    run stay in ``minimal_distances_`` (``inf`` where none was found).

    Paper: Croce, Hein, "Minimally distorted Adversarial Examples with a Fast Adaptive
    Boundary Attack", 2020, arXiv:1907.02044.

    Threat: white-box; Linf or L2; untargeted or targeted.

    Args:
        steps: steps per run (100).
        restarts: runs per target class (or in all, untargeted); the first from the input (1).
        targets: 0 for untargeted FAB; k > 0 for FAB-T over the k most likely other classes
            (0). Ignored under a targeted threat.
        candidates: classes of untargeted FAB, the true class included (10).
        alpha_max: the largest weight of the input's projection in a step (0.1).
        eta: extrapolation of each step past the hyperplane (1.05).
        beta: the factor that moves a fooled point back towards the input (0.9).
        ball_steps: gradient steps within the epsilon ball for inputs whose minimal point lies
            beyond it (10; 0: return it, and the base class projects it).

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> attack = FAB(targets=9)  # doctest: +SKIP
        >>> result = attack.run(target, x, y, eps=0.1, norm="linf")  # doctest: +SKIP
        >>> attack.minimal_distances_.median()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 100,
        restarts: int = 1,
        targets: int = 0,
        candidates: int = 10,
        alpha_max: float = 0.1,
        eta: float = 1.05,
        beta: float = 0.9,
        ball_steps: int = 10,
    ) -> None:
        self.steps = steps
        self.restarts = restarts
        self.targets = targets
        self.candidates = candidates
        self.alpha_max = alpha_max
        self.eta = eta
        self.beta = beta
        self.ball_steps = ball_steps

    def _check_params(self) -> None:
        self._at_least(steps=1, restarts=1, targets=0, candidates=2)
        if not 0 <= self.alpha_max <= 1:
            raise ConfigError(f"alpha_max must be in [0, 1], got {self.alpha_max}")
        self._at_least(eta=1)
        if not 0 < self.beta < 1:
            raise ConfigError(f"beta must be in (0, 1), got {self.beta}")
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
        with torch.no_grad():
            clean = target(x)
        everyone = torch.arange(len(x), device=x.device)
        best.offer(everyone, best.origin, threat.goal.is_success(clean, y))
        plans: list[torch.Tensor | None]
        if threat.targeted:
            plans = [None]  # the rival is chosen anew at each step
        else:
            ranked = candidate_classes(clean, y, max(self.candidates, self.targets + 1))
            if self.targets == 0:
                plans = [ranked[:, : self.candidates]]
            else:
                last = min(self.targets + 1, ranked.shape[1])
                plans = [ranked[:, [0, k]] for k in range(1, last)]
        for plan in plans:
            for restart in range(self.restarts):
                # an input fooled as it is needs nothing smaller
                idx = (best.dist > 0).nonzero().squeeze(1)
                if len(idx) == 0:
                    return
                start = best.origin[idx]
                if restart > 0:
                    start = self._random_start(start, best.dist[idx], target, threat, generator)
                self._run(target, x.shape[1:], y, idx, plan, start, threat, best)

    def _random_start(
        self,
        origin: torch.Tensor,
        found: torch.Tensor,
        target: Target,
        threat: Threat,
        generator: torch.Generator,
    ) -> torch.Tensor:
        if threat.norm is Norm.LINF:
            noise = torch.rand(origin.shape, generator=generator) * 2 - 1
            noise = noise / noise.abs().amax(dim=1, keepdim=True).clamp_min(1e-12)
        else:
            noise = torch.randn(origin.shape, generator=generator)
            noise = noise / noise.norm(dim=1, keepdim=True).clamp_min(1e-12)
        radius = 0.5 * found.clamp(max=threat.epsilon)
        noise = noise.to(device=origin.device, dtype=origin.dtype)
        return (origin + radius[:, None] * noise).clamp(*target.bounds)

    def _run(
        self,
        target: Target,
        shape: torch.Size,
        y: torch.Tensor,
        idx: torch.Tensor,
        plan: torch.Tensor | None,
        start: torch.Tensor,
        threat: Threat,
        best: Best,
    ) -> None:
        lo, hi = target.bounds
        norm, goal = threat.norm, threat.goal
        origin, current, labels = best.origin[idx], start.clone(), y[idx]

        def classes(pos: torch.Tensor) -> Classes:
            if plan is not None:
                return plan[idx[pos]]
            wanted = labels[pos, None]

            def rival_first(scores: torch.Tensor) -> torch.Tensor:
                rival = scores.scatter(1, wanted, float("-inf")).argmax(dim=1, keepdim=True)
                return torch.cat([rival, wanted], dim=1)

            return rival_first

        def view(points: torch.Tensor) -> torch.Tensor:
            return points.view((len(points), *shape))

        everyone = torch.arange(len(idx), device=idx.device)
        for _ in range(self.steps):
            scores, diffs, grads = boundary_gradients(target, view(current), classes(everyone))
            hit = goal.is_success(scores, labels)
            best.offer(idx, current, hit)
            if bool(hit.any()):
                back = hit.nonzero().squeeze(1)
                current[back] = origin[back] + self.beta * (current[back] - origin[back])
                scores, diffs[back], grads[back] = boundary_gradients(
                    target, view(current[back]), classes(back)
                )
                best.offer(idx[back], current[back], goal.is_success(scores, labels[back]))
            size = dual_size(grads, norm)
            nearest = (diffs.abs() / size.clamp_min(1e-12)).argmin(dim=1)
            w, f = grads[everyone, nearest], diffs[everyone, nearest]
            to_plane = project_on_plane(current, w, -f, lo, hi, norm)
            offset = (w * (origin - current)).sum(dim=1)
            from_origin = project_on_plane(origin, w, -f - offset, lo, hi, norm)
            a1 = distances(to_plane, norm).clamp_min(1e-8)
            a2 = distances(from_origin, norm).clamp_min(1e-8)
            alpha = (a1 / (a1 + a2)).clamp(0, self.alpha_max)[:, None]
            moved = (1 - alpha) * (current + self.eta * to_plane)
            current = (moved + alpha * (origin + self.eta * from_origin)).clamp(lo, hi)
        with torch.no_grad():
            hit = goal.is_success(target(view(current)), labels)
        best.offer(idx, current, hit)
