"""Model inversion: what does a model's output reveal about the inputs it was trained on?

Two attacks of the ``inversion`` family (ATLAS AML.T0024.001, "Invert AI Model"):

- ``mi-face`` reconstructs a representative input of a class from an image classifier by
  descending the model's cost for that class, with the model's gradients on a white-box target
  and with zeroth-order estimates of them (two queries per probe) on a score-based one;
- ``attribute-inference`` recovers one sensitive column of a tabular record from its other
  columns and the model's answer: every candidate value is tried and the one most consistent
  with the record's known label (weighted by the value's prior) wins.

Both count every query they make and stop at their ``max_queries``; the result says how many
they spent.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bastion.attacks.base import Configurable
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind

__all__ = [
    "AttributeInference",
    "AttributeResult",
    "InversionResult",
    "MIFace",
]

_TECHNIQUES = ("AML.T0024.001", "AML.T0024")


def _probabilities(scores: torch.Tensor, kind: OutputKind) -> torch.Tensor:
    """(N, C) probabilities from a target's raw scores."""
    if kind is OutputKind.LOGITS:
        return scores.float().softmax(dim=1)
    return scores.float()


@dataclass
class InversionResult:
    """Reconstructions of one representative input per class.

    Attributes:
        attack: the registry name.
        classes: (K,) the class each reconstruction stands for.
        images: (K, *input_shape) the reconstructions, within the target's bounds.
        confidence: (K,) the target's probability of each class on its reconstruction.
        gradients: ``exact`` (the target's own gradients) or ``estimated`` (zeroth order).
        steps: (K,) the descent steps each class took before it stopped.
        queries: queries spent on the target.
        seconds: wall time.
        notes: what the attack noted (a budget that stopped it).
        params: the attack's parameters.
    """

    attack: str
    classes: np.ndarray
    images: torch.Tensor
    confidence: np.ndarray
    gradients: str
    steps: np.ndarray
    queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


@register_attack(
    "mi-face",
    family="inversion",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    data_kinds=("image",),
    cost=40,
    defaults={"steps": 300},
    fast={"steps": 20, "samples": 10},
)
class MIFace(Configurable):
    """Reconstruct what a classifier takes each class to look like: starting from a blank
    input, descend the cost ``1 - p_class(x)`` (plus an optional total-variation prior that
    favours smooth images) along its normalized gradient, keep the lowest-cost input seen, and
    stop when the cost is small, when it has not improved for ``patience`` steps, or when the
    steps or queries run out.

    Paper: Fredrikson, Jha, Ristenpart, "Model Inversion Attacks that Exploit Confidence
    Information and Basic Countermeasures", CCS 2015 (the MI-Face algorithm); the zeroth-order
    estimates are antithetic Gaussian probes as in Ilyas, Engstrom, Athalye, Lin, "Black-box
    Adversarial Attacks with Limited Queries and Information", 2018, arXiv:1804.08598.

    Threat: score-based black box (the target's probabilities or logits); a white-box target's
    gradients are used when ``gradients`` is ``auto`` or ``exact``. Per step and class: one
    query, plus ``2 * samples`` for an estimated gradient.

    Args:
        steps: descent steps at most (300).
        step_size: the length of each step, as a share of the input range times the square
            root of the input's size (0.02: a per-feature change of about 2% of the range).
        objective: ``confidence`` (the paper's ``1 - p``) or ``log`` (``-log p``, which keeps
            a gradient where ``p`` is tiny).
        tv: weight of the total-variation prior (0.0: none); it needs no queries.
        gradients: ``auto`` (exact on a white-box target, estimated otherwise), ``exact`` or
            ``estimated``.
        samples: antithetic probe pairs per estimated gradient (20).
        sigma: the probes' standard deviation, as a share of the input range (0.01).
        patience: steps without improvement before a class stops (100).
        goal: the cost at which a class stops (0.001).
        start: the first input: ``middle`` of the bounds, ``lower`` bound (the paper's zeros)
            or ``uniform`` noise.
        max_queries: queries at most over every class (None: no limit of the attack's own;
            the target's budget always holds).

    Returns:
        an :class:`InversionResult`.

    Example:
        >>> result = MIFace(steps=200).run(target, classes=[0, 1])  # doctest: +SKIP
        >>> result.confidence  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 300,
        step_size: float = 0.02,
        objective: str = "log",
        tv: float = 0.0,
        gradients: str = "auto",
        samples: int = 20,
        sigma: float = 0.01,
        patience: int = 100,
        goal: float = 0.001,
        start: str = "middle",
        max_queries: int | None = None,
    ) -> None:
        self.steps = steps
        self.step_size = step_size
        self.objective = objective
        self.tv = tv
        self.gradients = gradients
        self.samples = samples
        self.sigma = sigma
        self.patience = patience
        self.goal = goal
        self.start = start
        self.max_queries = max_queries

    def _check_params(self) -> None:
        self._at_least(steps=1, samples=1, patience=1)
        if not self.step_size > 0 or not self.sigma > 0 or self.tv < 0:
            raise ConfigError("mi-face needs a positive step_size and sigma, and tv >= 0")
        if self.objective not in ("confidence", "log"):
            raise ConfigError(f"mi-face objective is confidence or log, got {self.objective!r}")
        if self.gradients not in ("auto", "exact", "estimated"):
            raise ConfigError(f"mi-face gradients is auto, exact or estimated: {self.gradients}")
        if self.start not in ("middle", "lower", "uniform"):
            raise ConfigError(f"mi-face start is middle, lower or uniform, got {self.start!r}")
        if self.max_queries is not None and self.max_queries < 1:
            raise ConfigError("mi-face max_queries must be at least 1")

    def run(
        self,
        target: Target,
        classes: list[int] | np.ndarray | torch.Tensor | None = None,
        *,
        seed: int = 0,
    ) -> InversionResult:
        """Reconstruct one input for each of ``classes`` (None: every class)."""
        entry = self.entry
        entry.require(access=target.access, norm=None, target=target.name)
        self._check_params()
        exact = self.gradients == "exact" or (
            self.gradients == "auto" and target.access is Access.WHITE_BOX
        )
        if exact and target.access is not Access.WHITE_BOX:
            raise ConfigError(
                f"mi-face gradients=exact needs a white-box target; {target.name} "
                f"gives {target.access.value}"
            )
        if target.input_shape is None:
            raise DataError(f"mi-face needs the target's input shape; {target.name} has none")
        if classes is None:
            wanted = np.arange(target.num_classes)
        else:
            wanted = np.asarray(
                classes.cpu().numpy() if isinstance(classes, torch.Tensor) else classes,
                dtype=np.int64,
            ).reshape(-1)
        if len(wanted) == 0:
            raise DataError("mi-face needs at least one class to reconstruct")
        if wanted.min() < 0 or wanted.max() >= target.num_classes:
            raise DataError(f"classes must lie in 0..{target.num_classes - 1}, got {wanted}")
        per_step = 1 + (0 if exact else 2 * self.samples)
        room = [b for b in (self.max_queries, target.queries_left) if b is not None]
        if room and min(room) < 2 * len(wanted) * per_step:
            raise ConfigError(
                f"mi-face needs at least {2 * len(wanted) * per_step} queries for "
                f"{len(wanted)} classes (one step each); it has {min(room)}"
            )
        before = target.queries
        started = time.perf_counter()
        notes: list[str] = []
        with target.inference_mode():
            images, steps, conf = self._descend(
                target, torch.from_numpy(wanted), exact, per_step, before, seed, notes
            )
        return InversionResult(
            attack=entry.name,
            classes=wanted,
            images=images,
            confidence=conf,
            gradients="exact" if exact else "estimated",
            steps=steps,
            queries=target.queries - before,
            seconds=time.perf_counter() - started,
            notes=notes,
            params=self.get_params(),
        )

    __call__ = run

    def _cost(self, p: torch.Tensor) -> torch.Tensor:
        if self.objective == "confidence":
            return 1 - p
        return -torch.log(p.clamp_min(1e-30))

    def _descend(
        self,
        target: Target,
        cls: torch.Tensor,
        exact: bool,
        per_step: int,
        before: int,
        seed: int,
        notes: list[str],
    ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
        lo, hi = target.bounds
        shape = tuple(target.input_shape or ())
        k = len(cls)
        gen = torch.Generator().manual_seed(seed)
        if self.start == "uniform":
            x = lo + (hi - lo) * torch.rand((k, *shape), generator=gen)
        else:
            x = torch.full((k, *shape), lo if self.start == "lower" else (lo + hi) / 2)
        x = x.to(target.device)
        cls = cls.to(target.device)
        rows = torch.arange(k, device=target.device)
        kind = target.output_kind
        step = self.step_size * (hi - lo) * math.sqrt(math.prod(shape))
        sigma = self.sigma * (hi - lo)

        def class_cost(points: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
            p = _probabilities(target.scores(points), kind)[torch.arange(len(points)), owners]
            return self._cost(p)

        best_x, best_cost = x.clone(), torch.full((k,), math.inf, device=x.device)
        stale = torch.zeros(k, dtype=torch.long, device=x.device)
        active = torch.ones(k, dtype=torch.bool, device=x.device)
        steps = torch.zeros(k, dtype=torch.long)
        limit = self.max_queries
        for _ in range(self.steps):
            idx = active.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            spent = target.queries - before
            left = [
                b
                for b in (None if limit is None else limit - spent, target.queries_left)
                if b is not None
            ]
            if left and min(left) < len(idx) * per_step:
                notes.append(f"the query budget stopped the descent after {spent:,} queries")
                break
            here, owners = x[idx], cls[idx]
            if exact:

                def loss(scores: torch.Tensor, owners: torch.Tensor = owners) -> torch.Tensor:
                    p = _probabilities(scores, kind)[torch.arange(len(scores)), owners]
                    return self._cost(p).sum()

                grad = target.gradient(here, loss)
                with torch.no_grad():
                    cost = class_cost(here, owners)
            else:
                cost = class_cost(here, owners)
                u = torch.randn((len(idx), self.samples, *shape), generator=gen).to(here)
                probes = here[:, None] + sigma * u
                both = torch.cat([probes, here[:, None] - sigma * u], dim=1)
                flat = both.reshape(-1, *shape).clamp(lo, hi)
                who = owners.repeat_interleave(2 * self.samples)
                values = class_cost(flat, who).reshape(len(idx), 2 * self.samples)
                diff = values[:, : self.samples] - values[:, self.samples :]
                grad = (diff.reshape(len(idx), self.samples, *([1] * len(shape))) * u).mean(1)
                grad = grad / (2 * sigma)
            better = cost < best_cost[idx]
            best_cost[idx] = torch.where(better, cost, best_cost[idx])
            best_x[idx[better]] = here[better]
            stale[idx] = torch.where(better, 0, stale[idx] + 1)
            steps[idx.cpu()] += 1
            done = (best_cost[idx] <= self.goal) | (stale[idx] >= self.patience)
            active[idx[done]] = False
            if self.tv > 0:
                grad = grad + self.tv * _tv_gradient(here)
            norm = grad.flatten(1).norm(dim=1).clamp_min(1e-12)
            moved = here - step * grad / norm.view(-1, *([1] * len(shape)))
            x[idx] = moved.clamp(lo, hi)
        final = best_x.detach()
        with torch.no_grad():
            p = _probabilities(target.scores(final), kind)[rows, cls]
        return final.cpu(), steps.numpy(), p.detach().cpu().double().numpy()


def _tv_gradient(x: torch.Tensor) -> torch.Tensor:
    """The gradient of the (squared-difference) total variation of images (N, C, H, W)."""
    if x.ndim != 4:
        return torch.zeros_like(x)
    with torch.enable_grad():
        z = x.detach().requires_grad_(True)
        tv = ((z[..., 1:, :] - z[..., :-1, :]) ** 2).sum() + (
            (z[..., :, 1:] - z[..., :, :-1]) ** 2
        ).sum()
        (grad,) = torch.autograd.grad(tv, z)
    return grad


@dataclass
class AttributeResult:
    """Guesses of one sensitive column, against the truth and a baseline.

    Attributes:
        attack: the registry name.
        feature: the column attacked.
        values: (V,) the candidate values tried (a category's value, or a bin's median).
        edges: the bins' inner edges when the column was binned (empty for categories).
        guesses: (N,) the index of the value guessed for each record.
        truth: (N,) the index of the value (or bin) each record truly has.
        baseline: the index the baseline guesses for every record (the prior's mode).
        prior: (V,) the prior over the values, from the adversary's data.
        queries: queries spent on the target.
        seconds: wall time.
        notes: what the attack noted.
        params: the attack's parameters.
    """

    attack: str
    feature: int
    values: np.ndarray
    edges: np.ndarray
    guesses: np.ndarray
    truth: np.ndarray
    baseline: int
    prior: np.ndarray
    queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def correct(self) -> int:
        return int((self.guesses == self.truth).sum())

    @property
    def accuracy(self) -> float:
        return self.correct / max(len(self.truth), 1)

    @property
    def baseline_correct(self) -> int:
        return int((self.truth == self.baseline).sum())

    @property
    def baseline_accuracy(self) -> float:
        return self.baseline_correct / max(len(self.truth), 1)


@register_attack(
    "attribute-inference",
    family="inversion",
    access=Access.LABELS,
    techniques=_TECHNIQUES,
    data_kinds=("tabular",),
    cost=20,
    requires=("feature",),
)
class AttributeInference(Configurable):
    """Recover a sensitive column of a record from its other columns and the model's answer:
    set the column to each candidate value in turn, ask the model, and guess the value under
    which the record's known label is likeliest, weighted by how common the value is.

    Paper: Fredrikson, Lantz, Jha, Lin, Page, Ristenpart, "Privacy in Pharmacogenetics: An
    End-to-End Case Study of Personalized Warfarin Dosing", USENIX Security 2014 (the
    maximum-a-posteriori inversion); the baseline guesses the prior's most common value
    without asking the model.

    Threat: label-only black box (with scores, the label's probability weighs each value); the
    record's other columns and its true label; the column's distribution from the adversary's
    own rows (``x_aux``) or the ``values`` given. ``V`` queries per record for ``V`` values.

    Args:
        feature: the index of the sensitive column (required).
        values: the candidate values (None: the distinct values of the column in ``x_aux``,
            or, when there are more than ``bins``, its ``bins`` quantile bins, each tried at
            its median and judged correct when the truth falls in the same bin).
        bins: the most values tried; a column with more is binned (4).
        use_scores: weigh values by the label's probability when the target gives scores
            (True); otherwise a value counts only by whether it yields the label.
        prior: weigh values by their frequency in the adversary's data (True).

    Returns:
        an :class:`AttributeResult`.

    Example:
        >>> r = AttributeInference(feature=3).run(target, x, y, x_aux=x_pub)  # doctest: +SKIP
        >>> r.accuracy, r.baseline_accuracy  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        feature: int | None = None,
        values: list[float] | None = None,
        bins: int = 4,
        use_scores: bool = True,
        prior: bool = True,
    ) -> None:
        self.feature = feature
        self.values = values
        self.bins = bins
        self.use_scores = use_scores
        self.prior = prior

    def _check_params(self) -> None:
        self._at_least(bins=2)
        if self.feature is None:
            raise ConfigError(
                "attribute-inference needs the sensitive column: feature=N "
                "(--set attribute-inference.feature=N)"
            )
        if self.values is not None and len(self.values) < 2:
            raise ConfigError("attribute-inference needs at least 2 candidate values")

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        x_aux: torch.Tensor | None = None,
        seed: int = 0,
    ) -> AttributeResult:
        """Guess column ``feature`` of every record in ``x`` from its other columns and its
        label ``y``; ``x``'s own values of that column are used only to measure."""
        entry = self.entry
        entry.require(access=target.access, norm=None, target=target.name)
        self._check_params()
        target.check_inputs(x, y)
        if x.ndim != 2:
            raise DataError(
                f"attribute-inference needs rows of features (N, d), got {tuple(x.shape)}"
            )
        d = int(x.shape[1])
        f = int(self.feature)  # type: ignore[arg-type]
        if not 0 <= f < d:
            raise ConfigError(f"feature must be a column index in 0..{d - 1}, got {f}")
        if x_aux is None and self.values is None:
            raise DataError(
                "attribute-inference needs the column's distribution: the adversary's rows "
                "(x_aux) or the candidate values"
            )
        column = x[:, f].detach().cpu().double().numpy()
        aux = None if x_aux is None else x_aux[:, f].detach().cpu().double().numpy()
        values, edges = self._candidates(aux)
        truth = _assign(column, values, edges)
        if aux is not None and len(aux):
            counts = np.bincount(_assign(aux, values, edges), minlength=len(values))
            prior = (counts + 1.0) / (counts.sum() + len(values))
        else:
            prior = np.full(len(values), 1.0 / len(values))
        before = target.queries
        started = time.perf_counter()
        scores_ok = self.use_scores and target.output_kind is not OutputKind.LABELS
        lo, hi = target.bounds
        support = np.zeros((len(x), len(values)))
        yy = y.detach().long()
        with target.inference_mode():
            for j, v in enumerate(values):
                probe = x.detach().clone()
                probe[:, f] = float(min(max(v, lo), hi))
                out = target.outputs(probe)
                if scores_ok:
                    p = _probabilities(out, target.output_kind)[
                        torch.arange(len(x)), yy.to(out.device)
                    ]
                    support[:, j] = np.log(np.clip(p.detach().cpu().double().numpy(), 1e-12, None))
                else:
                    pred = out if out.ndim == 1 else out.argmax(dim=1)
                    # a value that does not yield the label stays possible, far less likely
                    support[:, j] = np.where((pred.cpu() == yy.cpu()).numpy(), 0.0, -20.0)
        if self.prior:
            support += np.log(prior)[None, :]
        return AttributeResult(
            attack=entry.name,
            feature=f,
            values=values,
            edges=edges,
            guesses=support.argmax(axis=1),
            truth=truth,
            baseline=int(prior.argmax()),
            prior=prior,
            queries=target.queries - before,
            seconds=time.perf_counter() - started,
            notes=[] if scores_ok or not self.use_scores else ["the target gives labels only"],
            params=self.get_params(),
        )

    __call__ = run

    def _candidates(self, aux: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """The values to try, and the bins' inner edges (empty for categories)."""
        if self.values is not None:
            return np.asarray(sorted(set(self.values)), dtype=np.float64), np.zeros(0)
        assert aux is not None  # run() checked
        distinct = np.unique(aux)
        if len(distinct) <= self.bins:
            return distinct, np.zeros(0)
        edges = np.unique(np.quantile(aux, np.linspace(0, 1, self.bins + 1)[1:-1]))
        which = np.digitize(aux, edges)
        values = np.array([np.median(aux[which == b]) for b in range(len(edges) + 1)])
        return values, edges


def _assign(column: np.ndarray, values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The index of each entry's value (the nearest category) or bin."""
    if len(edges):
        return np.asarray(np.digitize(column, edges))
    return np.asarray(np.abs(column[:, None] - values[None, :]).argmin(axis=1))
