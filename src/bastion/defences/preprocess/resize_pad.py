"""Randomized resizing and padding: a random geometry at every forward pass."""

from __future__ import annotations

import threading

import torch
import torch.nn.functional as F

from bastion.core.errors import ConfigError
from bastion.core.registry import register_defence
from bastion.defences.base import Preprocessor
from bastion.defences.preprocess._common import IMAGE_TRANSFORM
from bastion.defences.preprocess._image import require_images

__all__ = ["ResizePad"]

# guards the creation of a seeded transform's generator when threads share the transform
_LOCK = threading.Lock()


@register_defence(
    "resize-pad",
    **IMAGE_TRANSFORM,
    defaults={"max_scale": 1.1},
    fast={"max_scale": 1.1},
)
class ResizePad(Preprocessor):
    """Resize each image to a random size, pad it at a random place, and resize it back.

    Paper: Xie, Wang, Zhang, Ren, Yuille, "Mitigating Adversarial Effects Through
    Randomization", 2018, arXiv:1711.01991. Each image of an H x W batch is resized to a
    random r x r' (r drawn uniformly from the integers H..round(H * max_scale), r' likewise
    from W..), placed at a random offset on a canvas of round(H * max_scale) x
    round(W * max_scale) filled with the lower bound, as the paper pads with zeros. Unlike
    the paper, whose model takes the larger canvas, the canvas is resized back to H x W, so
    the defended model keeps its input shape and needs no retraining on a new size; the
    result is the image shrunk by a random factor in [1 / max_scale, 1] and moved by a
    random offset. The two resizings compose into one affine map, sampled once (bilinear),
    so the image is interpolated once rather than twice.

    Every forward pass draws anew, so the same input gets different answers:
    :func:`bastion.evaluate` sees that and averages each gradient over several passes
    (expectation over transformation; Athalye, Engstrom, Ilyas, Kwok, "Synthesizing Robust
    Adversarial Examples", 2018, arXiv:1707.07397). The transform is differentiable
    (bilinear interpolation), so it is its own approximation: gradients flow through the
    draw that produced the answer.

    Threat: evasion at inference; the adversary knows the distribution of the transform but
    not the draw.

    Args:
        max_scale: the largest size as a multiple of the input's, above 1 and at most 4
            (1.1, as the paper's 331 / 299; on small images every resampling costs clean
            accuracy: measure it).
        seed: seed of the draws; ``None`` draws from torch's global generator. With a seed,
            the sequence of draws repeats from the transform's creation (each forward pass
            still draws anew).

    Returns:
        From :meth:`transform`: images of the input's shape and dtype, within the bounds.

    Example:
        >>> x = torch.rand(4, 3, 32, 32)
        >>> pad = ResizePad(max_scale=1.2, seed=0)
        >>> pad.transform(x, (0.0, 1.0)).shape
        torch.Size([4, 3, 32, 32])
    """

    def __init__(self, *, max_scale: float = 1.1, seed: int | None = None) -> None:
        self.max_scale = max_scale
        self.seed = seed

    def _check_params(self) -> None:
        if not 1.0 < self.max_scale <= 4.0:
            raise ConfigError(f"resize-pad max_scale must be in (1, 4], got {self.max_scale}")

    def _generator(self) -> torch.Generator | None:
        if self.seed is None:
            return None
        gen: torch.Generator | None = getattr(self, "generator_", None)
        if gen is None:
            with _LOCK:
                gen = getattr(self, "generator_", None)
                if gen is None:
                    gen = self.generator_ = torch.Generator().manual_seed(self.seed)
        return gen

    def transform(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        self._check_params()
        require_images(x, "resize-pad")
        n, _, h, w = x.shape
        big_h, big_w = max(h + 1, round(h * self.max_scale)), max(w + 1, round(w * self.max_scale))
        gen = self._generator()
        # the sizes and offsets, in canvas pixels, as the paper draws them
        rh = torch.randint(h, big_h + 1, (n,), generator=gen)
        rw = torch.randint(w, big_w + 1, (n,), generator=gen)
        top = (torch.rand(n, generator=gen) * (big_h - rh + 1)).floor()
        left = (torch.rand(n, generator=gen) * (big_w - rw + 1)).floor()
        rh, rw = rh.double(), rw.double()
        # output (= canvas) coordinates in [-1, 1] -> input coordinates (align_corners=False)
        theta = torch.zeros(n, 2, 3, dtype=torch.float64)
        theta[:, 0, 0] = big_w / rw
        theta[:, 0, 2] = (big_w - 2 * left - rw) / rw
        theta[:, 1, 1] = big_h / rh
        theta[:, 1, 2] = (big_h - 2 * top - rh) / rh
        grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
        lo = bounds[0]
        # grid_sample pads with zeros: shift so that the padding is the lower bound
        out = F.grid_sample(x - lo, grid, mode="bilinear", align_corners=False) + lo
        return out

    def approximation(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        return self.transform(x, bounds)

    def __call__(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        # one draw, differentiated directly: the transform is its own approximation
        return self.transform(x, bounds)
