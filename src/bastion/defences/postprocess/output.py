"""Output hardening: fewer digits, fewer classes, or labels only."""

from __future__ import annotations

import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.threat import Access, OutputKind
from bastion.defences.base import Postprocessor

__all__ = ["LabelOnly", "ReverseSigmoid", "RoundScores", "ScoreNoise", "TopK"]

_MITIGATIONS = ("AML.M0002",)
# what output hardening makes harder: score-based evasion, extraction, membership inference
_TECHNIQUES = ("AML.T0043.001", "AML.T0024.002", "AML.T0024.000")


class _ScoreHardening(Postprocessor):
    """Answers probabilities made less informative by :meth:`harden`; labels pass through.
    Logits become probabilities first, so the answer never reveals the logits' scale."""

    def output_kind(self, inner: OutputKind) -> OutputKind:
        return OutputKind.LABELS if inner is OutputKind.LABELS else OutputKind.PROBABILITIES

    def transform(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        if kind is OutputKind.LABELS:
            return outputs
        probs = outputs.softmax(dim=1) if kind is OutputKind.LOGITS else outputs
        return self.harden(probs.detach())

    def harden(self, probs: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@register_defence(
    "round",
    family="output-hardening",
    defence_kind="postprocessor",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    mitigations=_MITIGATIONS,
    defaults={"decimals": 2},
    fast={"decimals": 1},
)
class RoundScores(_ScoreHardening):
    """Return probabilities rounded to ``decimals`` digits: small changes of a score vanish.

    Paper: Tramer, Zhang, Juels, Reiter, Ristenpart, "Stealing Machine Learning Models via
    Prediction APIs", 2016, arXiv:1609.02943 (rounding as a countermeasure). Logits are turned
    into probabilities first, so the answer never reveals the logits' scale.

    Args:
        decimals: digits kept, 0 to 6 (2).
    """

    def __init__(self, *, decimals: int = 2) -> None:
        self.decimals = decimals

    def _check_params(self) -> None:
        if not 0 <= self.decimals <= 6:
            raise ConfigError(f"round decimals must be between 0 and 6, got {self.decimals}")

    def harden(self, probs: torch.Tensor) -> torch.Tensor:
        return torch.round(probs, decimals=self.decimals)


@register_defence(
    "topk",
    family="output-hardening",
    defence_kind="postprocessor",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    mitigations=_MITIGATIONS,
    defaults={"k": 1},
    fast={"k": 2},
)
class TopK(_ScoreHardening):
    """Return the ``k`` highest probabilities and zeros for the other classes.

    Paper: Shokri, Stronati, Song, Shmatikov, "Membership Inference Attacks against Machine
    Learning Models", 2017, arXiv:1610.05820 (restricting the prediction vector to the top k).

    Args:
        k: classes whose probability is returned (1).
    """

    def __init__(self, *, k: int = 1) -> None:
        self.k = k

    def _check_params(self) -> None:
        if self.k < 1:
            raise ConfigError(f"topk k must be at least 1, got {self.k}")

    def harden(self, probs: torch.Tensor) -> torch.Tensor:
        k = min(self.k, probs.shape[1])
        kept = torch.zeros_like(probs)
        top = probs.topk(k, dim=1)
        return kept.scatter(1, top.indices, top.values)


@register_defence(
    "labels",
    family="output-hardening",
    defence_kind="postprocessor",
    access=Access.LABELS,
    techniques=_TECHNIQUES,
    mitigations=_MITIGATIONS,
)
class LabelOnly(Postprocessor):
    """Return only the predicted label: no scores for an adversary to climb.

    Paper: Tramer et al. 2016, arXiv:1609.02943; a label-only answer still leaks through
    decision-based attacks (Brendel, Rauber, Bethge 2017, arXiv:1712.04248), which a scan of
    the defended target measures.
    """

    def output_kind(self, inner: OutputKind) -> OutputKind:
        return OutputKind.LABELS

    def transform(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        return outputs if kind is OutputKind.LABELS else outputs.argmax(dim=1)


@register_defence(
    "reverse-sigmoid",
    family="output-hardening",
    defence_kind="postprocessor",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    mitigations=_MITIGATIONS,
    defaults={"beta": 1.0, "gamma": 0.2},
    fast={"beta": 1.0, "gamma": 0.2},
)
class ReverseSigmoid(_ScoreHardening):
    """Return probabilities pushed away from what they are by a reverse-sigmoid perturbation:
    ``p - beta * (sigmoid(gamma * logit(p)) - 1/2)``, clipped and renormalized. A copy trained
    on the answers learns the perturbed, non-monotone scores; the labels mostly survive.

    Paper: Lee, Edwards, Molloy, Srivastava, "Defending Against Neural Network Model Stealing
    Attacks Using Deceptive Perturbations", 2019 (IEEE S&P Workshops), arXiv:1806.00054.

    Args:
        beta: the perturbation's size (1.0); larger hides more and may change some labels.
        gamma: the sigmoid's slope (0.2).
    """

    def __init__(self, *, beta: float = 1.0, gamma: float = 0.2) -> None:
        self.beta = beta
        self.gamma = gamma

    def _check_params(self) -> None:
        if not (self.beta > 0 and self.gamma > 0):
            raise ConfigError(
                f"reverse-sigmoid beta and gamma must be positive: {self.beta}, {self.gamma}"
            )

    def harden(self, probs: torch.Tensor) -> torch.Tensor:
        p = probs.double().clamp(1e-9, 1 - 1e-9)
        shift = self.beta * (torch.sigmoid(self.gamma * torch.log(p / (1 - p))) - 0.5)
        out = (p - shift).clamp_min(0)
        total = out.sum(dim=1, keepdim=True)
        # an answer perturbed to all zeros keeps its label as a one-hot vector
        onehot = torch.zeros_like(out).scatter(1, p.argmax(dim=1, keepdim=True), 1.0)
        out = torch.where(total > 0, out / total.clamp_min(1e-12), onehot)
        return out.to(probs.dtype)


@register_defence(
    "noise",
    family="output-hardening",
    defence_kind="postprocessor",
    access=Access.SCORES,
    techniques=_TECHNIQUES,
    mitigations=_MITIGATIONS,
    defaults={"scale": 0.05},
    fast={"scale": 0.05},
)
class ScoreNoise(_ScoreHardening):
    """Return probabilities with Laplace noise of a chosen scale added, clipped and
    renormalized; with ``keep_label`` the top class is kept, so accuracy is untouched and only
    the scores' fine detail (what equation-solving, score-based evasion and loss-based
    membership inference read) is blurred.

    Paper: the noisy-output countermeasure discussed by Tramer et al. 2016, arXiv:1609.02943,
    and, calibrated to membership inference, by Jia et al., "MemGuard", 2019,
    arXiv:1909.10594 (whose label-keeping constraint this follows).

    Args:
        scale: the Laplace scale, in probability units (0.05).
        keep_label: swap back the top class when the noise changed it (True).
        seed: seeds the noise (0); the same queries in the same order get the same answers.
    """

    def __init__(self, *, scale: float = 0.05, keep_label: bool = True, seed: int = 0) -> None:
        self.scale = scale
        self.keep_label = keep_label
        self.seed = seed

    def _check_params(self) -> None:
        if not self.scale > 0:
            raise ConfigError(f"noise scale must be positive, got {self.scale}")

    def harden(self, probs: torch.Tensor) -> torch.Tensor:
        gen = getattr(self, "_generator", None)
        if gen is None:
            gen = self._generator = torch.Generator().manual_seed(self.seed)
        u = torch.rand(probs.shape, generator=gen, dtype=torch.float64) - 0.5
        laplace = -self.scale * u.sign() * torch.log1p(-2 * u.abs())
        out = (probs.double().cpu() + laplace).clamp_min(0)
        total = out.sum(dim=1, keepdim=True)
        out = torch.where(
            total > 0, out / total.clamp_min(1e-12), torch.full_like(out, 1 / out.shape[1])
        )
        if self.keep_label:
            top = probs.argmax(dim=1).cpu()
            now = out.argmax(dim=1)
            rows = torch.arange(len(out))
            high, kept = out[rows, now].clone(), out[rows, top].clone()
            out[rows, now] = kept
            out[rows, top] = high
        return out.to(probs.dtype).to(probs.device)
