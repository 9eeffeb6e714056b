"""What the image transforms share: the check that inputs are images."""

from __future__ import annotations

import torch

from bastion.core.errors import DataError

__all__ = ["require_images"]


def require_images(x: torch.Tensor, name: str) -> None:
    """Refuse anything but a batch of images, (N, C, H, W), in one line."""
    if x.ndim != 4:
        raise DataError(
            f"{name} transforms images, shape (N, C, H, W); got inputs of shape "
            f"{tuple(x.shape)} (tabular data needs another defence, e.g. squeeze)"
        )
