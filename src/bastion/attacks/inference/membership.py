"""Membership inference: was this record in the training set?

Each attack gives every candidate a score, higher meaning "member"; the base class measures
how well the scores separate the true members from the rest (AUC, and the true-positive rate
at low false-positive rates, which is what a confident claim about one person needs). The
membership labels are used only for that measurement, never by the attacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.attacks.base import Configurable
from bastion.attacks.inference.roc import auc, auc_interval, roc, tpr_at_fpr
from bastion.attacks.inference.shadows import ShadowJob, shadow_recipe, train_shadows
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind
from bastion.zoo.fit import FitSettings

__all__ = [
    "LabelOnlyMembership",
    "LiRA",
    "LossThreshold",
    "MembershipInference",
    "MembershipResult",
    "ShadowMembership",
]

_TECHNIQUES = ("AML.T0024.000", "AML.T0024")
_EPS = 1e-12


@dataclass
class MembershipResult:
    """Scores per candidate (higher: more likely a member) and how well they separate.

    Attributes:
        attack: the registry name.
        scores: (N,) the attack's score per candidate.
        member: (N,) whether each candidate was truly a member (for measurement only).
        queries: queries spent on the target.
        seconds: wall time (shadow training included).
        notes: what the attack noted.
        params: the attack's parameters.
    """

    attack: str
    scores: np.ndarray
    member: np.ndarray
    queries: int
    seconds: float
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def auc(self) -> float:
        return auc(self.scores, self.member)

    @property
    def auc_ci(self) -> tuple[float, float]:
        return auc_interval(self.auc, int(self.member.sum()), int((~self.member).sum()))

    def tpr_at(self, fpr: float) -> tuple[int, int]:
        """``(members caught, members)`` at a threshold flagging at most ``fpr`` of the rest."""
        return tpr_at_fpr(self.scores, self.member, fpr)

    def roc(self) -> tuple[np.ndarray, np.ndarray]:
        return roc(self.scores, self.member)


class MembershipInference(Configurable):
    """Base class of membership attacks. Subclasses implement :meth:`_scores`."""

    def run(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        member: np.ndarray | torch.Tensor,
        *,
        x_aux: torch.Tensor | None = None,
        y_aux: torch.Tensor | None = None,
        seed: int = 0,
    ) -> MembershipResult:
        """Score candidates ``x`` (labels ``y``) and measure the scores against ``member``.

        Args:
            target: the model attacked, at least the access the attack needs.
            x, y: the candidates and their true labels.
            member: whether each candidate was in the training set; used only to measure.
            x_aux, y_aux: labelled data the adversary holds besides the candidates, known
                not to be members (shadow models train on it).
            seed: seeds every random choice.
        """
        entry = self.entry
        entry.require(access=target.access, norm=None, target=target.name)
        self._check_params()
        target.check_inputs(x, y)
        truth = np.asarray(
            member.cpu().numpy() if isinstance(member, torch.Tensor) else member, dtype=bool
        )
        if truth.shape != (len(x),):
            raise DataError(f"{len(x)} candidates but {truth.size} membership labels")
        if x_aux is not None:
            if y_aux is None or len(y_aux) != len(x_aux):
                raise DataError("the auxiliary data needs one label per input")
            target.check_inputs(x_aux, y_aux)
        before = target.queries
        started = time.perf_counter()
        notes: list[str] = []
        gen = np.random.default_rng(seed)
        with target.inference_mode():
            scores = self._scores(target, x.detach(), y.detach().long(), x_aux, y_aux, gen, notes)
        return MembershipResult(
            attack=entry.name,
            scores=np.asarray(scores, dtype=np.float64),
            member=truth,
            queries=target.queries - before,
            seconds=time.perf_counter() - started,
            notes=notes,
            params=self.get_params(),
        )

    __call__ = run

    def _scores(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        x_aux: torch.Tensor | None,
        y_aux: torch.Tensor | None,
        gen: np.random.Generator,
        notes: list[str],
    ) -> np.ndarray:
        raise NotImplementedError


def _log_probabilities(target: Target, x: torch.Tensor) -> np.ndarray:
    """(N, C) log-probabilities in float64: from logits through a stable log-softmax, so a
    confident answer keeps its distance from 1 (which float32 probabilities round away)."""
    out = target.outputs(x).detach().double().cpu()
    if target.output_kind is OutputKind.LOGITS:
        return out.log_softmax(dim=1).numpy()  # type: ignore[no-any-return]
    return np.log(np.clip(out.numpy(), _EPS, None))  # type: ignore[no-any-return]


def _true_class(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.asarray(logp[np.arange(len(y)), y])


def _logit_confidence(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    """``log p_y - log(1 - p_y)`` from log-probabilities: the scaled confidence LiRA models
    as Gaussian, with ``1 - p_y`` summed over the other classes so it never rounds to 0."""
    rows = np.arange(len(y))
    others = logp.copy()
    others[rows, y] = -np.inf
    top = others.max(axis=1, keepdims=True)
    rest = top[:, 0] + np.log(np.exp(others - top).sum(axis=1))
    return np.maximum(logp[rows, y] - rest, -1e6)  # type: ignore[no-any-return]


@register_attack(
    "loss-threshold",
    family="membership",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    cost=10,
)
class LossThreshold(MembershipInference):
    """Score each candidate by the model's loss on it (or its confidence in the true label):
    training points have lower loss, so a threshold on it tells members apart.

    Paper: Yeom, Giacomelli, Fredrikson, Jha, "Privacy Risk in Machine Learning: Analyzing
    the Connection to Overfitting", 2018, arXiv:1709.01604.

    Threat: score-based black box; one query per candidate; no other data.

    Args:
        statistic: ``loss`` (cross-entropy) or ``confidence`` (the true class's probability).

    Returns:
        a :class:`MembershipResult`.
    """

    def __init__(self, *, statistic: str = "loss") -> None:
        self.statistic = statistic

    def _check_params(self) -> None:
        if self.statistic not in ("loss", "confidence"):
            raise ConfigError(f"loss-threshold statistic is loss or confidence: {self.statistic}")

    def _scores(self, target, x, y, x_aux, y_aux, gen, notes):  # type: ignore[no-untyped-def]
        logp = _true_class(_log_probabilities(target, x), y.cpu().numpy())
        # the loss is -log p_y, so -loss ranks like the confidence p_y; both kept for reports
        return np.exp(logp) if self.statistic == "confidence" else logp


@register_attack(
    "label-only-membership",
    family="membership",
    access=Access.LABELS,
    techniques=_TECHNIQUES,
    cost=30,
    defaults={"copies": 16},
    fast={"copies": 8},
)
class LabelOnlyMembership(MembershipInference):
    """Score each candidate by how robustly the model keeps its true label under random
    noise: training points sit further from the boundary, so more noisy copies keep it.

    Paper: Choquette-Choo, Tramer, Carlini, Papernot, "Label-Only Membership Inference
    Attacks", 2021, arXiv:2007.14321 (the noise-robustness variant).

    Threat: label-only black box (it reads labels only); ``copies + 1`` queries per candidate.

    Args:
        copies: noisy copies per candidate (16).
        noise: the Gaussian noise's standard deviation as a share of the input range (0.05).

    Returns:
        a :class:`MembershipResult`.
    """

    def __init__(self, *, copies: int = 16, noise: float = 0.05) -> None:
        self.copies = copies
        self.noise = noise

    def _check_params(self) -> None:
        if self.copies < 1 or not self.noise > 0:
            raise ConfigError("label-only-membership needs copies >= 1 and a positive noise")

    def _scores(self, target, x, y, x_aux, y_aux, gen, notes):  # type: ignore[no-untyped-def]
        lo, hi = target.bounds
        tg = torch.Generator().manual_seed(int(gen.integers(2**31)))
        kept = (target.predict(x) == y).double()
        for _ in range(self.copies):
            noisy = x + self.noise * (hi - lo) * torch.randn(x.shape, generator=tg).to(x)
            kept += (target.predict(noisy.clamp(lo, hi)) == y).double()
        return (kept / (self.copies + 1)).cpu().numpy()  # type: ignore[no-any-return]


class _ShadowSettings(MembershipInference):
    """Shared shadow settings: how many, how trained, where cached, in how many processes."""

    shadows: int
    arch: str
    hidden: int
    epochs: int
    lr: float
    weight_decay: float
    batch_size: int
    label_smoothing: float
    patience: int | None
    n_jobs: int
    cache_dir: str | None

    @property
    def settings(self) -> FitSettings:
        return FitSettings(
            arch=self.arch,
            hidden=self.hidden,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            label_smoothing=self.label_smoothing,
            patience=self.patience,
        )

    def _check_shadows(self, least: int) -> None:
        if self.shadows < least:
            raise ConfigError(f"{self.registry_name} needs at least {least} shadows")
        self.settings.check()

    def _train(
        self,
        target: Target,
        x: np.ndarray,
        y: np.ndarray,
        xq: np.ndarray,
        jobs: list[ShadowJob],
    ) -> np.ndarray:
        return train_shadows(
            shadow_recipe(target, self.settings),
            x,
            y,
            xq,
            target.num_classes,
            jobs,
            n_jobs=self.n_jobs,
            cache_dir=Path(self.cache_dir) if self.cache_dir else None,
        )


@register_attack(
    "shadow",
    family="membership",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    cost=50,
    defaults={"shadows": 4, "epochs": 30, "n_jobs": -1},
    fast={"shadows": 2, "epochs": 10},
)
class ShadowMembership(_ShadowSettings):
    """Train shadow models on data like the target's, each on one half of it, and learn from
    their answers (sorted probabilities, the true class's probability and loss) what a member's
    answer looks like; that classifier scores the candidates.

    Paper: Shokri, Stronati, Song, Shmatikov, "Membership Inference Attacks against Machine
    Learning Models", 2017, arXiv:1610.05820.

    Threat: score-based black box; one query per candidate; labelled data from the same
    distribution (``x_aux``) and the training recipe (a scikit-learn target's estimator is
    cloned; otherwise the settings below).

    Args:
        shadows: shadow models (4).
        arch, hidden, epochs, lr, weight_decay, batch_size, label_smoothing, patience:
            the shadows' recipe for a non-scikit-learn target (an MLP or a CNN, 100 epochs,
            no weight decay, no label smoothing, no early stopping; see
            :class:`~bastion.zoo.fit.FitSettings`).
        n_jobs: processes that train shadows (1; -1 for every core).
        cache_dir: a folder that keeps the shadows' answers between runs (None).

    Returns:
        a :class:`MembershipResult`.
    """

    def __init__(
        self,
        *,
        shadows: int = 4,
        arch: str = "auto",
        hidden: int = 128,
        epochs: int = 100,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        label_smoothing: float = 0.0,
        patience: int | None = None,
        n_jobs: int = 1,
        cache_dir: str | None = None,
    ) -> None:
        self.shadows = shadows
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.patience = patience
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir

    def _check_params(self) -> None:
        self._check_shadows(1)

    def _scores(self, target, x, y, x_aux, y_aux, gen, notes):  # type: ignore[no-untyped-def]
        from sklearn.ensemble import HistGradientBoostingClassifier

        if x_aux is None or y_aux is None or len(x_aux) < 4:
            raise DataError("shadow models need labelled data of the adversary's own (x_aux)")
        xa, ya = x_aux.cpu().numpy(), y_aux.cpu().numpy()
        jobs = []
        for i in range(self.shadows):
            order = gen.permutation(len(xa))
            jobs.append(ShadowJob(i, np.sort(order[: len(xa) // 2]), int(gen.integers(2**31))))
        proba = self._train(target, xa, ya, xa, jobs)
        feats, labels = [], []
        for job, p in zip(jobs, proba, strict=True):
            inside = np.zeros(len(xa), dtype=bool)
            inside[job.train] = True
            feats.append(_features(p, ya))
            labels.append(inside)
        clf = HistGradientBoostingClassifier(max_iter=100, random_state=0)
        clf.fit(np.concatenate(feats), np.concatenate(labels))
        mine = _features(_log_probabilities(target, x), y.cpu().numpy())
        return clf.predict_proba(mine)[:, 1]  # type: ignore[no-any-return]


def _features(logp: np.ndarray, y: np.ndarray) -> np.ndarray:
    top = -np.sort(-np.exp(logp), axis=1)[:, :3]
    if top.shape[1] < 3:
        top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])))
    lp = _true_class(logp, y)
    return np.column_stack([top, np.exp(lp), lp, _logit_confidence(logp, y)])


@register_attack(
    "lira",
    family="membership",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    cost=60,
    defaults={"shadows": 8, "epochs": 30, "n_jobs": -1},
    fast={"shadows": 4, "epochs": 10},
)
class LiRA(_ShadowSettings):
    """The likelihood-ratio attack: for each candidate, model the target's scaled confidence
    ``log(p_y / (1 - p_y))`` as Gaussian over shadow models trained with it (IN) and without
    it (OUT), and score how much likelier the target's value is under IN than under OUT.
    Offline, only OUT shadows are trained (on the adversary's own data, never the candidates),
    and the score is how far the target's value lies above the OUT distribution.

    Paper: Carlini, Chien, Nasr, Song, Terzis, Tramer, "Membership Inference Attacks From
    First Principles", 2022, arXiv:2112.03570.

    Threat: score-based black box; one query per candidate; the training recipe (a
    scikit-learn target's estimator is cloned, else the settings below); online: the
    candidates themselves to train on, and optionally ``x_aux``; offline: ``x_aux``.

    Args:
        shadows: shadow models (16); online, each candidate is IN for about half.
        online: train IN and OUT shadows (True), or OUT only (False).
        global_variance: one variance for every candidate (True), as the paper advises with
            fewer than 64 shadows.
        queries: answers per candidate (1): with more, the target and the shadows are also
            asked about ``queries - 1`` noisy copies of each candidate (Gaussian noise of
            ``noise`` times the input range, the same copies for all), each copy gets its
            own Gaussian fits, and the scores add up (the paper's augmented queries).
        noise: the copies' noise, as a share of the input range (0.02).
        arch, hidden, epochs, lr, weight_decay, batch_size, label_smoothing, patience:
            the shadows' recipe for a non-scikit-learn target (see
            :class:`~bastion.zoo.fit.FitSettings`).
        n_jobs: processes that train shadows (1; -1 for every core).
        cache_dir: a folder that keeps the shadows' answers between runs (None).

    Returns:
        a :class:`MembershipResult`.

    Example:
        >>> result = LiRA(shadows=16, n_jobs=-1).run(target, x, y, member)  # doctest: +SKIP
        >>> result.tpr_at(0.01)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        shadows: int = 16,
        online: bool = True,
        global_variance: bool = True,
        queries: int = 1,
        noise: float = 0.02,
        arch: str = "auto",
        hidden: int = 128,
        epochs: int = 100,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        batch_size: int = 64,
        label_smoothing: float = 0.0,
        patience: int | None = None,
        n_jobs: int = 1,
        cache_dir: str | None = None,
    ) -> None:
        self.shadows = shadows
        self.online = online
        self.global_variance = global_variance
        self.queries = queries
        self.noise = noise
        self.arch = arch
        self.hidden = hidden
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.patience = patience
        self.n_jobs = n_jobs
        self.cache_dir = cache_dir

    def _check_params(self) -> None:
        self._check_shadows(2)
        self._at_least(queries=1)
        if not self.noise > 0:
            raise ConfigError(f"lira noise must be positive, got {self.noise}")

    def _scores(self, target, x, y, x_aux, y_aux, gen, notes):  # type: ignore[no-untyped-def]
        xc, yc = x.cpu().numpy(), y.cpu().numpy()
        if self.online:
            parts_x = [xc] + ([x_aux.cpu().numpy()] if x_aux is not None else [])
            parts_y = [yc] + ([y_aux.cpu().numpy()] if y_aux is not None else [])
            pop_x, pop_y = np.concatenate(parts_x), np.concatenate(parts_y)
        else:
            if x_aux is None or y_aux is None or len(x_aux) < 4:
                raise DataError("offline LiRA trains its shadows on the adversary's data: x_aux")
            pop_x, pop_y = x_aux.cpu().numpy(), y_aux.cpu().numpy()
        n = len(pop_x)
        jobs, masks = [], []
        for i in range(self.shadows):
            keep = np.zeros(n, dtype=bool)
            keep[gen.permutation(n)[: n // 2]] = True
            jobs.append(ShadowJob(i, np.flatnonzero(keep), int(gen.integers(2**31))))
            masks.append(keep[: len(xc)] if self.online else np.zeros(len(xc), dtype=bool))
        lo, hi = target.bounds
        views = [xc]
        tg = torch.Generator().manual_seed(int(gen.integers(2**31)))
        for _ in range(self.queries - 1):
            shift = self.noise * (hi - lo) * torch.randn(x.shape, generator=tg).numpy()
            views.append(np.clip(xc + shift.astype(xc.dtype), lo, hi))
        xq = np.concatenate(views)
        proba = self._train(target, pop_x, pop_y, xq, jobs)
        yq = np.tile(yc, self.queries)
        inside = np.stack(masks)
        seen = _logit_confidence(
            _log_probabilities(target, torch.from_numpy(xq).to(x)), yq
        ).reshape(self.queries, len(xc))
        total = np.zeros(len(xc))
        for v in range(self.queries):
            part = slice(v * len(xc), (v + 1) * len(xc))
            phi = np.stack([_logit_confidence(p[part], yc) for p in proba])  # (shadows, N)
            observed = seen[v]
            out_mu, out_sd = _gaussian(phi, ~inside, self.global_variance)
            if not self.online:
                total += (observed - out_mu) / out_sd
                continue
            in_mu, in_sd = _gaussian(phi, inside, self.global_variance)
            total += _log_normal(observed, in_mu, in_sd) - _log_normal(observed, out_mu, out_sd)
        missing = ~inside.any(axis=0) | inside.all(axis=0)
        if self.online and missing.any():
            notes.append(f"{int(missing.sum())} candidates lacked IN or OUT shadows")
        return total


def _gaussian(
    phi: np.ndarray, mask: np.ndarray, global_variance: bool
) -> tuple[np.ndarray, np.ndarray]:
    """Per-candidate mean and standard deviation of ``phi`` over the shadows in ``mask``."""
    count = mask.sum(axis=0)
    total = np.where(mask, phi, 0.0).sum(axis=0)
    overall = float(phi[mask].mean()) if mask.any() else 0.0
    mu = np.where(count > 0, total / np.maximum(count, 1), overall)
    dev = np.where(mask, (phi - mu) ** 2, 0.0)
    if global_variance:
        sd = np.full(phi.shape[1], math.sqrt(dev.sum() / max(int(mask.sum()) - 1, 1)))
    else:
        sd = np.sqrt(dev.sum(axis=0) / np.maximum(count - 1, 1))
    return mu, np.maximum(sd, 1e-6)


def _log_normal(x: np.ndarray, mu: np.ndarray, sd: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sd) ** 2 - np.log(sd)  # type: ignore[no-any-return]
