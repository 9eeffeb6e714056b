"""DeepFool: steps to the nearest linearized decision boundary."""

from __future__ import annotations

import torch

from bastion.attacks.evasion._minimal import (
    Best,
    MinimalAttack,
    boundary_gradients,
    candidate_classes,
    dual_size,
)
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["DeepFool"]


@register_attack(
    "deepfool",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=15,
    defaults={"steps": 50, "candidates": 10},
    fast={"steps": 50, "candidates": 10},
    # minimal-perturbation attacks answer 'how small?', run when named (--attacks)
    in_scan=False,
)
class DeepFool(MinimalAttack):
    """Walk to the nearest decision boundary of the model linearized at the current point.

    Each step linearizes the differences between the true class's score and each of the
    ``candidates - 1`` most likely other classes (chosen once, on the clean input), steps
    exactly onto the nearest of those hyperplanes (under L2, or under Linf with the dual L1
    norm of the gradient), and adds up the steps; the point tried is the input plus the sum
    scaled by ``1 + overshoot``, clipped to the bounds. An input stops as soon as it is fooled.
    Each step costs one forward pass and one backward pass per candidate class other than the
    true one, for the whole batch.

    Minimal search under a threat's epsilon: a point found within epsilon is returned as it
    is; for a point beyond it (or none found), ``ball_steps`` projected gradient steps on the
    success margin start from its projection onto the ball. The unprojected sizes of the last
    run stay in ``minimal_distances_`` (``inf`` where none was found).

    Paper: Moosavi-Dezfooli, Fawzi, Frossard, "DeepFool: a simple and accurate method to fool
    deep neural networks", 2016, arXiv:1511.04599.

    Threat: white-box; Linf or L2; untargeted only (a targeted threat is refused).

    Args:
        steps: the most steps per input (50).
        candidates: classes considered, the true class included (10).
        overshoot: how far past the linearized boundary the summed step goes (0.02).
        ball_steps: gradient steps within the epsilon ball for inputs whose minimal point lies
            beyond it (10; 0: return it, and the base class projects it).

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> attack = DeepFool()  # doctest: +SKIP
        >>> result = attack.run(target, x, y, eps=1.0, norm="l2")  # doctest: +SKIP
        >>> attack.minimal_distances_.median()  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 50,
        candidates: int = 10,
        overshoot: float = 0.02,
        ball_steps: int = 10,
    ) -> None:
        self.steps = steps
        self.candidates = candidates
        self.overshoot = overshoot
        self.ball_steps = ball_steps

    def _check_params(self) -> None:
        self._at_least(steps=1, candidates=2, overshoot=0)
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
        if threat.targeted:
            raise ConfigError("deepfool is untargeted only: use cw or fab for a targeted threat")
        lo, hi = target.bounds
        origin = best.origin
        current = origin.clone()
        total = torch.zeros_like(origin)
        todo = torch.arange(len(x), device=x.device)
        classes: torch.Tensor | None = None
        for i in range(self.steps + 1):
            point = current[todo].view((len(todo), *x.shape[1:]))
            if i == self.steps:
                with torch.no_grad():
                    hit = threat.goal.is_success(target(point), y[todo])
                best.offer(todo, current[todo], hit)
                break
            if classes is None:
                # the candidate classes come from the clean scores, as in the paper
                scores, diffs, grads = boundary_gradients(
                    target, point, lambda s: candidate_classes(s, y, self.candidates)
                )
                classes = candidate_classes(scores, y, self.candidates)
            else:
                scores, diffs, grads = boundary_gradients(target, point, classes[todo])
            hit = threat.goal.is_success(scores, y[todo])
            best.offer(todo, current[todo], hit)
            left = ~hit
            todo, diffs, grads = todo[left], diffs[left], grads[left]
            if len(todo) == 0:
                break
            size = dual_size(grads, threat.norm)
            gap = diffs.abs() / size.clamp_min(1e-12)
            nearest = gap.argmin(dim=1)
            rows = torch.arange(len(todo), device=x.device)
            w, f, s = grads[rows, nearest], diffs[rows, nearest].abs(), size[rows, nearest]
            if threat.norm is Norm.L2:
                step = ((f + 1e-4) / s.clamp_min(1e-12) ** 2)[:, None] * w
            else:
                step = ((f + 1e-4) / s.clamp_min(1e-12))[:, None] * w.sign()
            total[todo] += step
            current[todo] = (origin[todo] + (1 + self.overshoot) * total[todo]).clamp(lo, hi)
