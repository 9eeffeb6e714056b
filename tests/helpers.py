"""Small helpers shared by test modules."""

from __future__ import annotations

import torch

import bastion


def accuracy(target: bastion.Target, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((target.predict(x) == y).float().mean())
