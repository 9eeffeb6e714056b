"""Auto-PGD: PGD with momentum and a step size that adapts at checkpoints."""

from __future__ import annotations

import math

import torch

from bastion.attacks._ops import project
from bastion.attacks.base import RunLog
from bastion.attacks.evasion.gradient import Descent, GradientAttack
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["APGD", "APGDT", "checkpoints"]

_ALPHA = 0.75  # weight of the new step against the last one (momentum 1 - alpha)
_RHO = 0.75  # share of steps that must raise the objective for the step size to stay


def checkpoints(steps: int) -> list[int]:
    """The iterations at which APGD reconsiders its step size: p_0 = 0, p_1 = 0.22,
    p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), as shares of ``steps``."""
    shares = [0.0, 0.22]
    while shares[-1] < 1:
        shares.append(shares[-1] + max(shares[-1] - shares[-2] - 0.03, 0.06))
    points = sorted({math.ceil(round(p * steps, 6)) for p in shares if p <= 1})
    return [w for w in points if 0 < w < steps]


def _per_sample(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.view((-1,) + (1,) * (like.ndim - 1))


@register_attack(
    "apgd",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2, Norm.L1),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=22,
    defaults={"steps": 100},
    fast={"steps": 10},
    # in the evaluation presets (bastion scan --preset); a scan's defaults are PGD and Square
    in_scan=False,
)
class APGD(GradientAttack):
    """PGD without a step size to tune: momentum, and a step size halved at checkpoints
    when progress stalls, restarting from the best point found.

    The step size starts at ``2 * eps``. At each checkpoint (22%, 41%, 56%, ... of the
    steps) it halves for an input whose objective rose in fewer than 75% of the steps since
    the last checkpoint, or whose step size and best objective both stood still; that input
    then continues from its best point. Every input stops as soon as it reaches the goal.

    Paper: Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", 2020, arXiv:2003.01690 (the L1 version: Croce, Hein,
    "Mind the box", 2021, arXiv:2103.01208; this one moves the largest 5% of the free
    gradient entries per step).

    Threat: white-box; Linf, L2 or L1; untargeted or targeted.

    Args:
        steps: iterations per restart (100).
        restarts: restarts from random points, each on the inputs still standing (1).
        loss: ``"ce"`` (cross-entropy; APGD-CE), ``"dlr"`` (APGD-DLR), ``"margin"``, or
            ``"dlr-targeted"`` (see :class:`APGDT`).
        random_start: begin at a random point of the ball (True).
        eot_samples: gradients averaged over this many forward passes (1).
        early_stop: stop each input as soon as it reaches the goal (True); without it,
            every input takes every step and the point with the best objective is kept.

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> result = APGD(steps=100).run(target, x, y, eps=0.3)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 100,
        restarts: int = 1,
        loss: str = "ce",
        random_start: bool = True,
        eot_samples: int = 1,
        early_stop: bool = True,
    ) -> None:
        super().__init__(
            steps=steps,
            random_start=random_start,
            restarts=restarts,
            loss=loss,
            eot_samples=eot_samples,
            early_stop=early_stop,
        )

    def descend(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
        towards: torch.Tensor | None = None,
    ) -> Descent:
        eps, norm = threat.epsilon, threat.norm
        lo, hi = target.bounds
        n = len(x)
        marks = set(checkpoints(self.steps))
        out = x.clone()
        out_value = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
        hit = torch.zeros(n, dtype=torch.bool, device=x.device)

        def bound(point: torch.Tensor, xs: torch.Tensor) -> torch.Tensor:
            return (xs + project(point - xs, norm, eps)).clamp(lo, hi)

        # per active input: current and previous point, best point, its objective, step size
        active = torch.arange(n, device=x.device)
        delta = self.start(x, threat, generator)
        cur = (x + delta).clamp(lo, hi)
        prev = cur.clone()
        best, best_value = (
            cur.clone(),
            torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device),
        )
        best_grad = torch.zeros_like(x)
        last_value = torch.full((n,), float("-inf"), dtype=x.dtype, device=x.device)
        eta = torch.full((n,), 2.0 * eps, dtype=x.dtype, device=x.device)
        rises = torch.zeros(n, device=x.device)
        reduced = torch.zeros(n, dtype=torch.bool, device=x.device)
        mark_best = best_value.clone()
        last_mark = 0
        for i in range(self.steps + 1):
            xs, ys = x[active], y[active]
            value, grad, done = self.value_and_grad(
                target, cur, ys, threat, None if towards is None else towards[active]
            )
            if i == 0:
                self._note_zero_gradients(grad, log)
            newly = done & ~hit[active]
            if bool(newly.any()):
                # the first point that reaches the goal is the one kept
                out[active[newly]] = cur[newly].detach()
                out_value[active[newly]] = value[newly]
                hit[active[newly]] = True
            if self.early_stop and bool(done.any()):
                keep = ~done
                active, xs, ys = active[keep], xs[keep], ys[keep]
                tensors = (cur, prev, best, best_grad, value, grad, best_value, last_value)
                cur, prev, best, best_grad, value, grad, best_value, last_value = (
                    t[keep] for t in tensors
                )
                eta, rises, reduced, mark_best = (
                    eta[keep],
                    rises[keep],
                    reduced[keep],
                    mark_best[keep],
                )
                if len(active) == 0:
                    break
            improved = value > best_value
            best = torch.where(_per_sample(improved, cur), cur, best)
            best_grad = torch.where(_per_sample(improved, grad), grad, best_grad)
            best_value = torch.where(improved, value, best_value)
            if i > 0:
                rises += (value > last_value).to(rises.dtype)
            last_value = value
            if i == self.steps:
                break
            if i in marks:
                # too few rising steps, or no progress at all since a check that kept the step
                stalled = rises < _RHO * (i - last_mark)
                stalled |= ~reduced & (best_value <= mark_best)
                eta = torch.where(stalled, eta / 2, eta)
                cur = torch.where(_per_sample(stalled, cur), best, cur)
                grad = torch.where(_per_sample(stalled, grad), best_grad, grad)
                prev = torch.where(_per_sample(stalled, prev), best, prev)
                reduced, mark_best = stalled, best_value.clone()
                rises.zero_()
                last_mark = i
            if norm is Norm.L1:
                grad = self.free_gradient(grad, cur, (lo, hi))
            step = _per_sample(eta, cur) * self.direction(grad, norm)
            z = bound(cur + step, xs)
            alpha = 1.0 if i == 0 else _ALPHA
            nxt = bound(cur + alpha * (z - cur) + (1 - alpha) * (cur - prev), xs)
            prev, cur = cur, nxt.detach()
        rest = ~hit[active]
        out[active[rest]] = best[rest].detach()
        out_value[active[rest]] = best_value[rest]
        return Descent(out, out_value, hit)

    def _check_params(self) -> None:
        super()._check_params()
        if self.steps < 2:
            raise ConfigError(f"APGD needs at least 2 steps, got {self.steps}")


@register_attack(
    "apgd-t",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2, Norm.L1),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=24,
    defaults={"steps": 100, "target_classes": 9},
    fast={"steps": 10, "target_classes": 2},
    # in the evaluation presets (bastion scan --preset); a scan's defaults are PGD and Square
    in_scan=False,
)
class APGDT(APGD):
    """APGD with the targeted DLR loss, aimed in turn at each of the classes the model
    ranks highest after the true one: an untargeted attack that tries the likeliest
    wrong answers one by one, and the strongest member of AutoAttack.

    For each target class (the second highest score first), an APGD run on the inputs
    still standing pulls the input towards it; an input falls when it is misclassified as
    anything. Under a targeted threat, it is plain APGD with the DLR loss towards the
    threat's target.

    Paper: Croce, Hein, "Reliable evaluation of adversarial robustness with an ensemble of
    diverse parameter-free attacks", 2020, arXiv:2003.01690.

    Threat: white-box; Linf, L2 or L1; untargeted (targeted: one run towards the target).

    Args:
        steps: iterations per target class and restart (100).
        target_classes: how many of the top-ranked wrong classes to try (9).
        restarts: restarts per target class (1).
        random_start: begin at a random point of the ball (True).
        eot_samples: gradients averaged over this many forward passes (1).
        early_stop: stop each input as soon as it reaches the goal (True).

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> result = APGDT(target_classes=3).run(target, x, y, eps=0.3)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 100,
        target_classes: int = 9,
        restarts: int = 1,
        random_start: bool = True,
        eot_samples: int = 1,
        early_stop: bool = True,
    ) -> None:
        super().__init__(
            steps=steps,
            restarts=restarts,
            loss="dlr-targeted",
            random_start=random_start,
            eot_samples=eot_samples,
            early_stop=early_stop,
        )
        self.target_classes = target_classes

    def _check_params(self) -> None:
        super()._check_params()
        self._at_least(target_classes=1)

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        if threat.targeted:
            return self.restart_loop(target, x, y, threat, generator, log)
        with torch.no_grad():
            scores = target(x)
        fooled = threat.goal.is_success(scores, y)
        best = x.clone()
        # the k-th target of an input: its k-th highest class other than the true one
        ranked = scores.argsort(dim=1, descending=True)
        order = ranked[ranked != y.view(-1, 1)].view(len(x), -1)
        for k in range(min(self.target_classes, target.num_classes - 1)):
            best = self.restart_loop(
                target, x, y, threat, generator, log, towards=order[:, k], fooled=fooled, best=best
            )
        return best
