"""The target: one interface over white-box and black-box models.

A target knows its input bounds and shape, the number of classes, what kind of output it
returns, how much access it gives, its device, and how many queries it has answered. Every
input the model answers counts as one query; a query budget, when set, refuses any call that
would pass it, before the model sees the inputs. A call that fails is not counted.
"""

from __future__ import annotations

import contextlib
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from bastion.core.errors import AccessError, DataError, QueryBudgetExceeded
from bastion.core.threat import Access, OutputKind

__all__ = ["BlackBoxTarget", "Target"]


class Target(ABC):
    """Base class of every target. Subclasses implement :meth:`_forward`."""

    access: Access
    output_kind: OutputKind

    def __init__(
        self,
        *,
        num_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        query_budget: int | None = None,
        name: str = "target",
    ) -> None:
        if num_classes < 2:
            raise DataError(f"a classifier needs at least 2 classes, got {num_classes}")
        lo, hi = float(bounds[0]), float(bounds[1])
        if not (math.isfinite(lo) and math.isfinite(hi)) or lo >= hi:
            raise DataError(f"bounds must be two finite numbers, low < high; got {bounds}")
        if query_budget is not None and query_budget < 1:
            raise DataError(f"query budget must be at least 1, got {query_budget}")
        self.num_classes = int(num_classes)
        self.bounds = (lo, hi)
        self.input_shape = tuple(int(d) for d in input_shape) if input_shape is not None else None
        self.query_budget = query_budget
        self.name = name
        self._queries = 0
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- copies and workers
    def __getstate__(self) -> dict[str, Any]:
        # a lock cannot be pickled to a worker process; each copy counts under its own
        state = self.__dict__.copy()
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- queries and budget
    @property
    def queries(self) -> int:
        """How many inputs this target has answered so far."""
        return self._queries

    @property
    def queries_left(self) -> int | None:
        return None if self.query_budget is None else self.query_budget - self._queries

    def reset_queries(self) -> None:
        self._queries = 0

    def _charge(self, n: int) -> None:
        with self._lock:
            if self.query_budget is not None and self._queries + n > self.query_budget:
                raise QueryBudgetExceeded(
                    f"query budget exhausted: {self._queries} of {self.query_budget} queries used, "
                    f"{n} more asked for"
                )
            self._queries += n

    def _refund(self, n: int) -> None:
        """Give back a charge for inputs the model never answered (the call raised)."""
        with self._lock:
            self._queries = max(0, self._queries - n)

    # ----------------------------------------------------------------- device and mode
    @property
    def device(self) -> torch.device:
        return torch.device("cpu")

    @contextlib.contextmanager
    def inference_mode(self) -> Iterator[None]:
        """Put the model in evaluation mode for an attack and restore its mode after."""
        yield

    # ----------------------------------------------------------------- querying
    @abstractmethod
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """The model's raw output for ``x``: (N, C) scores, or (N,) labels."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """Query the model: (N, C) logits or probabilities, or (N,) labels, per ``output_kind``.

        The budget is checked and charged before the model sees the inputs (so concurrent
        callers cannot overrun it together), and refunded if the call fails: a query counts
        once it is answered, not when it is attempted.
        """
        n = int(x.shape[0])
        self._charge(n)
        try:
            return self._forward(x)
        except BaseException:
            self._refund(n)
            raise

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C) scores (logits or probabilities); an error for a label-only target."""
        if self.output_kind is OutputKind.LABELS:
            raise AccessError(f"{self.name} returns labels only; this needs scores")
        return self(x)

    def predict(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Predicted labels, (N,) int64, in batches; counts one query per input."""
        out = self.outputs(x, batch_size)
        return (out if out.ndim == 1 else out.argmax(dim=1)).long()

    def outputs(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """The target's answers in batches: (N, C) scores, or (N,) labels for a label-only
        target; counts one query per input. What success criteria judge."""
        out = []
        with torch.no_grad():
            for start in range(0, int(x.shape[0]), batch_size):
                out.append(self(x[start : start + batch_size]))
        if not out:
            if self.output_kind is OutputKind.LABELS:
                return torch.empty(0, dtype=torch.long, device=x.device)
            return torch.empty((0, self.num_classes), device=x.device)
        return out[0] if len(out) == 1 else torch.cat(out)

    def gradient(self, x: torch.Tensor, loss: Any) -> torch.Tensor:
        """Gradient of ``loss(output)`` with respect to ``x``; white-box targets only."""
        raise AccessError(f"{self.name} is a {self.access.value} target: it gives no gradients")

    # ----------------------------------------------------------------- validation
    def check_inputs(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Refuse inputs outside the bounds or of the wrong shape, and labels out of range."""
        if not torch.is_floating_point(x):
            raise DataError(f"inputs must be floating point, got {x.dtype}")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"inputs have shape {tuple(x.shape[1:])} per sample, "
                f"the target expects {self.input_shape}"
            )
        if x.numel():
            # one pass: a NaN or an infinity shows up in the minimum or the maximum
            lo, hi = (float(v) for v in torch.aminmax(x.detach()))
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise DataError("inputs contain NaN or infinite values")
            tol = 1e-6 * max(1.0, self.bounds[1] - self.bounds[0])
            if lo < self.bounds[0] - tol or hi > self.bounds[1] + tol:
                raise DataError(
                    f"inputs range over [{lo:g}, {hi:g}], outside the target's bounds "
                    f"[{self.bounds[0]:g}, {self.bounds[1]:g}]: rescale the data or declare bounds"
                )
        if y is not None:
            if y.shape[0] != x.shape[0]:
                raise DataError(f"{x.shape[0]} inputs but {y.shape[0]} labels")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
                raise DataError(
                    f"labels range over {int(y.min())}..{int(y.max())}, "
                    f"the target has {self.num_classes} classes (0..{self.num_classes - 1})"
                )

    def describe(self) -> dict[str, Any]:
        """The target's properties, for reports."""
        return {
            "name": self.name,
            "kind": type(self).__name__,
            "access": self.access.value,
            "output_kind": self.output_kind.value,
            "num_classes": self.num_classes,
            "bounds": list(self.bounds),
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "device": str(self.device),
            "query_budget": self.query_budget,
        }

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(name={self.name!r}, access={self.access.value}, "
            f"classes={self.num_classes}, bounds={self.bounds}, queries={self.queries})"
        )


class BlackBoxTarget(Target):
    """A target that answers numpy arrays: scikit-learn, ONNX Runtime, a remote endpoint.

    Subclasses implement :meth:`_predict_numpy`; inputs cross as float32 arrays, answers come
    back as tensors on the inputs' device.
    """

    def __init__(self, *, output_kind: OutputKind, batch_size: int = 1024, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.output_kind = OutputKind(output_kind)
        self.access = Access.LABELS if self.output_kind is OutputKind.LABELS else Access.SCORES
        self.batch_size = batch_size

    @abstractmethod
    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        """The model's answer for a float32 batch: (N, C) scores or (N,) labels."""

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            x = x.detach()
        arr = x.cpu().numpy().astype(np.float32, copy=False)
        if len(arr) == 0:
            empty = (0,) if self.output_kind is OutputKind.LABELS else (0, self.num_classes)
            dtype = torch.long if self.output_kind is OutputKind.LABELS else torch.float32
            return torch.zeros(empty, dtype=dtype, device=x.device)
        out = np.concatenate(
            [
                self._predict_numpy(arr[i : i + self.batch_size])
                for i in range(0, len(arr), self.batch_size)
            ],
            axis=0,
        )
        if self.output_kind is OutputKind.LABELS:
            return torch.as_tensor(out.reshape(-1).astype(np.int64), device=x.device)
        scores = np.asarray(out, dtype=np.float32)
        if scores.ndim != 2 or scores.shape[1] != self.num_classes:
            raise DataError(
                f"{self.name} answered scores of shape {scores.shape}, "
                f"expected ({len(arr)}, {self.num_classes})"
            )
        return torch.as_tensor(scores, device=x.device)
