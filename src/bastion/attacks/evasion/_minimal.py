"""What the minimal-perturbation attacks share: the contract with an epsilon, and their tools.

A minimal attack (C-W, DeepFool, FAB) searches for the smallest perturbation that fools the
model, whatever the threat's epsilon. Under bastion's contract the result must lie within
epsilon, so :class:`MinimalAttack` turns the search into an answer per input:

- the smallest successful point, when it lies within epsilon;
- otherwise (a minimal point beyond epsilon, or none found), ``ball_steps`` projected
  gradient steps on the success margin, starting from the minimal point's projection onto the
  epsilon ball (from the input where none was found); the first successful step is kept, else
  the last one.

The unconstrained minimal distances stay on the attack as ``minimal_distances_`` (per input,
``inf`` where none was found), for reports that want the sizes rather than a robust accuracy.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from bastion.attacks._ops import distances, project
from bastion.attacks.base import Attack, RunLog
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, Threat

__all__ = [
    "Best",
    "MinimalAttack",
    "boundary_gradients",
    "candidate_classes",
    "dual_size",
    "project_on_plane",
]


class Best:
    """The smallest successful point per input found so far (flattened), and its distance."""

    def __init__(self, x: torch.Tensor, norm: Norm) -> None:
        self.origin = x.reshape(len(x), -1)
        self.points = self.origin.clone()
        self.dist = torch.full((len(x),), float("inf"), dtype=x.dtype, device=x.device)
        self.norm = norm

    def offer(self, idx: torch.Tensor, points: torch.Tensor, hit: torch.Tensor) -> None:
        """Keep ``points`` (flattened, for inputs ``idx``) that succeed and are closer."""
        if not bool(hit.any()):
            return
        idx, points = idx[hit], points[hit].reshape(int(hit.sum()), -1)
        size = distances(points - self.origin[idx], self.norm)
        closer = size < self.dist[idx]
        self.dist[idx[closer]] = size[closer]
        self.points[idx[closer]] = points[closer]


class MinimalAttack(Attack):
    """Base of the minimal attacks: subclasses implement :meth:`_minimize`."""

    ball_steps: int
    #: per input, the smallest perturbation the last run found (``inf``: none), unprojected
    minimal_distances_: torch.Tensor

    def _check_ball_steps(self) -> None:
        self._at_least(ball_steps=0)

    def _minimize(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        best: Best,
    ) -> None:
        """Search for small successful points, offering each to ``best``."""
        raise NotImplementedError

    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        best = Best(x, threat.norm)
        if len(x):
            self._minimize(target, x, y, threat, generator, best)
        self.minimal_distances_ = best.dist.clone()
        out = best.points.view_as(x).clone()
        # a point exactly at epsilon may measure a hair beyond it; the base class projects it
        beyond = (best.dist > threat.epsilon * (1 + 1e-5)).nonzero().squeeze(1)
        if self.ball_steps and len(beyond):
            out[beyond] = _inside_ball(
                target, x[beyond], y[beyond], out[beyond], threat, self.ball_steps
            )
        return out


def _inside_ball(
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    start: torch.Tensor,
    threat: Threat,
    steps: int,
) -> torch.Tensor:
    """Projected gradient steps on the negative success margin within the epsilon ball, from
    ``start`` projected into it; per input the first successful point, else the last one."""
    norm, eps = threat.norm, threat.epsilon
    lo, hi = target.bounds
    step = 2.5 * eps / steps  # Madry et al.'s rule: enough travel to cross the ball 2.5 times
    delta = (x + project(start - x, norm, eps)).clamp(lo, hi) - x
    out = x + delta
    todo = torch.arange(len(x), device=x.device)
    for i in range(steps + 1):
        point = (x[todo] + delta[todo]).requires_grad_(i < steps)
        with torch.enable_grad():
            margin = threat.goal.margin(target(point), y[todo])
        out[todo] = point.detach()
        left = margin.detach() > 0
        if i == steps or not bool(left.any()):
            break
        (grad,) = torch.autograd.grad(margin.sum(), point)
        todo, grad = todo[left], -grad[left]
        if norm is Norm.LINF:
            move = grad.sign()
        else:
            size = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            move = grad / size.view((-1,) + (1,) * (grad.ndim - 1))
        d = project(delta[todo] + step * move, norm, eps)
        delta[todo] = (x[todo] + d).clamp(lo, hi) - x[todo]
    return out


def candidate_classes(scores: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k): each input's reference class ``y`` first, then the ``k - 1`` others with the
    highest scores, best first."""
    others = scores.detach().scatter(1, y[:, None], float("-inf"))
    k = min(k, scores.shape[1])
    return torch.cat([y[:, None], others.topk(k - 1, dim=1).indices], dim=1)


def boundary_gradients(
    target: Target,
    x: torch.Tensor,
    classes: torch.Tensor | Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The scores at ``x``, and for each class ``k`` of ``classes`` after the first (the
    reference): ``f_k - f_ref`` (N, K-1) and its gradient, flattened (N, K-1, D).

    ``classes`` is an (N, K) tensor, or a function of the scores that returns one. Samples
    are independent in a batch (the model is in evaluation mode), so one backward pass per
    class gives every input's gradient at once: K-1 backward passes, whatever N is.
    """
    point = x.detach().requires_grad_(True)
    with torch.enable_grad():
        scores = target(point)
        picked = classes if isinstance(classes, torch.Tensor) else classes(scores.detach())
        chosen = scores.gather(1, picked)
        diffs = chosen[:, 1:] - chosen[:, :1]
        grads = []
        last = diffs.shape[1] - 1
        for k in range(diffs.shape[1]):
            (g,) = torch.autograd.grad(diffs[:, k].sum(), point, retain_graph=k < last)
            grads.append(g.reshape(len(x), -1))
    return scores.detach(), diffs.detach(), torch.stack(grads, dim=1)


def dual_size(grads: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The dual norm of gradients along the last dimension: a boundary ``|f| / dual_size``
    away under ``norm`` (L2 is its own dual; Linf's is L1)."""
    return grads.norm(dim=-1) if norm is Norm.L2 else grads.abs().sum(dim=-1)


def project_on_plane(
    z: torch.Tensor,
    w: torch.Tensor,
    c: torch.Tensor,
    lo: float,
    hi: float,
    norm: Norm,
) -> torch.Tensor:
    """The smallest step ``d`` (under ``norm``, per row) with ``<w, d> = c`` and
    ``lo <= z + d <= hi``: the projection of ``z`` onto the intersection of the hyperplane and
    the box. All (N, D) but ``c`` (N,). Where the hyperplane misses the box, the box's corner
    furthest along ``w``.

    Both norms reduce to one problem: with ``w`` turned so that ``c >= 0``, each coordinate
    can move towards its bound up to a room ``r_i``; the step of size ``t`` gives
    ``sum_i a_i * min(t, r_i)`` (``a_i = w_i^2`` and ``d_i = w_i * min(t, r_i)`` for L2;
    ``a_i = |w_i|`` and ``d_i = sign(w_i) * min(t, r_i)`` for Linf), a piecewise linear,
    increasing function of ``t`` whose breakpoints are the rooms: sorting them solves it
    exactly.
    """
    flip = torch.where(c < 0, -1.0, 1.0).to(w.dtype)[:, None]
    w, c = w * flip, c.abs()
    room = torch.where(w > 0, hi - z, z - lo).clamp_min(0)
    if norm is Norm.L2:
        weight = w * w
        # the breakpoint of coordinate i, in units of the step along w
        room = torch.where(w != 0, room / w.abs().clamp_min(1e-30), torch.zeros_like(room))
    else:
        weight = w.abs()
    room_sorted, order = room.sort(dim=1)
    weight_sorted = weight.gather(1, order)
    below = (weight_sorted * room_sorted).cumsum(dim=1)  # sum over coordinates already at bound
    above = weight_sorted.sum(dim=1, keepdim=True) - weight_sorted.cumsum(dim=1)
    reach = below + room_sorted * above  # what the step reaches at each breakpoint
    k = (reach < c[:, None]).sum(dim=1)
    feasible = k < w.shape[1]
    prev = (k - 1).clamp_min(0)[:, None]
    below_prev = torch.where(k[:, None] > 0, below.gather(1, prev), torch.zeros_like(c[:, None]))
    above_prev = torch.where(
        k[:, None] > 0, above.gather(1, prev), weight_sorted.sum(dim=1, keepdim=True)
    )
    t = (c[:, None] - below_prev) / above_prev.clamp_min(1e-30)
    t = torch.where(feasible[:, None], t, torch.full_like(t, float("inf")))
    moved = torch.minimum(t, room)
    step: torch.Tensor = w * moved if norm is Norm.L2 else w.sign() * moved
    return step
