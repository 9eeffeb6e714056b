"""HopSkipJump: decision-based black-box evasion from predicted labels alone."""

from __future__ import annotations

import math

import torch

from bastion.attacks._ops import distances
from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["HopSkipJump"]

# the geometric step search gives up after this many halvings (a step ~1/4000 of the first)
_MAX_HALVINGS = 12
# inputs per call to the target: the gradient estimate asks for many at once
_BATCH = 1024


class _Oracle:
    """The target seen as a yes/no question: is this point adversarial for its input?

    Every point asked about is charged to the input it belongs to, and the closest point
    found adversarial so far is kept for each input: whatever the search does next, the
    attack can always hand back a point the target itself called adversarial.
    """

    def __init__(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        budget: int,
        early_stop: bool,
    ) -> None:
        self.target = target
        self.early_stop = early_stop
        self.shape = tuple(x.shape[1:])
        self.x = x.reshape(len(x), -1)
        self.y = y
        self.threat = threat
        self.budget = budget
        n = len(self.x)
        self.spent = torch.zeros(n, dtype=torch.long, device=x.device)
        self.best = self.x.clone()
        self.best_dist = torch.full((n,), math.inf, dtype=torch.float64, device=x.device)

    def left(self, idx: torch.Tensor) -> torch.Tensor:
        return self.budget - self.spent[idx]

    def open(self, idx: torch.Tensor) -> torch.Tensor:
        """Which of the inputs ``idx`` are worth another query: budget left, and (when
        stopping early) no adversarial point within epsilon yet."""
        keep = self.left(idx) > 0
        if self.early_stop:
            keep &= self.best_dist[idx] > self.threat.epsilon
        return keep

    def __call__(self, points: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
        """Whether each of ``points`` (flat, one row per point) is adversarial for its owner."""
        if len(points) == 0:
            return torch.zeros(0, dtype=torch.bool, device=points.device)
        with torch.no_grad():
            outputs = self.target.outputs(points.view(-1, *self.shape), batch_size=_BATCH)
        self.spent.index_add_(0, owners, torch.ones_like(owners))
        # only the decision is read, so a label-only endpoint and a score one look alike
        adversarial = self.threat.goal.is_success(outputs, self.y[owners]).to(points.device)
        hit = adversarial.nonzero().squeeze(1)
        if len(hit):
            self.keep_closest(points[hit], owners[hit])
        return adversarial

    def keep_closest(self, points: torch.Tensor, owners: torch.Tensor) -> None:
        """Note ``points``, known adversarial, where one is closer than its owner's best."""
        dist = distances(points - self.x[owners], self.threat.norm).double()
        # the closest hit per owner: sort by distance, then (stably) by owner; first of each
        order = dist.argsort(stable=True)
        order = order[owners[order].argsort(stable=True)]
        owners, dist, points = owners[order], dist[order], points[order]
        first = torch.ones_like(owners, dtype=torch.bool)
        first[1:] = owners[1:] != owners[:-1]
        owners, dist, points = owners[first], dist[first], points[first]
        closer = dist < self.best_dist[owners]
        self.best[owners[closer]] = points[closer]
        self.best_dist[owners[closer]] = dist[closer]


@register_attack(
    "hopskipjump",
    family="evasion",
    access=Access.LABELS,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.001", "AML.T0043", "AML.T0015"),
    cost=90,
    defaults={"max_queries": 1000},
    fast={"max_queries": 200, "init_evals": 20},
)
class HopSkipJump(Attack):
    """Walk along the decision boundary toward the input, steering by predicted labels only.

    The attack starts from a point the target already misclassifies (uniform noise in the
    bounds; for a targeted threat, first another input of the batch given the target label),
    bisects toward the input until it sits on the decision boundary, then repeats three
    moves: estimate the boundary's normal from the labels of a cloud of nearby points (their
    number grows with the iteration), take a geometrically shrinking step along it that stays
    adversarial, and bisect back to the boundary. Every query asks only whether a point is
    adversarial, so a label-only endpoint suffices. The closest adversarial point the target
    confirmed is returned; an input stops once that point lies within epsilon.

    Paper: Chen, Jordan, Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based
    Attack", 2020, arXiv:1904.02144.

    Threat: label-only black-box (scores, if given, are read as decisions); Linf or L2;
    untargeted or targeted.

    Args:
        max_queries: the most queries per input (1000). A threat's ``queries_per_input``
            lowers it.
        steps: the most boundary iterations (64); the query budget usually ends them first.
        init_evals: points in the first gradient-direction estimate (100); iteration ``t``
            uses ``init_evals * sqrt(t)``, at most ``max_evals``.
        max_evals: the most points in one estimate (10000).
        gamma: sets the bisection tolerance ``gamma / d**1.5`` (L2) or ``gamma / d**2``
            (Linf) for ``d`` features, relative to the bounds, and with it the probe radius
            (1.0).
        init_tries: random draws per input in search of a starting point (100).
        early_stop: stop an input once its adversarial point lies within epsilon (True);
            False spends the budget shrinking the perturbation, to measure the smallest.

    Returns: an :class:`~bastion.core.results.AttackResult` with ``queries_per_sample``.

    Example:
        >>> attack = HopSkipJump(max_queries=2000)  # doctest: +SKIP
        >>> result = attack.run(label_only_target, x, y, eps=1.0, norm="l2")  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        max_queries: int = 1000,
        steps: int = 64,
        init_evals: int = 100,
        max_evals: int = 10000,
        gamma: float = 1.0,
        init_tries: int = 100,
        early_stop: bool = True,
    ) -> None:
        self.max_queries = max_queries
        self.steps = steps
        self.init_evals = init_evals
        self.max_evals = max_evals
        self.gamma = gamma
        self.init_tries = init_tries
        self.early_stop = early_stop

    def _check_params(self) -> None:
        self._at_least(max_queries=1, init_evals=1, max_evals=1, init_tries=1, steps=0)
        if self.max_evals < self.init_evals:
            raise ConfigError(
                f"max_evals ({self.max_evals}) must be at least init_evals ({self.init_evals})"
            )
        if not (math.isfinite(self.gamma) and self.gamma > 0):
            raise ConfigError(f"gamma must be a positive number, got {self.gamma}")

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
        budget = self.queries_per_input(threat)
        n = len(x)
        flat = x.reshape(n, -1)
        d = max(flat.shape[1], 1)
        linf = threat.norm is Norm.LINF
        lo, hi = target.bounds
        span = hi - lo
        theta = self.gamma / (d**2 if linf else d**1.5)
        # Linf bisects over boxes around the input, L2 along the straight line to it
        path, tol = ("box", theta * span) if linf else ("line", theta)
        oracle = _Oracle(target, x, y, threat, budget, self.early_stop)

        start, found = self._start(oracle, flat, threat, generator, lo, hi)
        idx = found.nonzero().squeeze(1)
        # from the start to the boundary: along the line first, then (Linf) over boxes
        point = self._bisect(oracle, flat[idx], start[idx], idx, "line", theta)
        if linf:
            point = self._bisect(oracle, flat[idx], point, idx, path, tol)
        cur = flat.clone()
        cur[idx] = point
        reserve = math.ceil(math.log2(1 / theta)) + 2  # one bisection and a step, roughly
        for t in range(1, self.steps + 1):
            idx = idx[oracle.open(idx)]
            if len(idx) == 0:
                break
            planned = min(int(self.init_evals * math.sqrt(t)), self.max_evals)
            evals = (oracle.left(idx) - reserve).clamp(max=planned)
            idx, evals = idx[evals >= 1], evals[evals >= 1]
            if len(idx) == 0:
                break
            x0, xb = flat[idx], cur[idx]
            dist = distances(xb - x0, threat.norm)
            if t == 1:
                delta = torch.full_like(dist, 0.1 * span)
            else:
                delta = (d * theta if linf else math.sqrt(d) * theta) * dist
            grad = self._direction(oracle, xb, idx, evals, delta, linf, generator, lo, hi)
            update = grad.sign() if linf else grad
            moved, stepped = self._step(oracle, xb, idx, update, dist / math.sqrt(t), lo, hi)
            sel = moved.nonzero().squeeze(1)
            if len(sel) == 0:
                continue
            cur[idx[sel]] = self._bisect(oracle, x0[sel], stepped[sel], idx[sel], path, tol)
        log.queries_per_sample = oracle.spent.cpu()
        return oracle.best.view_as(x)

    # ------------------------------------------------------------------ the pieces
    def _start(
        self,
        oracle: _Oracle,
        flat: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        lo: float,
        hi: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A point the target calls adversarial for each input, and which inputs have one."""
        n = len(flat)
        start = flat.clone()
        found = torch.zeros(n, dtype=torch.bool, device=flat.device)
        everyone = torch.arange(n, device=flat.device)
        if threat.targeted and n > 1:
            # the nearest other input of the batch that already has the wanted label
            outputs = oracle.target.outputs(flat.view(n, *oracle.shape), _BATCH)
            oracle.spent += 1
            p = math.inf if threat.norm is Norm.LINF else 2.0
            for chunk in torch.split(everyone, _BATCH // 4):
                # wanted[j, i]: input j has the label that input chunk[i] wants
                wanted = threat.goal.is_success(
                    outputs.repeat_interleave(len(chunk), dim=0), oracle.y[chunk].repeat(n)
                ).view(n, len(chunk))
                gaps = torch.cdist(flat[chunk].double(), flat.double(), p=p)
                gaps = gaps.masked_fill(~wanted.T.to(flat.device), math.inf)
                gaps[torch.arange(len(chunk), device=gaps.device), chunk] = math.inf
                nearest = gaps.argmin(dim=1)
                has = torch.isfinite(gaps.gather(1, nearest[:, None]).squeeze(1))
                start[chunk[has]] = flat[nearest[has]]
                found[chunk[has]] = True
            oracle.keep_closest(start[found], everyone[found])
        for _ in range(self.init_tries):
            todo = everyone[~found]
            todo = todo[oracle.open(todo)]
            if len(todo) == 0:
                break
            noise = torch.rand((len(todo), flat.shape[1]), generator=generator)
            noise = (lo + (hi - lo) * noise).to(device=flat.device, dtype=flat.dtype)
            hit = oracle(noise, todo)
            start[todo[hit]] = noise[hit]
            found[todo[hit]] = True
        return start, found

    @staticmethod
    def _bisect(
        oracle: _Oracle,
        x0: torch.Tensor,
        far: torch.Tensor,
        idx: torch.Tensor,
        path: str,
        tol: float,
    ) -> torch.Tensor:
        """The point of each path from ``x0`` to ``far`` (adversarial) nearest the boundary.

        ``line``: the segment, ``x0 + a (far - x0)`` with ``a`` in [0, 1], to within ``tol``.
        ``box``: ``far`` clipped to the Linf box of radius ``a`` around ``x0``, ``a`` up to
        their Linf distance, to within ``tol`` or ``tol`` times that distance if smaller.
        """
        m = len(idx)
        low = torch.zeros(m, dtype=torch.float64, device=x0.device)
        if path == "line":
            high = torch.ones_like(low)
            limit = torch.full_like(low, tol)
        else:
            high = distances(far - x0, Norm.LINF).double()
            limit = torch.minimum(high * tol, torch.full_like(high, tol))

        def at(a: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
            w = a.to(x0.dtype)[:, None]
            if path == "line":
                return torch.lerp(x0[rows], far[rows], w)
            return torch.minimum(torch.maximum(far[rows], x0[rows] - w), x0[rows] + w)

        while True:
            rows = ((high - low > limit) & oracle.open(idx)).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            mid = (low[rows] + high[rows]) / 2
            adversarial = oracle(at(mid, rows), idx[rows])
            high[rows] = torch.where(adversarial, mid, high[rows])
            low[rows] = torch.where(adversarial, low[rows], mid)
        everything = torch.arange(m, device=x0.device)
        return at(high, everything)

    @staticmethod
    def _direction(
        oracle: _Oracle,
        xb: torch.Tensor,
        idx: torch.Tensor,
        evals: torch.Tensor,
        delta: torch.Tensor,
        linf: bool,
        generator: torch.Generator,
        lo: float,
        hi: float,
    ) -> torch.Tensor:
        """A unit estimate of the boundary's normal at each ``xb``, from ``evals`` labels.

        Random unit directions probe the boundary at radius ``delta``: each adversarial
        answer pulls the estimate toward its direction, each clean one away, with the mean
        answer subtracted as a baseline (the paper's variance reduction).
        """
        m, d = xb.shape
        k = int(evals.max())
        shape = (m, k, d)
        if linf:
            rv = torch.rand(shape, generator=generator) * 2 - 1
        else:
            rv = torch.randn(shape, generator=generator)
        rv = rv.to(device=xb.device, dtype=xb.dtype)
        rv = rv / rv.norm(dim=2, keepdim=True).clamp_min(1e-12)
        step = delta.to(xb.dtype).clamp_min(1e-12)[:, None, None]
        probes = (xb[:, None] + step * rv).clamp(lo, hi)
        rv = (probes - xb[:, None]) / step  # the direction actually probed, after clipping
        valid = torch.arange(k, device=xb.device)[None, :] < evals[:, None].to(xb.device)
        owners = idx[:, None].expand(m, k)[valid]
        sign = torch.zeros((m, k), dtype=xb.dtype, device=xb.device)
        sign[valid] = oracle(probes[valid], owners).to(xb.dtype) * 2 - 1
        count = evals.to(device=xb.device, dtype=xb.dtype)
        mean = sign.sum(dim=1) / count
        unanimous = mean.abs() == 1
        weight = torch.where(unanimous[:, None], mean[:, None], (sign - mean[:, None]))
        grad = (weight * valid)[:, :, None].mul(rv).sum(dim=1) / count[:, None]
        unit: torch.Tensor = grad / grad.norm(dim=1, keepdim=True).clamp_min(1e-12)
        return unit

    @staticmethod
    def _step(
        oracle: _Oracle,
        xb: torch.Tensor,
        idx: torch.Tensor,
        update: torch.Tensor,
        size: torch.Tensor,
        lo: float,
        hi: float,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A step from each ``xb`` along ``update``, halved until the target calls it
        adversarial: which inputs moved, and where to."""
        m = len(xb)
        size = size.to(xb.dtype).clone()
        moved = torch.zeros(m, dtype=torch.bool, device=xb.device)
        stepped = xb.clone()
        for _ in range(_MAX_HALVINGS):
            rows = ((~moved) & oracle.open(idx)).nonzero().squeeze(1)
            if len(rows) == 0:
                break
            cand = (xb[rows] + size[rows, None] * update[rows]).clamp(lo, hi)
            adversarial = oracle(cand, idx[rows])
            stepped[rows[adversarial]] = cand[adversarial]
            moved[rows[adversarial]] = True
            size[rows[~adversarial]] /= 2
        return moved, stepped
