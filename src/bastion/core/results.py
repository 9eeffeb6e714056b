"""Typed results of attacks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from bastion.core.threat import Threat

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """What one attack run produced, sample by sample.

    ``success[i]`` says whether ``x_adv[i]`` reaches the adversary's goal on the target (a wrong
    label, or the target label when the threat is targeted); it is measured on the target after
    the attack, never taken on the attack's word.
    """

    attack: str
    threat: Threat
    x_adv: torch.Tensor
    success: torch.Tensor
    distances: torch.Tensor
    predictions: torch.Tensor
    queries: int
    seconds: float
    queries_per_sample: torch.Tensor | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def success_rate(self) -> float:
        return float(self.success.float().mean()) if self.success.numel() else 0.0

    def __repr__(self) -> str:
        n = int(self.success.numel())
        return (
            f"AttackResult(attack={self.attack!r}, eps={self.threat.epsilons}, "
            f"success={int(self.success.sum())}/{n}, queries={self.queries}, "
            f"seconds={self.seconds:.2f})"
        )
