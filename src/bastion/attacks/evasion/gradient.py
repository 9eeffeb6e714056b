"""The shared loop of gradient attacks; FGSM, PGD, MI-FGSM and APGD differ only in its pieces."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from bastion.attacks._losses import LOSSES, objective
from bastion.attacks._ops import project, random_in_ball
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, OutputKind, Threat

__all__ = ["Descent", "GradientAttack"]

# the share of coordinates an L1 step moves (the largest gradient entries): a steepest-ascent
# step under L1 moves one coordinate, which wastes most of the budget on pixels at the bounds
_L1_SHARE = 0.05
# "no input reached the goal", for loops that do not ask (expanded, never written to)
_NONE_REACHED = torch.zeros(1, dtype=torch.bool)


@dataclass
class Descent:
    """What one restart of a gradient attack leaves: its points, the objective there (None
    when not measured), and which of them already reached the goal."""

    x_adv: torch.Tensor
    value: torch.Tensor | None
    hit: torch.Tensor | None


class GradientAttack(Attack):
    """Iterated gradient steps, projected onto the epsilon ball and clipped to the bounds.

    Each restart begins at a random point of the ball (or at the input, without
    ``random_start``) and takes ``steps`` steps of size ``rel_stepsize * eps`` (by default
    ``2.5 * eps / steps``), or ``abs_stepsize``, along the step direction. With
    ``early_stop`` an input leaves the loop as soon as it reaches the goal, so no passes are
    spent on it after it falls.
    After every restart the worst case per sample is kept: a successful point over an
    unsuccessful one, a higher loss between two failures; later restarts attack only the
    inputs still standing.

    ``eot_samples`` above 1 averages the gradient (and requires success) over that many
    forward passes: expectation over transformation, for models with randomness in the
    forward pass.

    Subclasses change the pieces: :meth:`start`, :meth:`direction`, :meth:`accumulate`,
    :meth:`objective`, or a whole restart (:meth:`descend`).
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
        eot_samples: int = 1,
        early_stop: bool = True,
    ) -> None:
        self.steps = steps
        self.rel_stepsize = rel_stepsize
        self.abs_stepsize = abs_stepsize
        self.random_start = random_start
        self.restarts = restarts
        self.loss = loss
        self.eot_samples = eot_samples
        self.early_stop = early_stop

    def _check_params(self) -> None:
        self._at_least(steps=1, restarts=1, eot_samples=1)
        if self.rel_stepsize is not None and self.rel_stepsize <= 0:
            raise ConfigError(f"rel_stepsize must be positive, got {self.rel_stepsize}")
        if self.abs_stepsize is not None and self.abs_stepsize <= 0:
            raise ConfigError(f"abs_stepsize must be positive, got {self.abs_stepsize}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(LOSSES)}; got {self.loss!r}")

    # ------------------------------------------------------------------ the pieces
    def start(self, x: torch.Tensor, threat: Threat, generator: torch.Generator) -> torch.Tensor:
        """The first perturbation of a restart."""
        if self.random_start:
            return random_in_ball(x, threat.norm, threat.epsilon, generator)
        return torch.zeros_like(x)

    def direction(self, grad: torch.Tensor, norm: Norm) -> torch.Tensor:
        """The steepest ascent direction of unit size under ``norm`` (under L1, spread over
        the largest few percent of the gradient's entries)."""
        flat = grad.reshape(grad.shape[0], -1)
        if norm is Norm.LINF:
            return grad.sign()
        if norm is Norm.L1:
            k = max(1, math.ceil(_L1_SHARE * flat.shape[1]))
            top = flat.abs().topk(k, dim=1).indices
            sparse = torch.zeros_like(flat).scatter_(1, top, flat.gather(1, top).sign())
            count = sparse.abs().sum(dim=1, keepdim=True).clamp_min(1.0)
            return (sparse / count).view_as(grad)
        size = torch.linalg.vector_norm(flat, dim=1).clamp_min(1e-12)
        unit: torch.Tensor = grad / size.view((-1,) + (1,) * (grad.ndim - 1))
        return unit

    def accumulate(self, grad: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        """What the step follows, given this step's gradient and the last value returned
        (None at the first step): the gradient itself here; momentum in MI-FGSM."""
        return grad

    def objective(
        self,
        scores: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        towards: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Per-sample value the attack increases (see :mod:`bastion.attacks._losses`)."""
        return objective(scores, y, threat, self.loss, towards)

    def step_size(self, eps: float) -> float:
        if self.abs_stepsize is not None:
            return self.abs_stepsize
        # Madry et al.'s rule of thumb: enough travel to cross the ball 2.5 times
        rel = self.rel_stepsize if self.rel_stepsize is not None else 2.5 / self.steps
        return rel * eps

    # ------------------------------------------------------------------ shared machinery
    def value_and_grad(
        self,
        target: Target,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        towards: torch.Tensor | None = None,
        judge: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The objective, its gradient, and whether each input reaches the goal; with EOT,
        the mean over ``eot_samples`` passes, and the goal reached on every one of them.
        Without ``judge`` the goal is not checked (all False), saving a pass over the scores."""
        if self.eot_samples == 1:
            # the common case, kept as lean as a hand-written loop
            value, grad, scores = self._one_pass(target, x_adv, y, threat, towards)
            if judge:
                return value, grad, threat.goal.is_success(scores, y)
            return value, grad, _NONE_REACHED.expand(len(y))
        value_sum, grad_sum, scores = self._one_pass(target, x_adv, y, threat, towards)
        hit = threat.goal.is_success(scores, y)
        for _ in range(self.eot_samples - 1):
            value, grad, scores = self._one_pass(target, x_adv, y, threat, towards)
            value_sum, grad_sum = value_sum + value, grad_sum + grad
            hit = hit & threat.goal.is_success(scores, y)
        if not judge:
            hit = torch.zeros_like(hit)
        k = float(self.eot_samples)
        return value_sum / k, grad_sum / k, hit

    def _one_pass(
        self,
        target: Target,
        x_adv: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        towards: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One forward and backward pass: the objective, its gradient, the raw scores."""
        point = x_adv.detach().requires_grad_(True)
        scores = target(point)
        logits = scores
        if target.output_kind is OutputKind.PROBABILITIES:
            logits = scores.clamp_min(1e-30).log()
        value = self.objective(logits, y, threat, towards)
        (grad,) = torch.autograd.grad(value.sum(), point)
        return value.detach(), grad, scores.detach()

    @staticmethod
    def free_gradient(
        grad: torch.Tensor, x_adv: torch.Tensor, bounds: tuple[float, float]
    ) -> torch.Tensor:
        """The gradient without the entries that push a coordinate past its bound (where a
        step could not move it): sparse steps then spend their budget where it counts."""
        lo, hi = bounds
        stuck = ((x_adv <= lo) & (grad < 0)) | ((x_adv >= hi) & (grad > 0))
        return grad.masked_fill(stuck, 0.0)

    # ------------------------------------------------------------------ one restart
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
        """One restart from :meth:`start`: ``steps`` steps along :meth:`direction` of the
        :meth:`accumulate`-d gradient; inputs that reach the goal stop where they are."""
        eps, norm = threat.epsilon, threat.norm
        lo, hi = target.bounds
        step = self.step_size(eps)
        delta = self.start(x, threat, generator)
        delta = (x + delta).clamp(lo, hi) - x
        out = x.clone()
        hit = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        active = torch.arange(len(x), device=x.device)
        memory: torch.Tensor | None = None
        # the inputs still attacked; sliced only when some leave, so a full batch costs no copy
        xs, ys, aim = x, y, towards
        for i in range(self.steps):
            point = xs + delta
            _, grad, done = self.value_and_grad(target, point, ys, threat, aim, self.early_stop)
            if i == 0:
                self._note_zero_gradients(grad, log)
            if self.early_stop and bool(done.any()):
                out[active[done]] = point[done].detach()
                hit[active[done]] = True
                keep = ~done
                active, delta, grad, xs, ys = (
                    active[keep],
                    delta[keep],
                    grad[keep],
                    xs[keep],
                    ys[keep],
                )
                aim = None if aim is None else aim[keep]
                memory = None if memory is None else memory[keep]
                if len(active) == 0:
                    break
            if norm is Norm.L1:
                grad = self.free_gradient(grad, xs + delta, (lo, hi))
            memory = self.accumulate(grad, memory)
            delta = project(delta + step * self.direction(memory, norm), norm, eps)
            delta = (xs + delta).clamp(lo, hi) - xs
        out[active] = (xs + delta).detach()
        return Descent(out, None, None)

    def _note_zero_gradients(self, grad: torch.Tensor, log: RunLog) -> None:
        if log.gradients_checked:
            return
        log.gradients_checked = True
        zero = int((~grad.flatten(1).any(dim=1)).sum())
        if zero:
            log.notes.append(
                f"{zero} of {len(grad)} inputs had an all-zero gradient: "
                "the model may mask its gradients (saturated softmax, non-differentiable layers)"
            )

    # ------------------------------------------------------------------ the restarts
    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        return self.restart_loop(target, x, y, threat, generator, log)

    def restart_loop(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
        towards: torch.Tensor | None = None,
        fooled: torch.Tensor | None = None,
        best: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Run the restarts, each on the inputs still standing, keeping the worst case per
        input. ``fooled`` and ``best`` carry the state of earlier runs (APGD-T's targets)."""
        best = x.clone() if best is None else best
        fooled = (
            torch.zeros(len(x), dtype=torch.bool, device=x.device) if fooled is None else fooled
        )
        best_value = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)
        for _ in range(self.restarts):
            todo = (~fooled).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            run = self.descend(
                target,
                x[todo],
                y[todo],
                threat,
                generator,
                log,
                None if towards is None else towards[todo],
            )
            value, hit = run.value, run.hit
            if value is None or hit is None:
                if self.restarts == 1:
                    best[todo] = run.x_adv
                    break
                with torch.no_grad():
                    scores = target(run.x_adv)
                    value = self.objective(scores, y[todo], threat)
                    hit = threat.goal.is_success(scores, y[todo])
            better = hit | (value > best_value[todo])
            best[todo[better]] = run.x_adv[better]
            best_value[todo[better]] = value[better]
            fooled[todo[hit]] = True
        return best
