"""Feature squeezing by bit-depth reduction."""

from __future__ import annotations

import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.core.threat import Access
from bastion.defences.base import Preprocessor

__all__ = ["BitDepth"]


@register_defence(
    "squeeze",
    family="evasion",
    defence_kind="preprocessor",
    access=Access.WHITE_BOX,
    techniques=("AML.T0043", "AML.T0015"),
    mitigations=("AML.M0010",),
    defaults={"bits": 4},
    fast={"bits": 3},
)
class BitDepth(Preprocessor):
    """Reduce every feature to ``bits`` bits of depth, so small perturbations round away.

    Paper: Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
    Networks", 2017, arXiv:1704.01155. Inputs are scaled to [0, 1] by the target's bounds,
    rounded to ``2**bits`` levels and scaled back. Gradients pass through as if the rounding
    were the identity (BPDA), so white-box attacks see through it, as an adaptive adversary
    would.

    Args:
        bits: levels of depth kept, 1 to 16 (4).

    Example:
        >>> BitDepth(bits=1).transform(torch.tensor([0.2, 0.7]), (0.0, 1.0)).tolist()
        [0.0, 1.0]
    """

    def __init__(self, *, bits: int = 4) -> None:
        self.bits = bits

    def _check_params(self) -> None:
        if not 1 <= self.bits <= 16:
            raise ConfigError(f"squeeze bits must be between 1 and 16, got {self.bits}")

    def transform(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        self._check_params()
        lo, hi = bounds
        levels = 2**self.bits - 1
        unit = ((x - lo) / (hi - lo)).clamp(0, 1)
        squeezed: torch.Tensor = torch.round(unit * levels) / levels * (hi - lo) + lo
        return squeezed
