"""A model behind a JSON predict endpoint."""

from __future__ import annotations

from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind
from bastion.loaders.base import TargetSpec, output_kind, register_loader


@register_loader("http", schemes=("http", "https"))
def load_http(spec: TargetSpec) -> Target:
    """An http(s) URL: POST ``{"inputs": batch}``, read ``{"outputs": ...}`` back."""
    from bastion.core.targets.http import HttpTarget

    kind = output_kind(spec.output_kind, OutputKind.PROBABILITIES)
    return HttpTarget(
        spec.source, output_kind=kind, headers=dict(spec.headers), **spec.options, **spec.common()
    )
