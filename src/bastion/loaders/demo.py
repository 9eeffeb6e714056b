"""The built-in demo models (trained by bastion itself, in seconds, on the CPU)."""

from __future__ import annotations

from bastion.core.targets.base import Target
from bastion.loaders.base import TargetSpec, register_loader


def _demo_names() -> tuple[str, ...]:
    from bastion.zoo import ZOO

    return ("demo", *ZOO)


@register_loader("demo", names=_demo_names, needs_data=False)
def load_demo_target(spec: TargetSpec) -> Target:
    """A demo model by name (``demo`` is ``digits-cnn``); trained on first use and cached."""
    from bastion.core.targets.torch import resolve_device
    from bastion.zoo import load_demo

    name = "digits-cnn" if spec.source == "demo" else spec.source
    progress = spec.options.get("progress")
    target, _ = load_demo(name, device=resolve_device(spec.device), progress=progress)
    if spec.query_budget is not None:
        target.query_budget = spec.query_budget
    return target
