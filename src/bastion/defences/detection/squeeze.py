"""Feature squeezing as a detector: an adversarial input's prediction moves when squeezed."""

from __future__ import annotations

from typing import Any

import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind
from bastion.defences.base import Detector, Preprocessor
from bastion.defences.preprocess.median import MedianFilter
from bastion.defences.preprocess.squeeze import BitDepth

__all__ = ["SqueezeDetector"]


@register_defence(
    "squeeze-detector",
    family="evasion",
    defence_kind="detector",
    access=Access.SCORES,
    techniques=("AML.T0043", "AML.T0015"),
    mitigations=("AML.M0015",),
    defaults={"bits": 4, "median": 2},
    fast={"bits": 3, "median": 2},
)
class SqueezeDetector(Detector):
    """Flag inputs whose prediction moves when they are squeezed.

    Paper: Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
    Networks", 2017, arXiv:1704.01155 (joint detection). The model answers each input as
    given and after each squeezer: a bit-depth reduction to ``bits`` bits and a ``median``
    x ``median`` median filter. A clean input's probabilities barely change; an adversarial
    one sits just across a decision boundary, and squeezing often pulls it back. The score
    is the largest L1 distance between the probabilities on the raw input and on a squeezed
    one (0 to 2), and :meth:`calibrate` sets the threshold for a chosen false-positive rate
    on clean inputs. Leave a squeezer out with ``bits=0`` or ``median=0`` (the median
    squeezer needs images; set ``median=0`` for tabular data).

    Threat: evasion at inference by an adversary who does not adapt to the detector (one
    who does can fool the model and the squeezed model at once: He, Wei, Chen, Carlini,
    Song, "Adversarial Example Defenses: Ensembles of Weak Defenses are not Strong", 2017,
    arXiv:1706.04701). Needs scores (probabilities or logits) from the model.

    Args:
        bits: bit depth of the first squeezer, 1 to 16, or 0 for none (4; the paper uses 1
            on MNIST, 5 on CIFAR-10 and ImageNet).
        median: window of the median squeezer, 2 to 15, or 0 for none (2).

    Returns:
        :meth:`score`: (N,) floats, higher is more suspicious; :meth:`detect`: (N,) bools.

    Built by name, as the gateway does, then given the model with :meth:`fit`::

        detector = DEFENCES.create("squeeze-detector", bits=4, median=2).fit(target)
        detector.calibrate(x_clean, fpr=0.05).detect(x_suspect)
    """

    def __init__(self, *, bits: int = 4, median: int = 2) -> None:
        self.bits = bits
        self.median = median

    def _check_params(self) -> None:
        if self.bits != 0 and not 1 <= self.bits <= 16:
            raise ConfigError(f"squeeze-detector bits must be 0 (none) or 1 to 16, got {self.bits}")
        if self.median != 0 and not 2 <= self.median <= 15:
            raise ConfigError(
                f"squeeze-detector median must be 0 (none) or 2 to 15, got {self.median}"
            )
        if self.bits == 0 and self.median == 0:
            raise ConfigError("squeeze-detector needs a squeezer: set bits or median above 0")

    def squeezers(self) -> list[Preprocessor]:
        """The squeezers the parameters ask for, in order."""
        self._check_params()
        out: list[Preprocessor] = []
        if self.bits:
            out.append(BitDepth(bits=self.bits))
        if self.median:
            out.append(MedianFilter(size=self.median))
        return out

    def fit(self, target: Target, x_pool: Any = None) -> SqueezeDetector:
        """Use ``target``'s answers. ``x_pool`` is not needed (it is accepted so that every
        detector that needs a model is fitted the same way, as :class:`STRIP` is)."""
        self._check_params()
        if target.output_kind is OutputKind.LABELS:
            raise ConfigError(f"squeeze-detector needs scores; {target.name} returns labels only")
        self.target_ = target
        return self

    def _probabilities(self, x: torch.Tensor) -> torch.Tensor:
        out = self.target_.outputs(x.to(self.target_.device)).float().cpu()
        return out if self.target_.output_kind is OutputKind.PROBABILITIES else out.softmax(1)

    def score(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "target_"):
            raise ConfigError("squeeze-detector is not fitted: call fit(target) first")
        x = torch.as_tensor(x).float()
        squeezers = self.squeezers()
        raw = self._probabilities(x)
        score = torch.zeros(len(x))
        for squeezer in squeezers:
            squeezed = self._probabilities(squeezer.transform(x, self.target_.bounds))
            score = torch.maximum(score, (raw - squeezed).abs().sum(dim=1))
        return score
