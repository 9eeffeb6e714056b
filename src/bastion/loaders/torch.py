"""PyTorch models: a state dict with its architecture (numbers only), or an archive that
carries code (TorchScript, torch.export), which needs --trust."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping

import torch
from torch import nn

from bastion.core.errors import TargetError
from bastion.core.targets.base import Target
from bastion.core.threat import OutputKind
from bastion.loaders.base import TargetSpec, output_kind, register_loader, require_trust

_STATE_DICT = "save a state dict and name its architecture with --arch package.module:factory"


def _factory(arch: str) -> Callable[[], nn.Module]:
    module_name, _, attr = arch.partition(":")
    if not module_name or not attr:
        raise TargetError(f"--arch must look like 'package.module:factory', got {arch!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise TargetError(f"cannot import {module_name!r} for the architecture: {exc}") from exc
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise TargetError(f"{module_name} has no callable {attr!r}")
    return factory  # type: ignore[no-any-return]


class _Exported(nn.Module):
    """An exported program, whose train or eval behaviour was fixed when it was exported."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def train(self, mode: bool = True) -> _Exported:
        # exported modules refuse train()/eval(); their mode cannot change, so none is passed on
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x)  # type: ignore[no-any-return]


def _state_dict_module(spec: TargetSpec, arch: str) -> nn.Module:
    assert spec.path is not None
    model = _factory(arch)()
    if not isinstance(model, nn.Module):
        raise TargetError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
    try:
        state = torch.load(spec.path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a bad archive
        raise TargetError(f"{spec.path} is not a loadable state dict: {exc}") from exc
    if not isinstance(state, Mapping):
        raise TargetError(f"{spec.path} holds a {type(state).__name__}, not a state dict")
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise TargetError(f"the weights in {spec.path} do not fit {arch}: {first}") from exc
    return model


def _target(spec: TargetSpec, module: nn.Module) -> Target:
    from bastion.core.targets.torch import TorchTarget, resolve_device

    assert spec.path is not None
    kind = output_kind(spec.output_kind, OutputKind.LOGITS)
    return TorchTarget(
        module,
        output_kind=kind,
        device=resolve_device(spec.device),
        name=spec.path.name,
        **spec.common(),
    )


@register_loader("torch", suffixes=(".pt", ".pth", ".ts", ".torchscript"))
def load_torch(spec: TargetSpec) -> Target:
    """A state dict with --arch (loaded as numbers only), or a TorchScript archive (--trust)."""
    if spec.arch is not None:
        return _target(spec, _state_dict_module(spec, spec.arch))
    require_trust(
        spec, "a TorchScript archive (or, without --arch, read as one)", alternative=_STATE_DICT
    )
    try:
        module = torch.jit.load(str(spec.path), map_location="cpu")  # type: ignore[no-untyped-call]
    except Exception as exc:  # not a TorchScript archive
        raise TargetError(
            f"{spec.path} is not a TorchScript archive; for a state dict, name its architecture "
            "with --arch package.module:factory"
        ) from exc
    return _target(spec, module)


@register_loader("torch-export", suffixes=(".pt2",), carries_code=True)
def load_exported(spec: TargetSpec) -> Target:
    """A program saved by ``torch.export.save`` (--trust)."""
    require_trust(spec, "a torch.export program", alternative=_STATE_DICT)
    try:
        program = torch.export.load(str(spec.path))
    except Exception as exc:  # not an exported program
        raise TargetError(f"{spec.path} is not a torch.export program: {exc}") from exc
    return _target(spec, _Exported(program.module()))
