"""ONNX models through ONNX Runtime, as score-based black boxes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bastion._extras import require
from bastion.core.errors import DataError, TargetError
from bastion.core.targets.base import BlackBoxTarget
from bastion.core.threat import OutputKind

__all__ = ["OnnxTarget"]


class OnnxTarget(BlackBoxTarget):
    """An ONNX model run by ONNX Runtime on the CPU.

    The first input of the graph receives the batch; the first output is read as (N, C)
    scores (``output_kind="logits"`` or ``"probabilities"``) or (N,) labels.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        num_classes: int,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        output_kind: OutputKind | str = OutputKind.LOGITS,
        query_budget: int | None = None,
        name: str | None = None,
    ) -> None:
        ort = require("onnxruntime")
        path = Path(path)
        if not path.is_file():
            raise TargetError(f"no ONNX file at {path}")
        try:
            self.session: Any = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises its own non-exported exception types
            raise TargetError(f"could not load {path} as an ONNX model: {exc}") from exc
        inp = self.session.get_inputs()[0]
        self._input_name = inp.name
        graph_shape = [d if isinstance(d, int) else None for d in inp.shape]
        self._flat = len(graph_shape) == 2
        super().__init__(
            output_kind=OutputKind(output_kind),
            num_classes=num_classes,
            bounds=bounds,
            input_shape=input_shape,
            query_budget=query_budget,
            name=name or path.name,
        )

    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        feed = x.reshape(len(x), -1) if self._flat else x
        try:
            out = self.session.run(None, {self._input_name: feed})[0]
        except Exception as exc:  # onnxruntime's errors are not exported as a base class
            first = str(exc).strip().splitlines()[0]
            raise DataError(
                f"the ONNX model rejected inputs of shape {x.shape[1:]}: {first}"
            ) from exc
        return np.asarray(out)
