"""Randomized smoothing: a classifier that votes over Gaussian noise, and its L2 certificate.

Paper: Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized Smoothing",
2019, arXiv:1902.02918.

Given any base classifier ``f``, the smoothed classifier ``g`` answers, for an input ``x``, the
class that ``f`` most often gives to ``x + e`` with ``e ~ N(0, s^2 I)``. If that class has
probability at least ``pA > 1/2`` under the noise, ``g`` gives the same answer to every point
within L2 distance ``s * PhiInv(pA)`` of ``x`` (``PhiInv`` is the standard normal quantile).
``g`` cannot be evaluated exactly, so :meth:`SmoothedClassifier.certify` estimates ``pA``
from samples, replaces it by a one-sided Clopper-Pearson lower bound that holds with
probability at least ``1 - alpha``, and abstains where that bound is not above one half.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind

__all__ = [
    "ABSTAIN",
    "Certificate",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
    "max_certifiable_radius",
    "predict_from_counts",
]

#: the label :meth:`SmoothedClassifier.predict` and :meth:`~SmoothedClassifier.certify` give
#: where they abstain
ABSTAIN = -1


def clopper_pearson_lower(successes: np.ndarray | int, trials: int, alpha: float) -> np.ndarray:
    """One-sided lower confidence bound at level ``1 - alpha`` on a binomial probability.

    The Clopper-Pearson ("exact") bound: the ``alpha`` quantile of Beta(k, n - k + 1). For
    ``k = 0`` it is 0; for ``k = n`` the Beta(n, 1) quantile has the closed form
    ``alpha ** (1 / n)``, used as is.
    """
    from scipy.stats import beta

    k = np.asarray(successes, dtype=np.float64)
    out = np.zeros_like(k)
    inside = (k > 0) & (k < trials)
    if inside.any():
        out[inside] = beta.ppf(alpha, k[inside], trials - k[inside] + 1)
    out[k >= trials] = alpha ** (1.0 / trials)
    return out


def max_certifiable_radius(sigma: float, n: int, alpha: float) -> float:
    """The largest radius any input can be certified at with ``n`` samples at level ``alpha``,
    for noise of standard deviation ``sigma`` (the radius is in its units): every sample
    voting for the class gives ``pA_lower = alpha ** (1 / n)``."""
    from scipy.stats import norm

    return float(sigma * norm.ppf(alpha ** (1.0 / n)))


def certified_accuracy(
    radii: np.ndarray | torch.Tensor | Sequence[float],
    correct: np.ndarray | torch.Tensor | Sequence[bool],
    grid: np.ndarray | Sequence[float],
) -> np.ndarray:
    """The share of inputs certified correct at each radius of ``grid``.

    An input counts at radius ``r`` when its certified prediction is right (``correct``)
    and its certified radius is at least ``r``; an abstention is never correct.
    """
    r = np.asarray(radii, dtype=np.float64).reshape(-1)
    ok = np.asarray(correct, dtype=bool).reshape(-1)
    if r.shape != ok.shape:
        raise ConfigError(f"{r.size} radii but {ok.size} correctness flags")
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if r.size == 0:
        return np.zeros_like(g)
    return ((r[None, :] >= g[:, None]) & ok[None, :]).mean(axis=1)  # type: ignore[no-any-return]


def predict_from_counts(counts: torch.Tensor, alpha: float) -> torch.Tensor:
    """Cohen's PREDICT on vote counts: the top class where a two-sided binomial test tells it
    from the runner-up at level ``alpha``, else :data:`ABSTAIN`."""
    from scipy.stats import binomtest

    top2 = counts.topk(2, dim=1)
    out = torch.full((len(counts),), ABSTAIN, dtype=torch.long)
    for i, (na, nb) in enumerate(top2.values.tolist()):
        if binomtest(int(na), int(na + nb), 0.5).pvalue <= alpha:
            out[i] = top2.indices[i, 0]
    return out


@dataclass
class Certificate:
    """What :meth:`SmoothedClassifier.certify` concluded for each input.

    Attributes:
        prediction: (N,) the certified class, or :data:`ABSTAIN` (-1).
        radius: (N,) the certified L2 radius in input units (0 where it abstained).
        pa_lower: (N,) the lower confidence bound on the top class's probability under noise.
        counts: (N, C) the votes of the ``n`` estimation samples (the ``n0`` selection samples
            only choose the class).
        sigma: the noise level relative to the input range; ``scale`` is it in input units.
        n0, n, alpha: the settings it ran with.
        queries: base-model queries spent (``N * (n0 + n)``).
        seconds: wall time.
    """

    prediction: torch.Tensor
    radius: torch.Tensor
    pa_lower: torch.Tensor
    counts: torch.Tensor
    sigma: float
    scale: float
    n0: int
    n: int
    alpha: float
    queries: int
    seconds: float

    @property
    def abstained(self) -> torch.Tensor:
        """(N,) True where the certificate abstained."""
        return self.prediction == ABSTAIN

    def correct(self, y: torch.Tensor | np.ndarray) -> torch.Tensor:
        """(N,) True where the certified class is the label (never where it abstained)."""
        labels = (
            y.detach().cpu() if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))
        )
        return self.prediction == labels.long()

    def certified_accuracy(
        self, y: torch.Tensor | np.ndarray, grid: Sequence[float] | np.ndarray
    ) -> np.ndarray:
        """The certified accuracy at each radius of ``grid``."""
        return certified_accuracy(self.radius, self.correct(y), grid)


class SmoothedClassifier(Target):
    """A base classifier smoothed by Gaussian noise: predicts with abstention and certifies.

    Paper: Cohen, Rosenfeld, Kolter, "Certified Adversarial Robustness via Randomized
    Smoothing", 2019, arXiv:1902.02918.

    The noise is ``N(0, scale^2 I)`` with ``scale = sigma * (high - low)`` in the base
    target's bounds: ``sigma`` is relative to the input range, so ``sigma=0.25`` means the
    same on images in [0, 1] and in [0, 255]. Radii are in input units (L2 distances in the
    same space as an attack's epsilon); for inputs in [0, 1] the two coincide. Noisy inputs
    are not clipped to the bounds, as in the paper.

    The base target may be any target (white-box or a black box answering labels): only its
    hard decisions are used, one base query per noise sample.

    Threat: any L2-bounded perturbation of an input (white-box adversary included); the
    guarantee holds with probability at least ``1 - alpha`` per input, over the noise.

    Seen as a target it answers the vote frequencies of ``n`` noise samples
    (``output="scores"``: score-based access, no gradients, since the votes are not
    differentiable) or the plurality vote (``output="labels"``). Each answer draws fresh
    noise, so the same input can get different answers, as it would from a deployment.
    It counts one query per input answered; the base target counts one per noise sample.

    Args:
        base: the base classifier.
        sigma: noise level relative to the input range (0.25).
        n: noise samples per answer of :meth:`predict` and of the target's outputs (100).
        alpha: the tests' level: :meth:`predict` abstains unless the top class beats the
            runner-up at this level (0.001).
        batch_size: noisy inputs per base-model call (1000).
        output: ``scores`` (vote frequencies) or ``labels`` (plurality vote).
        seed: seeds the noise; the same seed and calls give the same answers (0).
        name: the target's name (the base's, with ``+smoothing``).

    Example::

        smoothed = SmoothedClassifier(target, sigma=0.25)
        cert = smoothed.certify(x, n0=100, n=1000, alpha=0.001)
        cert.certified_accuracy(y, [0.0, 0.25, 0.5])
    """

    def __init__(
        self,
        base: Target,
        sigma: float = 0.25,
        *,
        n: int = 100,
        alpha: float = 0.001,
        batch_size: int = 1000,
        output: Literal["scores", "labels"] = "scores",
        seed: int = 0,
        name: str | None = None,
    ) -> None:
        _check_sigma(sigma)
        _check_samples("n", n)
        _check_alpha(alpha)
        _check_samples("batch_size", batch_size)
        if output not in ("scores", "labels"):
            raise ConfigError(f"output must be 'scores' or 'labels', got {output!r}")
        super().__init__(
            num_classes=base.num_classes,
            bounds=base.bounds,
            input_shape=base.input_shape,
            name=name or f"{base.name}+smoothing",
        )
        self.base = base
        self.sigma = float(sigma)
        self.n = n
        self.alpha = alpha
        self.batch_size = batch_size
        self.output = output
        self.seed = seed
        self.output_kind = OutputKind.PROBABILITIES if output == "scores" else OutputKind.LABELS
        self.access = Access.SCORES if output == "scores" else Access.LABELS
        self._generator = torch.Generator().manual_seed(seed)

    @property
    def scale(self) -> float:
        """The noise's standard deviation in input units."""
        return self.sigma * (self.bounds[1] - self.bounds[0])

    @property
    def device(self) -> torch.device:
        return self.base.device

    @contextlib.contextmanager
    def inference_mode(self) -> Iterator[None]:
        with self.base.inference_mode():
            yield

    @contextlib.contextmanager
    def _charged(self, n: int) -> Iterator[None]:
        """Count ``n`` answered inputs; given back if answering them fails."""
        self._charge(n)
        try:
            yield
        except BaseException:
            self._refund(n)
            raise

    # ----------------------------------------------------------------- sampling
    def _generator_for(self, seed: int | None) -> torch.Generator:
        return self._generator if seed is None else torch.Generator().manual_seed(seed)

    def sample_counts(
        self,
        x: torch.Tensor,
        num: int,
        *,
        batch_size: int | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """(N, C) how often the base classifier gives each class to ``x + noise``, over
        ``num`` noise draws per input. Inputs and draws are packed into base-model batches of
        ``batch_size`` noisy inputs, so a few samples for many inputs batch as well as many
        samples for one."""
        _check_samples("the number of samples", num)
        size = self.batch_size if batch_size is None else batch_size
        _check_samples("batch_size", size)
        gen = generator if generator is not None else self._generator_for(seed)
        x = x.detach()
        total = int(x.shape[0]) * num
        counts = torch.zeros((int(x.shape[0]), self.num_classes), dtype=torch.long)
        device = self.base.device
        with self.base.inference_mode(), torch.no_grad():
            for start in range(0, total, size):
                rows = torch.arange(start, min(start + size, total)) // num
                noise = torch.randn((len(rows), *x.shape[1:]), generator=gen, dtype=x.dtype)
                noisy = (x[rows] + self.scale * noise.to(x.device)).to(device)
                out = self.base(noisy)
                labels = (out if out.ndim == 1 else out.argmax(dim=1)).long().cpu()
                counts.index_put_((rows, labels), torch.ones_like(labels), accumulate=True)
        return counts

    # ----------------------------------------------------------------- Cohen's procedures
    def predict(  # type: ignore[override]
        self,
        x: torch.Tensor,
        n: int | None = None,
        alpha: float | None = None,
        batch_size: int | None = None,
        *,
        seed: int | None = None,
    ) -> torch.Tensor:
        """(N,) the smoothed classifier's class, or :data:`ABSTAIN` (-1) where ``n`` noise
        samples cannot tell the top class from the runner-up (two-sided binomial test at
        level ``alpha``). A class it returns is ``g(x)`` with probability at least
        ``1 - alpha``. Counts one query per input (and ``n`` at the base target)."""
        n = self.n if n is None else n
        alpha = self.alpha if alpha is None else alpha
        _check_samples("n", n)
        _check_alpha(alpha)
        with self._charged(int(x.shape[0])):
            counts = self.sample_counts(x, n, batch_size=batch_size, seed=seed)
        return predict_from_counts(counts, alpha).to(x.device)

    def certify(
        self,
        x: torch.Tensor,
        n0: int = 100,
        n: int = 1000,
        alpha: float = 0.001,
        batch_size: int | None = None,
        *,
        seed: int | None = None,
    ) -> Certificate:
        """Cohen's CERTIFY for each input: ``n0`` noise samples choose the class, ``n``
        fresh ones bound its probability ``pA`` from below (one-sided Clopper-Pearson at
        level ``1 - alpha``); the radius is ``scale * PhiInv(pA_lower)``, and the
        certificate abstains where ``pA_lower < 1/2``.

        With probability at least ``1 - alpha`` (per input), a class it returns is what the
        smoothed classifier answers at every point within the radius. ``n`` bounds the
        largest radius it can certify (:func:`max_certifiable_radius`). Counts one query per
        input (and ``n0 + n`` at the base target).
        """
        from scipy.stats import norm

        _check_samples("n0", n0)
        _check_samples("n", n)
        _check_alpha(alpha)
        started = time.perf_counter()
        before = self.base.queries
        gen = self._generator_for(seed)
        with self._charged(int(x.shape[0])):
            # the class is chosen on samples independent of those that bound its probability
            guess = self.sample_counts(x, n0, batch_size=batch_size, generator=gen).argmax(dim=1)
            counts = self.sample_counts(x, n, batch_size=batch_size, generator=gen)
        top = counts.gather(1, guess[:, None]).squeeze(1).numpy()
        pa = clopper_pearson_lower(top, n, alpha)
        certified = pa >= 0.5
        radius = np.zeros_like(pa)
        radius[certified] = self.scale * norm.ppf(pa[certified])
        abstain = torch.full_like(guess, ABSTAIN)
        prediction = torch.where(torch.from_numpy(certified), guess, abstain)
        return Certificate(
            prediction=prediction,
            radius=torch.from_numpy(radius),
            pa_lower=torch.from_numpy(pa),
            counts=counts,
            sigma=self.sigma,
            scale=self.scale,
            n0=n0,
            n=n,
            alpha=alpha,
            queries=self.base.queries - before,
            seconds=time.perf_counter() - started,
        )

    # ----------------------------------------------------------------- as a target
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        counts = self.sample_counts(x, self.n)
        if self.output_kind is OutputKind.LABELS:
            return counts.argmax(dim=1).to(x.device)
        return (counts.to(torch.float32) / self.n).to(x.device)

    def describe(self) -> dict[str, Any]:
        out = dict(super().describe())
        out["smoothing"] = {
            "sigma": self.sigma,
            "scale": self.scale,
            "samples": self.n,
            "alpha": self.alpha,
            "base": self.base.describe(),
        }
        return out


def _check_sigma(sigma: float) -> None:
    if not (isinstance(sigma, (int, float)) and math.isfinite(sigma) and sigma > 0):
        raise ConfigError(f"sigma must be a positive number, got {sigma!r}")


def _check_alpha(alpha: float) -> None:
    if not (isinstance(alpha, (int, float)) and 0 < alpha < 1):
        raise ConfigError(f"alpha must be in (0, 1), got {alpha!r}")


def _check_samples(what: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a whole number of at least 1, got {value!r}")
