"""Triggers that backdoor attacks stamp on inputs: a patch, a blended pattern, feature values.

Each works on a batch in the data's own layout (``(N, C, H, W)`` images, ``(N, F)`` rows) and
within the data's bounds, never assuming ``[0, 1]``.
"""

from __future__ import annotations

import numpy as np

from bastion.core.errors import ConfigError, DataError

__all__ = ["blend", "patch_mask", "set_features", "stamp_patch"]

_CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


def _image_shape(x: np.ndarray) -> tuple[int, int, int]:
    if x.ndim != 4:
        raise DataError(f"an image trigger needs (N, C, H, W) inputs, got shape {x.shape}")
    return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])


def patch_mask(
    shape: tuple[int, int, int], size: int | None, position: str, bounds: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """The mask (H, W) and pattern (C, H, W) of a square checkerboard patch one pixel in from
    a corner, or from each of the four (``position="corners"``, as Turner et al. place the
    clean-label trigger so that it survives flips and crops). ``size`` None: about a seventh
    of the image's side, at least 2 pixels."""
    c, h, w = shape
    side = size if size is not None else max(2, round(min(h, w) / 7))
    if side < 1 or side + 1 > min(h, w):
        raise ConfigError(f"a {side}-pixel patch does not fit a {h}x{w} image")
    if position not in (*_CORNERS, "corners"):
        raise ConfigError(
            f"position must be one of {', '.join(_CORNERS)} or corners, got {position!r}"
        )
    mask = np.zeros((h, w), dtype=np.float32)
    for corner in _CORNERS if position == "corners" else (position,):
        top = h - side - 1 if corner.startswith("bottom") else 1
        left = w - side - 1 if corner.endswith("right") else 1
        mask[top : top + side, left : left + side] = 1.0
    lo, hi = bounds
    rows, cols = np.indices((h, w))
    checker = np.where((rows + cols) % 2 == 0, hi, lo).astype(np.float32)
    return mask, np.broadcast_to(checker, (c, h, w)).copy()


def stamp_patch(
    x: np.ndarray, size: int | None, position: str, bounds: tuple[float, float]
) -> np.ndarray:
    """``x`` with the checkerboard patch of :func:`patch_mask` pasted in."""
    mask, pattern = patch_mask(_image_shape(x), size, position, bounds)
    return np.asarray(x * (1 - mask) + pattern * mask, dtype=x.dtype)


def blend(x: np.ndarray, alpha: float, seed: int, bounds: tuple[float, float]) -> np.ndarray:
    """``x`` blended with a fixed random pattern: ``(1 - alpha) * x + alpha * pattern``.

    The pattern is uniform noise over the bounds drawn from ``seed``, so the same seed always
    gives the same key (Chen et al.'s random-pattern blended key).
    """
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    lo, hi = bounds
    pattern = np.random.default_rng(seed).uniform(lo, hi, size=x.shape[1:]).astype(np.float32)
    return np.asarray((1 - alpha) * x + alpha * pattern, dtype=x.dtype)


def set_features(x: np.ndarray, features: list[int], values: list[float]) -> np.ndarray:
    """Rows of ``x`` with ``features`` set to ``values`` (a tabular trigger)."""
    if x.ndim != 2:
        raise DataError(f"a tabular trigger needs (N, F) rows, got shape {x.shape}")
    bad = [f for f in features if not 0 <= f < x.shape[1]]
    if bad:
        raise ConfigError(f"trigger features {bad} are not columns of a {x.shape[1]}-column table")
    out: np.ndarray = x.copy()
    out[:, features] = np.asarray(values, dtype=x.dtype)
    return out
