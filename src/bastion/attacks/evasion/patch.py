"""Adversarial patch: one small image that makes the model err wherever it is stuck."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bastion.attacks.base import Attack, RunLog
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, Threat

__all__ = ["AdversarialPatch", "PatchEvaluation", "place_patch"]


@dataclass
class PatchEvaluation:
    """How a patch fares at random placements on some inputs.

    Attributes:
        success_rate: share of (input, placement) pairs where the patch reached its goal:
            the model says the target class (targeted), or errs on an input it got right
            without the patch (untargeted).
        count: ``(successes, trials)`` behind the rate.
        clean_accuracy: accuracy on the inputs without the patch.
        patched_accuracy: accuracy over every (input, placement) pair.
        share: the share of the image's area the patch covers at scale 1.
    """

    success_rate: float
    count: tuple[int, int]
    clean_accuracy: float
    patched_accuracy: float
    share: float


def _rotation(angle: torch.Tensor, aspect: float) -> torch.Tensor:
    """(n, 2, 2) rotations by ``angle`` expressed in normalized coordinates of an image whose
    width is ``aspect`` times its height (so a square stays square)."""
    cos, sin = torch.cos(angle), torch.sin(angle)
    # normalized = pixel / (W, H): conjugate the pixel-space rotation by that scaling
    return torch.stack(
        [torch.stack([cos, -sin / aspect], -1), torch.stack([sin * aspect, cos], -1)], -2
    )


def place_patch(
    x: torch.Tensor,
    patch: torch.Tensor,
    centre: torch.Tensor,
    *,
    scale: torch.Tensor | None = None,
    angle: torch.Tensor | None = None,
    mode: str = "bilinear",
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` (N, C, H, W) with ``patch`` (C, h, w) pasted on each image, centred at ``centre``
    (N, 2: row, column in pixels), scaled by ``scale`` and turned by ``angle`` (radians).

    Returns the patched images and the (N, 1, H, W) share of each pixel the patch covers.
    Differentiable in ``patch`` (``affine_grid`` and ``grid_sample``).
    """
    n, c, height, width = x.shape
    _, h, w = patch.shape
    dtype, device = x.dtype, x.device
    top, left = (height - h) // 2, (width - w) // 2
    canvas = torch.zeros((1, c, height, width), dtype=dtype, device=device)
    canvas = canvas + F.pad(
        patch.to(dtype).unsqueeze(0), (left, width - w - left, top, height - h - top)
    )
    cover = torch.zeros((1, 1, height, width), dtype=dtype, device=device)
    cover[:, :, top : top + h, left : left + w] = 1.0
    # where the patch sits on the canvas, and where it should land, in normalized coordinates
    source = torch.tensor(
        [(2 * left + w) / width - 1, (2 * top + h) / height - 1], dtype=dtype, device=device
    )
    dest = torch.stack([2 * centre[:, 1] / width - 1, 2 * centre[:, 0] / height - 1], dim=1).to(
        dtype
    )
    turn = angle if angle is not None else torch.zeros(n, dtype=dtype, device=device)
    size = scale if scale is not None else torch.ones(n, dtype=dtype, device=device)
    # output point p reads the canvas at source + R(-angle) (p - dest) / scale
    linear = _rotation(-turn.to(dtype), width / height) / size.to(dtype).view(n, 1, 1)
    shift = source.view(1, 2) - torch.einsum("nij,nj->ni", linear, dest)
    theta = torch.cat([linear, shift.unsqueeze(2)], dim=2)
    grid = F.affine_grid(theta, [n, c, height, width], align_corners=False)
    painted = F.grid_sample(
        canvas.expand(n, -1, -1, -1), grid, mode=mode, padding_mode="zeros", align_corners=False
    )
    mask = F.grid_sample(
        cover.expand(n, -1, -1, -1), grid, mode=mode, padding_mode="zeros", align_corners=False
    )
    return x * (1 - mask) + painted * mask, mask


def _check_images(x: torch.Tensor) -> tuple[int, int, int]:
    if x.ndim != 4:
        raise DataError(
            "the adversarial patch works on images (N, C, H, W); got inputs of shape "
            f"{tuple(x.shape[1:])} per sample (tabular data has no place to stick a patch)"
        )
    return int(x.shape[1]), int(x.shape[2]), int(x.shape[3])


@register_attack(
    "patch",
    family="universal",
    access=Access.WHITE_BOX,
    norms=(Norm.L0,),
    data_kinds=("image",),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=60,
    defaults={"steps": 200, "placements": 16},
    fast={"steps": 40, "placements": 8},
)
class AdversarialPatch(Attack):
    """A patch trained to fool the model wherever it lands: expectation over random
    placement, scale and rotation, rendered with ``affine_grid`` and ``grid_sample``.

    :meth:`fit` trains one patch on a set of images (Adam on the patch's pixels, kept within
    the bounds; each step pastes it on a minibatch at fresh random placements); ``patch_`` is
    the result and :meth:`evaluate` measures how often it works at random placements on other
    images. Untargeted, the patch raises the loss of the true label; with ``target_class``, it
    makes the model say that class.

    Registered in the ``universal`` family (one input-agnostic patch), so a scan runs it only
    when named (``--attacks patch --norm l0``). As an attack (:meth:`run`) it fits within the
    epsilon-ball contract: the L0 epsilon counts the input values the patch may replace, so
    the patch is the largest near-square of at most epsilon values (over all channels); it is
    trained on the batch under attack, then pasted axis-aligned (nearest-pixel, so it replaces
    exactly that many values) at the best of ``placements`` random spots per input. The base
    class's L0 projection then has nothing to remove.

    Paper: Brown, Mané, Roy, Abadi, Gilmer, "Adversarial Patch", 2017, arXiv:1712.09665.

    Threat: white-box; physical-world (L0: the pixels under the patch may become anything in
    the bounds); untargeted or targeted. Images only. Crafting the patch is white-box
    optimization (``AML.T0043.000``); deploying it takes physical environment access
    (``AML.T0041``), which the patch assessment's finding names and bastion does not exercise.

    Args:
        size: for :meth:`fit`, the share of the image's area the patch covers at scale 1 (0.1).
        target_class: the class the patch should make the model say (None: untargeted).
        steps: training steps (200).
        batch_size: images per training step (32).
        lr: Adam's learning rate, as a share of the input range (0.05).
        scale: the range of random scales while training ((0.8, 1.2)).
        rotation: the largest random rotation while training, in degrees (20).
        placements: for :meth:`run`, random spots tried per input (16).

    Returns: :meth:`fit` returns the attack, with ``patch_`` (C, h, w); :meth:`run` an
    :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> patch = AdversarialPatch(size=0.1, target_class=3).fit(target, x, y)  # doctest: +SKIP
        >>> patch.evaluate(target, x_test, y_test).success_rate  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        size: float = 0.1,
        target_class: int | None = None,
        steps: int = 200,
        batch_size: int = 32,
        lr: float = 0.05,
        scale: tuple[float, float] = (0.8, 1.2),
        rotation: float = 20.0,
        placements: int = 16,
    ) -> None:
        self.size = size
        self.target_class = target_class
        self.steps = steps
        self.batch_size = batch_size
        self.lr = lr
        self.scale = scale
        self.rotation = rotation
        self.placements = placements

    def _check_params(self) -> None:
        if not 0 < self.size < 1:
            raise ConfigError(f"size is a share of the image's area, in (0, 1); got {self.size}")
        self._at_least(steps=1, batch_size=1)
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")
        lo, hi = self.scale
        if not 0 < lo <= hi:
            raise ConfigError(f"scale must be (low, high) with 0 < low <= high, got {self.scale}")
        if not 0 <= self.rotation <= 180:
            raise ConfigError(f"rotation is in degrees, 0 to 180; got {self.rotation}")
        self._at_least(placements=1)
        if self.target_class is not None and self.target_class < 0:
            raise ConfigError(f"target_class must be a class index, got {self.target_class}")

    # ------------------------------------------------------------------ placement
    def _draw(
        self,
        n: int,
        patch_hw: tuple[int, int],
        image_hw: tuple[int, int],
        generator: torch.Generator,
        *,
        warp: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Random centres (pixels), scales and angles that keep the patch inside the image."""
        h, w = patch_hw
        height, width = image_hw
        if warp:
            lo, hi = self.scale
            scale = lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)
            limit = math.radians(self.rotation)
            angle = (torch.rand(n, generator=generator, dtype=torch.float64) * 2 - 1) * limit
        else:
            scale = torch.ones(n, dtype=torch.float64)
            angle = torch.zeros(n, dtype=torch.float64)
        cos, sin = angle.cos().abs(), angle.sin().abs()
        half_h = scale * (h * cos + w * sin) / 2
        half_w = scale * (w * cos + h * sin) / 2
        if warp:
            u = torch.rand((n, 2), generator=generator, dtype=torch.float64)
            row = half_h + u[:, 0] * (height - 2 * half_h).clamp_min(0)
            col = half_w + u[:, 1] * (width - 2 * half_w).clamp_min(0)
            row = torch.where(2 * half_h > height, torch.full_like(row, height / 2), row)
            col = torch.where(2 * half_w > width, torch.full_like(col, width / 2), col)
        else:
            # whole-pixel positions, so a nearest-pixel paste replaces exactly h * w pixels
            top = torch.randint(0, height - h + 1, (n,), generator=generator)
            left = torch.randint(0, width - w + 1, (n,), generator=generator)
            row, col = top + h / 2, left + w / 2
        return torch.stack([row, col], dim=1), scale, angle

    def _paste(
        self,
        x: torch.Tensor,
        patch: torch.Tensor,
        generator: torch.Generator,
        *,
        warp: bool,
    ) -> torch.Tensor:
        centre, scale, angle = self._draw(
            len(x), (patch.shape[1], patch.shape[2]), (x.shape[2], x.shape[3]), generator, warp=warp
        )
        dev = x.device
        out, _ = place_patch(
            x,
            patch,
            centre.to(dev),
            scale=scale.to(dev),
            angle=angle.to(dev),
            mode="bilinear" if warp else "nearest",
        )
        return out

    # ------------------------------------------------------------------ training
    def _goal(self, y: torch.Tensor, targeted: bool) -> tuple[torch.Tensor, bool]:
        if self.target_class is not None:
            return torch.full_like(y, self.target_class), True
        return y, targeted

    def _train(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        patch_hw: tuple[int, int],
        generator: torch.Generator,
        *,
        targeted: bool,
        warp: bool,
    ) -> torch.Tensor:
        lo, hi = target.bounds
        c = x.shape[1]
        init = torch.rand((c, *patch_hw), generator=generator, dtype=torch.float32)
        patch = (lo + (hi - lo) * init).to(device=x.device, dtype=x.dtype).requires_grad_(True)
        optimizer = torch.optim.Adam([patch], lr=self.lr * (hi - lo))
        labels, targeted = self._goal(y, targeted)
        for _ in range(self.steps):
            pick = torch.randperm(len(x), generator=generator)[: self.batch_size].to(x.device)
            patched = self._paste(x[pick], patch, generator, warp=warp)
            loss = F.cross_entropy(target(patched), labels[pick])
            # untargeted: climb the true label's loss; targeted: descend the target's
            (grad,) = torch.autograd.grad(loss if targeted else -loss, patch)
            patch.grad = grad
            optimizer.step()
            with torch.no_grad():
                patch.clamp_(lo, hi)
        return patch.detach()

    def fit(
        self, target: Target, x: torch.Tensor, y: torch.Tensor, *, seed: int = 0
    ) -> AdversarialPatch:
        """Train ``patch_`` on images ``x`` (labels ``y``) under random placement, scale and
        rotation; returns the attack."""
        self._check_params()
        target.check_inputs(x, y)
        if self.target_class is not None and self.target_class >= target.num_classes:
            raise ConfigError(
                f"target_class {self.target_class} is not a class of {target.name} "
                f"(0..{target.num_classes - 1})"
            )
        _, height, width = _check_images(x)
        side = max(1, round(math.sqrt(self.size * height * width)))
        generator = torch.Generator().manual_seed(seed)
        xs = x.detach().to(target.device)
        ys = y.detach().to(target.device).long()
        with target.inference_mode():
            self.patch_ = self._train(
                target, xs, ys, (side, side), generator, targeted=False, warp=True
            )
        self.share_ = side * side / (height * width)
        return self

    def evaluate(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        *,
        placements: int = 8,
        seed: int = 0,
        patch: torch.Tensor | None = None,
    ) -> PatchEvaluation:
        """The success rate of ``patch`` (default: ``patch_``) where it lands: pasted at
        ``placements`` random placements (scale and rotation as in training) on each input."""
        chosen = patch if patch is not None else getattr(self, "patch_", None)
        if chosen is None:
            raise ConfigError("the patch is not trained yet: call fit() first")
        target.check_inputs(x, y)
        _, height, width = _check_images(x)
        generator = torch.Generator().manual_seed(seed)
        xs = x.detach().to(target.device)
        ys = y.detach().to(target.device).long()
        chosen = chosen.to(device=xs.device, dtype=xs.dtype)
        with target.inference_mode(), torch.no_grad():
            clean = target.predict(xs)
            hits = trials = correct = 0
            for _ in range(placements):
                pred = target.predict(self._paste(xs, chosen, generator, warp=True))
                correct += int((pred == ys).sum())
                if self.target_class is not None:
                    eligible = ys != self.target_class
                    hits += int((pred[eligible] == self.target_class).sum())
                else:
                    eligible = clean == ys
                    hits += int((pred[eligible] != ys[eligible]).sum())
                trials += int(eligible.sum())
        rate = hits / trials if trials else 0.0
        return PatchEvaluation(
            success_rate=rate,
            count=(hits, trials),
            clean_accuracy=float((clean == ys).float().mean()),
            patched_accuracy=correct / (len(xs) * placements),
            share=chosen.shape[1] * chosen.shape[2] / (height * width),
        )

    # ------------------------------------------------------------------ as an attack
    def _attack(
        self,
        target: Target,
        x: torch.Tensor,
        y: torch.Tensor,
        threat: Threat,
        generator: torch.Generator,
        log: RunLog,
    ) -> torch.Tensor:
        c, height, width = _check_images(x)
        pixels = int(threat.epsilon) // c
        if pixels < 1:
            raise ConfigError(
                f"an L0 epsilon of {int(threat.epsilon)} values is less than one pixel of "
                f"{c} channels"
            )
        h = min(math.isqrt(pixels), height)
        w = min(pixels // h, width)
        targeted = threat.targeted
        if targeted and self.target_class is None and len(torch.unique(y)) > 1:
            raise ConfigError("a targeted patch has one target class: give all inputs the same")
        patch = self._train(target, x, y, (h, w), generator, targeted=targeted, warp=False)
        self.patch_ = patch
        labels, targeted = self._goal(y, targeted)
        best = x.clone()
        best_value = torch.full((len(x),), float("-inf"), dtype=x.dtype, device=x.device)
        done = torch.zeros(len(x), dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for _ in range(self.placements):
                todo = (~done).nonzero().squeeze(1)
                if len(todo) == 0:
                    break
                candidate = self._paste(x[todo], patch, generator, warp=False)
                scores = target(candidate)
                value = F.cross_entropy(scores, labels[todo], reduction="none")
                value = -value if targeted else value
                hit = threat.goal.is_success(scores, y[todo])
                better = hit | (value > best_value[todo])
                best[todo[better]] = candidate[better]
                best_value[todo[better]] = value[better]
                done[todo[hit]] = True
        return best
