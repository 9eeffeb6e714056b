"""White-box PyTorch targets."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import nn

from bastion.core.errors import DataError, TargetError
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind

__all__ = ["TorchTarget", "resolve_device"]


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: the first GPU if there is one, else the CPU."""
    if device is None or str(device) == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as exc:
        raise TargetError(f"unknown device {device!r}: use cpu, cuda, cuda:N, mps or auto") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise TargetError(f"device {device!r} asked for, but this machine has no CUDA GPU")
    return dev


class TorchTarget(Target):
    """A PyTorch module seen in full: scores and gradients.

    Preprocessing (``mean`` and ``std`` normalization, or any differentiable ``preprocess``)
    happens inside the target, so attacks work in input space, within ``bounds``.

    Args:
        model: a module mapping a batch of inputs to (N, C) logits (or probabilities, with
            ``output_kind="probabilities"``).
        num_classes: number of classes.
        bounds: the valid input range, before preprocessing.
        mean, std: per-channel normalization applied inside the target.
        preprocess: a differentiable function applied before the model (instead of mean/std).
        device: where the model runs; ``None`` keeps the model where it is.
        query_budget: the most inputs the target will answer.
    """

    access = Access.WHITE_BOX

    def __init__(
        self,
        model: nn.Module,
        *,
        num_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        preprocess: Callable[[torch.Tensor], torch.Tensor] | None = None,
        output_kind: OutputKind | str = OutputKind.LOGITS,
        device: str | torch.device | None = None,
        query_budget: int | None = None,
        name: str = "torch-model",
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            bounds=bounds,
            input_shape=input_shape,
            query_budget=query_budget,
            name=name,
        )
        self.output_kind = OutputKind(output_kind)
        if self.output_kind is OutputKind.LABELS:
            raise TargetError("a white-box PyTorch target must return logits or probabilities")
        if device is not None:
            model = model.to(resolve_device(device))
        self.model = model
        self.preprocess = preprocess
        self._mean: torch.Tensor | None = None
        self._std: torch.Tensor | None = None
        if (mean is None) != (std is None):
            raise TargetError("give both mean and std, or neither")
        if mean is not None and std is not None:
            if preprocess is not None:
                raise TargetError("give mean/std or preprocess, not both")
            if any(s <= 0 for s in std):
                raise TargetError(f"std must be positive, got {list(std)}")
            self._mean = torch.tensor(list(mean), dtype=torch.float32)
            self._std = torch.tensor(list(std), dtype=torch.float32)

    @property
    def device(self) -> torch.device:
        for p in self.model.parameters():
            return p.device
        for b in self.model.buffers():
            return b.device
        return torch.device("cpu")

    @contextlib.contextmanager
    def inference_mode(self) -> Iterator[None]:
        # flip only the modules in train mode, and flip exactly those back: a model that
        # keeps some layers in eval while training (frozen batch norm) comes back as it was
        training = [m for m in self.model.modules() if m.training]
        for m in training:
            m.training = False
        try:
            yield
        finally:
            for m in training:
                m.training = True

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        if self.preprocess is not None:
            return self.preprocess(x)
        if self._mean is None or self._std is None:
            return x
        shape = (1, -1) + (1,) * (x.ndim - 2)
        mean = self._mean.to(x.device, x.dtype).view(shape)
        std = self._std.to(x.device, x.dtype).view(shape)
        return (x - mean) / std

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            out = self.model(self._normalize(x))
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(
                f"the model rejected inputs of shape {tuple(x.shape[1:])}: {first}"
            ) from exc
        if not isinstance(out, torch.Tensor) or out.ndim != 2 or out.shape[1] != self.num_classes:
            shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise DataError(
                f"the model returned {shape} for {x.shape[0]} inputs, "
                f"expected ({x.shape[0]}, {self.num_classes})"
            )
        return out

    def gradient(self, x: torch.Tensor, loss: Any) -> torch.Tensor:
        """Gradient of ``loss(scores)`` (a scalar) with respect to ``x``."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = loss(self(x))
            (grad,) = torch.autograd.grad(value, x)
        return grad
