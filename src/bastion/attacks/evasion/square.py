"""Square Attack: score-based black-box evasion by random square updates."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from bastion.attacks.base import Attack, RunLog
from bastion.core.criteria import Criterion
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, OutputKind, Threat

__all__ = ["SquareAttack"]

# The fraction of pixels changed shrinks as queries are spent: halved at these points of a
# 10,000-query run (Andriushchenko et al., section 3), scaled to the budget in hand.
_SCHEDULE = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
# the shares of the budget at which successive halving stops the worse half
_HALVING_POINTS = (0.05, 0.1, 0.2, 0.4)


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """View a batch as (N, C, H, W): tabular rows become 1 x 1 x D images."""
    if x.ndim == 4:
        return x
    if x.ndim == 3:
        return x.unsqueeze(1)
    return x.reshape(x.shape[0], 1, 1, -1)


@register_attack(
    "square",
    family="evasion",
    access=Access.SCORES,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.001", "AML.T0043", "AML.T0015"),
    cost=80,
    defaults={"max_queries": 1000},
    fast={"max_queries": 150},
)
class SquareAttack(Attack):
    """Random search over square windows of the epsilon ball, using scores only.

    Each step picks a random square window, proposes a new perturbation there, and keeps it
    when the margin between the true class and the best other class falls. Under Linf the
    window is set to a random corner of the ball (one sign per channel). Under L2 the
    window gets a centred pattern of two opposite-signed "mountains" added to what it held,
    and a second window is cleared: its share of the epsilon budget (and any the perturbation
    has not used) moves into the first, so the perturbation keeps norm epsilon while its mass
    is redistributed. The window shrinks on a fixed schedule. Tabular inputs are treated as
    one row of features, windows as runs of neighbouring features.

    Paper: Andriushchenko, Croce, Flammarion, Hein, "Square Attack: a query-efficient
    black-box adversarial attack via random search", 2020, arXiv:1912.00049.

    Threat: score-based black-box (logits or probabilities); Linf or L2; untargeted or
    targeted.

    Args:
        max_queries: the most queries per input, the initial one included (1000). A threat's
            ``queries_per_input`` lowers it.
        p_init: the fraction of features the first windows cover (0.1).
        halving: successive halving of the inputs still standing (False): at 5%, 10%, 20%
            and 40% of the budget, the half of them with the largest margins (the furthest
            from falling) stop, so the queries go to the inputs likeliest to fall. It spends
            about a sixth of the queries on inputs that never fall, and may miss a few that
            would have fallen late: the evaluation presets use it where the budget is tight.

    Returns: an :class:`~bastion.core.results.AttackResult` with ``queries_per_sample``.

    Example:
        >>> result = SquareAttack(max_queries=500).run(target, x, y, eps=0.1)  # doctest: +SKIP
        >>> result = SquareAttack().run(target, x, y, eps=1.0, norm="l2")  # doctest: +SKIP
    """

    def __init__(
        self, *, max_queries: int = 1000, p_init: float = 0.1, halving: bool = False
    ) -> None:
        self.max_queries = max_queries
        self.p_init = p_init
        self.halving = halving

    def _check_params(self) -> None:
        self._at_least(max_queries=1)
        if not 0 < self.p_init <= 1:
            raise ConfigError(f"p_init must be in (0, 1], got {self.p_init}")

    def _standing(self, margin: torch.Tensor, active: torch.Tensor, i: int, budget: int) -> None:
        """Successive halving: at its checkpoints, stop the worse half of the inputs still
        standing (in place on ``active``)."""
        if not self.halving or i not in {int(f * budget) for f in _HALVING_POINTS}:
            return
        alive = (margin > 0) & active
        if int(alive.sum()) < 2:
            return
        cut = margin[alive].median()
        active &= ~(alive & (margin > cut))

    def _fraction(self, iteration: int, budget: int) -> float:
        point = int(iteration / budget * 10000)
        halvings = sum(point > s for s in _SCHEDULE)
        return float(self.p_init) / float(2**halvings)

    @staticmethod
    def _margin(
        target: Target, scores: torch.Tensor, y: torch.Tensor, goal: Criterion
    ) -> torch.Tensor:
        if target.output_kind is OutputKind.PROBABILITIES:
            # on a softmax output, log-probability margins equal logit margins
            scores = scores.clamp_min(1e-30).log()
        return goal.margin(scores, y)

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
        if threat.norm is Norm.L2:
            return self._attack_l2(target, x, y, threat, generator, log, budget)
        return self._attack_linf(target, x, y, threat, generator, log, budget)

    def _attack_linf(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
        budget: int,
    ) -> torch.Tensor:
        eps = threat.epsilon
        lo, hi = target.bounds
        img = _as_image(x)
        n, c, h, w = img.shape
        signs = _signs(generator, img)
        # start at vertical stripes: one random corner of the ball per column and channel
        start = (img + eps * signs(n, c, 1, w)).clamp(lo, hi)

        def propose(i: int, todo: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
            sh, sw = _side(self._fraction(i, budget), h, w, smallest=1)
            k = len(todo)
            window = _mask(*_window(k, h, w, sh, sw, generator, img.device), sh, sw, h, w)
            x0, cur = img[todo], best[todo]
            corner = eps * signs(k, c, 1, 1)
            cand = torch.where(window, (x0 + corner).clamp(lo, hi), cur)
            # a window already at that corner would waste the query: flip it to the other one
            same = ((cand - cur).abs() * window).flatten(1).amax(dim=1) < 1e-7
            if bool(same.any()):
                flipped = torch.where(window, (x0 - corner).clamp(lo, hi), cur)
                cand = torch.where(same.view(-1, 1, 1, 1), flipped, cand)
            return cand

        return self._search(target, x, y, threat, log, budget, start, propose)

    def _attack_l2(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
        budget: int,
    ) -> torch.Tensor:
        eps = threat.epsilon
        lo, hi = target.bounds
        img = _as_image(x)
        n, c, h, w = img.shape
        signs = _signs(generator, img)
        # start at a grid of mountain pairs, one random sign per block and channel
        bh, bw = (1, max(w // 5, 2)) if h == 1 else (max(h // 5, 2), max(w // 5, 2))
        bh, bw = min(bh, h), min(bw, w)
        block = _mountains(bh, bw, img)
        grid = torch.zeros_like(img)
        top0, left0 = (h - h // bh * bh) // 2, (w - w // bw * bw) // 2
        for r in range(top0, h - bh + 1, bh):
            for col in range(left0, w - bw + 1, bw):
                grid[:, :, r : r + bh, col : col + bw] = block * signs(n, c, 1, 1)
        start = (img + _rescale(grid, eps)).clamp(lo, hi)

        def propose(i: int, todo: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
            sh, sw = _side(self._fraction(i, budget), h, w, smallest=2)
            k = len(todo)
            x0 = img[todo]
            delta = best[todo] - x0
            top, left = _window(k, h, w, sh, sw, generator, img.device)
            turn = None
            if sh == sw:
                turn = torch.randint(0, 2, (k,), generator=generator).bool().to(img.device)
            first, pattern = _placed(_mountains(sh, sw, img), top, left, h, w, turn)
            pattern = pattern * signs(k, c, 1, 1)
            second = _mask(*_window(k, h, w, sh, sw, generator, img.device), sh, sw, h, w)
            # the first window: its current direction plus a new mountain pair, given the
            # mass of both windows and any budget the perturbation does not yet use
            in_first = delta * first
            unit = in_first / _channel_norm(in_first).clamp_min(1e-12)
            spare = (eps**2 - _channel_norm(delta).pow(2).sum(dim=1, keepdim=True)).clamp_min(0)
            mass = (spare / c + _channel_norm(delta * (first | second)).pow(2)).sqrt()
            fresh = unit + pattern
            fresh = fresh / _channel_norm(fresh).clamp_min(1e-12) * mass
            proposal = torch.where(first, fresh, torch.where(second, 0.0, delta))
            return (x0 + _rescale(proposal, eps)).clamp(lo, hi)

        return self._search(target, x, y, threat, log, budget, start, propose)

    def _search(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        log: RunLog,
        budget: int,
        best: torch.Tensor,
        propose: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """The random search both norms share: from ``best`` (image-shaped), ask ``propose``
        for a candidate per input still standing and keep it where the margin falls."""
        n = len(x)
        with torch.no_grad():
            margin = self._margin(target, target(best.view_as(x)), y, threat.goal)
        spent = torch.ones(n, dtype=torch.long)
        active = torch.ones(n, dtype=torch.bool, device=best.device)
        for i in range(1, budget):
            self._standing(margin, active, i, budget)
            todo = ((margin > 0) & active).nonzero().squeeze(1)
            if len(todo) == 0:
                break
            cand = propose(i, todo, best)
            with torch.no_grad():
                new = self._margin(
                    target, target(cand.view((len(todo), *x.shape[1:]))), y[todo], threat.goal
                )
            spent[todo.cpu()] += 1
            better = new < margin[todo]
            best[todo[better]] = cand[better]
            margin[todo[better]] = new[better]
        log.queries_per_sample = spent
        return best.view_as(x)


def _signs(generator: torch.Generator, like: torch.Tensor) -> Callable[..., torch.Tensor]:
    """A draw of random signs (+1 or -1) of a given shape, in ``like``'s dtype and device."""

    def draw(*shape: int) -> torch.Tensor:
        bits = torch.randint(0, 2, shape, generator=generator, dtype=torch.int8)
        return (bits.to(like.dtype) * 2 - 1).to(like.device)

    return draw


def _side(p: float, h: int, w: int, smallest: int) -> tuple[int, int]:
    """A window covering about a share ``p`` of an (h, w) image, at least ``smallest`` on a
    side: a square, or a run of features for a tabular row (h = 1)."""
    if h == 1:
        return 1, min(max(round(p * w), smallest), w)
    side = min(max(round(math.sqrt(p * h * w)), smallest), max(h - 1, smallest), h, w)
    return side, side


def _channel_norm(t: torch.Tensor) -> torch.Tensor:
    """The L2 norm of each sample's channel, shape (N, C, 1, 1)."""
    return t.pow(2).sum(dim=(2, 3), keepdim=True).sqrt()


def _rescale(delta: torch.Tensor, eps: float) -> torch.Tensor:
    """``delta`` scaled to L2 norm ``eps`` per sample."""
    size = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    scaled: torch.Tensor = delta * (eps / size).view(-1, 1, 1, 1)
    return scaled


def _mountains(sh: int, sw: int, like: torch.Tensor) -> torch.Tensor:
    """A (sh, sw) pattern of unit norm: two centred mountains of opposite sign, side by side.

    Each mountain rises in square rings toward its centre, ring ``j`` from the edge holding
    ``sum(1 / (m + 1 - i)**2 for i in range(j + 1))`` for ``m`` rings, as in the paper. The
    pattern sums to about zero, so it changes the window's look, not its brightness.
    """
    halves = [sw // 2, sw - sw // 2] if sw > 1 else [sw]
    parts = []
    for sign, width in zip((1.0, -1.0), halves, strict=False):
        rows = torch.arange(sh, dtype=torch.float64)
        cols = torch.arange(width, dtype=torch.float64)
        # distance (in rings) from the centre of the half
        ring = torch.maximum(
            (rows - (sh - 1) / 2).abs().floor()[:, None], (cols - (width - 1) / 2).abs().floor()
        )
        m = int(ring.max())
        depth = m - ring  # 0 at the edge
        weights = 1.0 / (m + 1 - torch.arange(m + 1, dtype=torch.float64)) ** 2
        cumulative = weights.cumsum(0)
        parts.append(sign * cumulative[depth.long()])
    pattern = torch.cat(parts, dim=1)
    unit: torch.Tensor = pattern / pattern.norm()
    return unit.to(device=like.device, dtype=like.dtype)


def _window(
    k: int, h: int, w: int, sh: int, sw: int, generator: torch.Generator, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random (sh, sw) window per sample: its top row and left column, each (k, 1, 1, 1)."""
    top = torch.randint(0, h - sh + 1, (k,), generator=generator)
    left = torch.randint(0, w - sw + 1, (k,), generator=generator)
    return top.to(device).view(-1, 1, 1, 1), left.to(device).view(-1, 1, 1, 1)


def _mask(top: torch.Tensor, left: torch.Tensor, sh: int, sw: int, h: int, w: int) -> torch.Tensor:
    """Each sample's window as a boolean mask of shape (k, 1, h, w)."""
    rows = torch.arange(h, device=top.device).view(1, 1, h, 1) - top
    cols = torch.arange(w, device=top.device).view(1, 1, 1, w) - left
    return (rows >= 0) & (rows < sh) & (cols >= 0) & (cols < sw)


def _placed(
    pattern: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    h: int,
    w: int,
    turn: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sample's window as a mask of shape (k, 1, h, w), and ``pattern`` written into it
    (zero elsewhere); where ``turn`` holds, a square pattern is written transposed."""
    sh, sw = pattern.shape
    mask = _mask(top, left, sh, sw, h, w)
    r = (torch.arange(h, device=top.device).view(1, 1, h, 1) - top).clamp(0, sh - 1)
    col = (torch.arange(w, device=top.device).view(1, 1, 1, w) - left).clamp(0, sw - 1)
    values: torch.Tensor = pattern[r, col]
    if turn is not None:
        values = torch.where(turn.view(-1, 1, 1, 1), pattern.T[r, col], values)
    return mask, values * mask
