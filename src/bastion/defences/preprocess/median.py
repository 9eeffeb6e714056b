"""Spatial smoothing: a median filter over a small window."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.defences.base import Preprocessor
from bastion.defences.preprocess._common import IMAGE_TRANSFORM
from bastion.defences.preprocess._image import require_images

__all__ = ["MedianFilter", "mean_filter", "median_filter"]


def _pad(x: torch.Tensor, size: int) -> torch.Tensor:
    # an even window reaches one pixel further down and right than up and left
    top, bottom = (size - 1) // 2, size // 2
    return F.pad(x, (top, bottom, top, bottom), mode="replicate")


def median_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """The median of each ``size`` x ``size`` window of a batch of images (N, C, H, W).

    Edges are padded by repeating the border pixels. An even window has no middle element,
    so its median is the mean of the two middle values (the usual definition), which centres
    the window half a pixel down and to the right.
    """
    if size == 1:
        return x
    # (N, C, H, W, size * size): every pixel's window
    windows = _pad(x, size).unfold(2, size, 1).unfold(3, size, 1).flatten(-2)
    ordered = windows.sort(dim=-1).values
    n = size * size
    if n % 2:
        return ordered[..., n // 2]
    return (ordered[..., n // 2 - 1] + ordered[..., n // 2]) / 2


def mean_filter(x: torch.Tensor, size: int) -> torch.Tensor:
    """The mean of each ``size`` x ``size`` window, over the same windows as
    :func:`median_filter`: its smooth counterpart."""
    if size == 1:
        return x
    return F.avg_pool2d(_pad(x, size), size, stride=1)


@register_defence(
    "median",
    **IMAGE_TRANSFORM,
    defaults={"size": 2},
    fast={"size": 2},
)
class MedianFilter(Preprocessor):
    """Replace each pixel by the median of a ``size`` x ``size`` window around it.

    Paper: Xu, Evans, Qi, "Feature Squeezing: Detecting Adversarial Examples in Deep Neural
    Networks", 2017, arXiv:1704.01155 (local spatial smoothing, one of its two squeezers).
    A median keeps edges where a mean would blur them, and a perturbation that moves a few
    isolated pixels (salt and pepper, an L0 attack) is voted out by their neighbours. Each
    channel is filtered on its own; the borders repeat their edge pixels.

    Threat: evasion at inference; the adversary may know the filter. Against an adaptive
    adversary the filter is attacked through a differentiable stand-in (BPDA,
    arXiv:1802.00420): a mean filter over the same windows. On the digits demo, PGD through
    it leaves fewer inputs standing than through the identity (23% against 37% at Linf 0.1),
    since it tells the attack that a lone pixel barely moves the output.

    Args:
        size: the window's side in pixels, 1 to 15 (2, as the paper uses for MNIST and
            CIFAR-10; 3 suits larger images).

    Returns:
        From :meth:`transform`: the filtered images, same shape and dtype.

    Example:
        >>> x = torch.zeros(1, 1, 5, 5); x[0, 0, 2, 2] = 1.0
        >>> float(MedianFilter(size=3).transform(x, (0.0, 1.0)).max())
        0.0
    """

    def __init__(self, *, size: int = 2) -> None:
        self.size = size

    def _check_params(self) -> None:
        if not 1 <= self.size <= 15:
            raise ConfigError(f"median size must be between 1 and 15 pixels, got {self.size}")

    def transform(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        self._check_params()
        require_images(x, "median")
        return median_filter(x, self.size)

    def approximation(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        self._check_params()
        require_images(x, "median")
        return mean_filter(x, self.size)
