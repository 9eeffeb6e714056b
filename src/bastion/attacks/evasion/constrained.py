"""PGD within domain constraints: immutable, stepped, whole and one-hot features, per-feature
ranges and epsilons (tabular data, mostly)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bastion.attacks._ops import random_in_ball
from bastion.attacks.base import Attack, RunLog
from bastion.core.constraints import Constraints, FeatureConstraints
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["ConstrainedPGD"]


@register_attack(
    "constrained-pgd",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=25,
    defaults={"steps": 50},
    fast={"steps": 10},
    requires=("constraints",),
)
class ConstrainedPGD(Attack):
    """PGD whose every step keeps a row valid: what may not change stays, ranges hold, and
    stepped, whole and one-hot features end on values the data can take.

    Each step moves only the mutable features and projects onto the intersection of each
    feature's box (its range, its own epsilon, the threat's Linf epsilon) and, under L2, the
    epsilon ball (box first, then a shrink towards the input, which stays in the box). Stepped,
    whole and one-hot features are optimized relaxed, then rounded: a one-hot group to its
    highest-scoring category among those the box allows, a stepped feature to the nearest
    grid point inside its box; under L2, the discrete changes that overrun epsilon are undone,
    largest first. A repair then re-optimizes the continuous features with the discrete ones
    fixed, and, for inputs still standing, tries again with every discrete feature as it was;
    the more damaging of the two is kept. Without constraints this is PGD in the bounds.

    Paper: the projection follows Madry et al., "Towards Deep Learning Models Resistant to
    Adversarial Attacks", 2017, arXiv:1706.06083; relaxing and rounding discrete features
    follows the constrained tabular attacks of Simonetto et al., "A Unified Framework for
    Adversarial Attack and Defense in Constrained Feature Space", 2022, arXiv:2112.01156.

    Threat: white-box; Linf or L2; untargeted or targeted. A change epsilon does not cover
    cannot happen: under Linf (epsilon below the input range) binary and one-hot features
    keep their value.

    Args:
        constraints: a :class:`~bastion.core.constraints.Constraints`, its mapping, or the
            path of a YAML/JSON constraints file (None: only the bounds).
        steps: gradient steps of the relaxed search (50).
        rel_stepsize: step size as a fraction of epsilon (None: ``2.5 / steps``).
        repair_steps: steps of each repair after rounding (None: ``steps // 2``, at least 5).
        loss: ``"ce"`` (cross-entropy) or ``"margin"``.

    Returns: an :class:`~bastion.core.results.AttackResult`; every adversarial input
    satisfies the constraints (:meth:`FeatureConstraints.violations` counts none).

    Example:
        >>> rules = Constraints.load("examples/constraints/fraud.yaml")  # doctest: +SKIP
        >>> attack = ConstrainedPGD(constraints=rules.with_columns(data.feature_names))
        >>> result = attack.run(target, x, y, eps=0.1)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        constraints: Constraints | dict[str, Any] | str | None = None,
        steps: int = 50,
        rel_stepsize: float | None = None,
        repair_steps: int | None = None,
        loss: str = "ce",
    ) -> None:
        self.constraints = constraints
        self.steps = steps
        self.rel_stepsize = rel_stepsize
        self.repair_steps = repair_steps
        self.loss = loss

    def _check_params(self) -> None:
        self._at_least(steps=1)
        if self.rel_stepsize is not None and self.rel_stepsize <= 0:
            raise ConfigError(f"rel_stepsize must be positive, got {self.rel_stepsize}")
        if self.repair_steps is not None and self.repair_steps < 0:
            raise ConfigError(f"repair_steps must be 0 or more, got {self.repair_steps}")
        if self.loss not in ("ce", "margin"):
            raise ConfigError(f"loss must be 'ce' or 'margin', got {self.loss!r}")
        self._rules()

    def _rules(self) -> Constraints | None:
        value = self.constraints
        if isinstance(value, (Mapping, Constraints, str, Path)) or value is None:
            return Constraints.coerce(value)
        raise ConfigError(f"constraints must be a mapping or a file's path, got {value!r}")

    def resolve(self, n_features: int, bounds: tuple[float, float]) -> FeatureConstraints | None:
        """The constraints resolved for inputs of ``n_features`` columns within ``bounds``."""
        rules = self._rules()
        return rules.resolve(n_features, bounds) if rules is not None else None

    # ------------------------------------------------------------------ pieces
    def _objective(self, scores: torch.Tensor, y: torch.Tensor, threat: Threat) -> torch.Tensor:
        if self.loss == "ce":
            value = F.cross_entropy(scores, y, reduction="none")
            return -value if threat.targeted else value
        return -threat.goal.margin(scores, y)

    def _descend(
        self,
        target: Target,
        shape: tuple[int, ...],
        start: torch.Tensor,
        anchor: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        box: tuple[torch.Tensor, torch.Tensor],
        free: torch.Tensor,
        radius: torch.Tensor | None,
        steps: int,
    ) -> torch.Tensor:
        """Projected steps on the ``free`` features from ``start``; the fixed ones stay at
        ``anchor``. ``radius`` (L2) bounds the size of the change of the free features."""
        eps = threat.epsilon
        rel = self.rel_stepsize if self.rel_stepsize is not None else 2.5 / max(steps, 1)
        size = rel * eps
        lo, hi = box
        freef = free.to(start.dtype)
        z = self._project(start, anchor, lo, hi, freef, radius)
        for _ in range(steps):
            z_ = z.clone().requires_grad_(True)
            value = self._objective(target(z_.view(shape)), y, threat)
            (grad,) = torch.autograd.grad(value.sum(), z_)
            grad = grad * freef
            if radius is None:
                direction = grad.sign()
            else:
                norm = grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
                direction = grad / norm
            z = self._project(z.detach() + size * direction, anchor, lo, hi, freef, radius)
        return z.detach()

    @staticmethod
    def _project(
        z: torch.Tensor,
        anchor: torch.Tensor,
        lo: torch.Tensor,
        hi: torch.Tensor,
        freef: torch.Tensor,
        radius: torch.Tensor | None,
    ) -> torch.Tensor:
        delta = (torch.minimum(torch.maximum(z, lo), hi) - anchor) * freef
        if radius is not None:
            # shrinking towards the anchor stays inside a box that holds the anchor
            size = delta.norm(dim=1).clamp_min(1e-12)
            delta = delta * (radius / size).clamp(max=1.0).unsqueeze(1)
        return anchor + delta

    def _round(
        self,
        z: torch.Tensor,
        x: torch.Tensor,
        box: tuple[torch.Tensor, torch.Tensor],
        rules: FeatureConstraints,
        norm: Norm,
        eps: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Discrete features rounded (one-hot groups to a category, stepped features to their
        grid) inside the box; under L2, discrete changes undone largest first until they fit.
        Returns the rounded inputs and the (D,) mask of discrete features."""
        lo, hi = box
        out = z.clone()
        discrete = (rules.step > 0).to(z.device)
        for cols in rules.groups:
            idx = list(cols)
            discrete[idx] = True
            part = z[:, idx]
            can_one = hi[:, idx] >= 1 - 1e-6
            can_zero = lo[:, idx] <= 1e-6
            others_zero = can_zero.sum(dim=1, keepdim=True) - can_zero.long() == len(idx) - 1
            allowed = can_one & others_zero
            choice = part.masked_fill(~allowed, float("-inf")).argmax(dim=1)
            out[:, idx] = F.one_hot(choice, len(idx)).to(z.dtype)
        snapped = rules.snap(out.double(), lo.double(), hi.double()).to(z.dtype)
        out = torch.where((rules.step > 0).to(z.device), snapped, out)
        if norm is Norm.L2:
            out = self._fit_l2(out, x, rules, discrete, eps)
        return out, discrete

    @staticmethod
    def _fit_l2(
        out: torch.Tensor,
        x: torch.Tensor,
        rules: FeatureConstraints,
        discrete: torch.Tensor,
        eps: float,
    ) -> torch.Tensor:
        """Undo discrete changes, the costliest first, where they alone overrun epsilon."""
        delta = (out - x) * discrete.to(out.dtype)
        over = (delta.pow(2).sum(dim=1) > eps**2).nonzero().squeeze(1)
        if len(over) == 0:
            return out
        units: list[tuple[int, ...]] = [
            (i,) for i in (rules.step > 0).nonzero().squeeze(1).tolist()
        ]
        units += [tuple(g) for g in rules.groups]
        for row in over.tolist():
            costs = sorted(
                ((float(delta[row, list(u)].pow(2).sum()), u) for u in units), reverse=True
            )
            total = sum(c for c, _ in costs)
            for cost, unit in costs:
                if total <= eps**2:
                    break
                if cost > 0:
                    out[row, list(unit)] = x[row, list(unit)]
                    total -= cost
        return out

    # ------------------------------------------------------------------ the attack
    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        n = len(x)
        shape = tuple(x.shape)
        flat = x.reshape(n, -1)
        eps, norm = threat.epsilon, threat.norm
        rules = self.resolve(flat.shape[1], target.bounds)
        b_lo, b_hi = target.bounds
        if rules is not None:
            rules.check_data(flat)
            lo, hi = rules.box(flat, norm, eps)
            mutable = rules.mutable.to(x.device)
        else:
            reach = eps if norm is Norm.LINF else math.inf
            lo = (flat - reach).clamp_min(b_lo)
            hi = (flat + reach).clamp_max(b_hi)
            mutable = torch.ones(flat.shape[1], dtype=torch.bool, device=x.device)
        free = mutable.unsqueeze(0).expand_as(flat)
        radius = (
            None if norm is Norm.LINF else torch.full((n,), eps, dtype=x.dtype, device=x.device)
        )
        if norm is Norm.LINF:
            u = torch.rand(flat.shape, generator=generator, dtype=torch.float32).to(flat)
            start = lo + u * (hi - lo)
        else:
            start = flat + random_in_ball(flat, norm, eps, generator)
        z = self._descend(target, shape, start, flat, y, threat, (lo, hi), free, radius, self.steps)
        if rules is None or not rules.discrete:
            return z.view(shape)

        repair = self.repair_steps if self.repair_steps is not None else max(5, self.steps // 2)
        rounded, discrete = self._round(z, flat, (lo, hi), rules, norm, eps)
        cont = free & ~discrete.unsqueeze(0)
        # the continuous features restart from their relaxed values, discrete ones fixed
        anchor = torch.where(cont, flat, rounded)
        rest = None
        if norm is Norm.L2:
            used = ((rounded - flat) * discrete.to(flat.dtype)).pow(2).sum(dim=1)
            rest = (eps**2 - used).clamp_min(0).sqrt()
        first = self._descend(target, shape, z, anchor, y, threat, (lo, hi), cont, rest, repair)
        with torch.no_grad():
            scores = target(first.view(shape))
        fooled = threat.goal.is_success(scores, y)
        value = self._objective(scores, y, threat)
        todo = (~fooled).nonzero().squeeze(1)
        if len(todo) == 0:
            return first.view(shape)
        # inputs still standing: every discrete feature as it was, the continuous ones free
        xs, zs = flat[todo], z[todo]
        radius2 = None if radius is None else radius[todo]
        second = self._descend(
            target,
            (len(todo), *shape[1:]),
            zs,
            xs,
            y[todo],
            threat,
            (lo[todo], hi[todo]),
            cont[todo],
            radius2,
            repair,
        )
        with torch.no_grad():
            scores2 = target(second.view((len(todo), *shape[1:])))
        better = threat.goal.is_success(scores2, y[todo]) | (
            self._objective(scores2, y[todo], threat) > value[todo]
        )
        first[todo[better]] = second[better]
        return first.view(shape)
