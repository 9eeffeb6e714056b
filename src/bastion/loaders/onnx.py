"""An ONNX model, run with ONNX Runtime (holds a graph and numbers, no Python code)."""

from __future__ import annotations

from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind
from bastion.loaders.base import TargetSpec, output_kind, register_loader


@register_loader("onnx", suffixes=(".onnx",), extra="onnx")
def load_onnx(spec: TargetSpec) -> Target:
    """An ``.onnx`` file (``pip install 'bastion-ml[onnx]'``)."""
    from bastion.core.targets.onnx import OnnxTarget

    assert spec.path is not None
    kind = output_kind(spec.output_kind, OutputKind.LOGITS)
    return OnnxTarget(spec.path, output_kind=kind, **spec.common())
