"""The shared loop of gradient attacks; FGSM and PGD differ only in its pieces."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.attacks._ops import project, random_in_ball
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, Threat

__all__ = ["GradientAttack"]


class GradientAttack(Attack):
    """Iterated gradient steps, projected onto the epsilon ball and clipped to the bounds.

    Each restart begins at a random point of the ball (or at the input, without
    ``random_start``) and takes ``steps`` steps of size ``rel_stepsize * eps`` (by default
    ``2.5 * eps / steps``), or ``abs_stepsize``, along the step direction. After every
    restart the worst case per sample is kept: a successful point over an unsuccessful one,
    a higher loss between two failures.
    Samples already fooled are not attacked again.

    Subclasses change the pieces: :meth:`start`, :meth:`direction`, :meth:`loss`.
    """

    def __init__(
        self,
        *,
        steps: int = 40,
        rel_stepsize: float | None = None,
        abs_stepsize: float | None = None,
        random_start: bool = True,
        restarts: int = 1,
        loss: str = "ce",
    ) -> None:
        self.steps = steps
        self.rel_stepsize = rel_stepsize
        self.abs_stepsize = abs_stepsize
        self.random_start = random_start
        self.restarts = restarts
        self.loss = loss

    def _check_params(self) -> None:
        if self.steps < 1:
            raise ConfigError(f"steps must be at least 1, got {self.steps}")
        if self.restarts < 1:
            raise ConfigError(f"restarts must be at least 1, got {self.restarts}")
        if self.rel_stepsize is not None and self.rel_stepsize <= 0:
            raise ConfigError(f"rel_stepsize must be positive, got {self.rel_stepsize}")
        if self.abs_stepsize is not None and self.abs_stepsize <= 0:
            raise ConfigError(f"abs_stepsize must be positive, got {self.abs_stepsize}")
        if self.loss not in ("ce", "margin"):
            raise ConfigError(f"loss must be 'ce' or 'margin', got {self.loss!r}")

    # ------------------------------------------------------------------ the pieces
    def start(self, x: torch.Tensor, threat: Threat, generator: torch.Generator) -> torch.Tensor:
        """The first perturbation of a restart."""
        if self.random_start:
            return random_in_ball(x, threat.norm, threat.epsilon, generator)
        return torch.zeros_like(x)

    def direction(self, grad: torch.Tensor, norm: Norm) -> torch.Tensor:
        """The steepest ascent direction of unit size under ``norm``."""
        if norm is Norm.LINF:
            return grad.sign()
        size = torch.linalg.vector_norm(grad.reshape(grad.shape[0], -1), dim=1).clamp_min(1e-12)
        unit: torch.Tensor = grad / size.view((-1,) + (1,) * (grad.ndim - 1))
        return unit

    def objective(self, scores: torch.Tensor, y: torch.Tensor, threat: Threat) -> torch.Tensor:
        """Per-sample value the attack increases: cross-entropy away from the true label (or
        towards the target label), or the negative margin of the threat's success criterion."""
        if self.loss == "ce":
            value = F.cross_entropy(scores, y, reduction="none")
            return -value if threat.targeted else value
        return -threat.goal.margin(scores, y)

    # ------------------------------------------------------------------ the loop
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
        if self.abs_stepsize is not None:
            step = self.abs_stepsize
        else:
            # Madry et al.'s rule of thumb: enough travel to cross the ball 2.5 times
            rel = self.rel_stepsize if self.rel_stepsize is not None else 2.5 / self.steps
            step = rel * eps
        lo, hi = target.bounds
        norm = threat.norm
        best = x
        fooled = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        best_value = torch.full((len(x),), float("-inf"), device=x.device)
        zero_grads = 0
        for restart in range(self.restarts):
            # the first restart attacks everything; later ones only what still stands
            todo = None if restart == 0 else (~fooled).nonzero().squeeze(1)
            if todo is not None and len(todo) == 0:
                break
            xs, ys = (x, y) if todo is None else (x[todo], y[todo])
            delta = self.start(xs, threat, generator)
            delta = (xs + delta).clamp(lo, hi) - xs
            for i in range(self.steps):
                x_adv = (xs + delta).requires_grad_(True)
                value = self.objective(target(x_adv), ys, threat)
                (grad,) = torch.autograd.grad(value.sum(), x_adv)
                if i == 0 and restart == 0:
                    zero_grads = int((~grad.flatten(1).any(dim=1)).sum())
                delta = project(delta + step * self.direction(grad, norm), norm, eps)
                delta = (xs + delta).clamp(lo, hi) - xs
            x_adv = (xs + delta).detach()
            if self.restarts == 1:
                best = x_adv
                break
            if todo is None:
                todo = torch.arange(len(x), device=x.device)
                best = x.clone()
            with torch.no_grad():
                scores = target(x_adv)
                value = self.objective(scores, ys, threat)
                hit = threat.goal.is_success(scores, ys)
            better = hit | (value > best_value[todo])
            best[todo[better]] = x_adv[better]
            best_value[todo[better]] = value[better]
            fooled[todo[hit]] = True
        if zero_grads:
            log.notes.append(
                f"{zero_grads} of {len(x)} inputs had an all-zero gradient: "
                "the model may mask its gradients (saturated softmax, non-differentiable layers)"
            )
        return best
