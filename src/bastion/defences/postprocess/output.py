"""Output hardening: fewer digits, fewer classes, or labels only."""

from __future__ import annotations

import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.threat import Access, OutputKind
from bastion.defences.base import Postprocessor

__all__ = ["LabelOnly", "RoundScores", "TopK"]

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
