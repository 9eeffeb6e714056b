"""Turn the strings a user types (target and data specs) into targets and datasets.

Target specs:

- ``demo`` or a demo model's name (``digits-cnn``, ``digits-logreg``, ...): built in;
- ``http://...`` or ``https://...``: a JSON predict endpoint;
- ``model.onnx``: an ONNX model;
- ``model.skops``: a scikit-learn model saved with skops (only its trusted types load);
- ``model.joblib`` / ``model.pkl``: a pickled scikit-learn model, only with ``trust=True``;
- ``model.pt``: a TorchScript archive, or a state dict when ``arch="module:factory"`` names
  the architecture (loaded with ``weights_only=True``: no code runs from the file);
- ``model.pt2``: a program saved by ``torch.export.save``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bastion.core.errors import ConfigError, DataError, TargetError, UntrustedFileError
from bastion.core.targets import HttpTarget, OnnxTarget, SklearnTarget, Target, TorchTarget
from bastion.core.targets.torch import resolve_device
from bastion.core.threat import OutputKind
from bastion.data import Dataset, load_data
from bastion.zoo import ZOO, load_demo

__all__ = ["DEMO", "load_target_and_data"]

DEMO = "digits-cnn"
_PICKLES = {".joblib", ".pkl", ".pickle"}
_TORCH = {".pt", ".pth", ".ts", ".torchscript", ".pt2"}

ProgressFn = Callable[[int, int], None]


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


def _torch_module(path: Path, arch: str | None) -> nn.Module:
    if path.suffix.lower() == ".pt2":
        try:
            program = torch.export.load(str(path))
        except Exception as exc:  # not an exported program
            raise TargetError(f"{path} is not a torch.export program: {exc}") from exc
        return _Exported(program.module())
    if arch is not None:
        model = _factory(arch)()
        if not isinstance(model, nn.Module):
            raise TargetError(f"{arch} returned {type(model).__name__}, not a torch.nn.Module")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several unrelated types for a bad archive
            raise TargetError(f"{path} is not a loadable state dict: {exc}") from exc
        if not isinstance(state, Mapping):
            raise TargetError(f"{path} holds a {type(state).__name__}, not a state dict")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            first = str(exc).splitlines()[0]
            raise TargetError(f"the weights in {path} do not fit {arch}: {first}") from exc
        return model
    try:
        return torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call,no-any-return]
    except Exception as exc:  # not a TorchScript archive
        raise TargetError(
            f"{path} is not a TorchScript archive; for a state dict, name its architecture "
            "with --arch package.module:factory"
        ) from exc


def _sklearn(path: Path, trust: bool) -> Any:
    if path.suffix.lower() in _PICKLES:
        if not trust:
            raise UntrustedFileError(
                f"{path} is a pickle, and loading a pickle runs whatever code it holds; "
                "save the model with skops instead, or pass --trust if you made this file"
            )
        import joblib

        try:
            return joblib.load(path)
        except Exception as exc:  # unpickling fails in many ways
            raise TargetError(f"cannot load {path}: {exc}") from exc
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as exc:  # a damaged or foreign file
        raise TargetError(f"{path} is not a skops file: {exc}") from exc
    if untrusted and not trust:
        shown = ", ".join(untrusted[:5]) + (" ..." if len(untrusted) > 5 else "")
        raise UntrustedFileError(
            f"{path} holds types skops does not trust by default ({shown}); "
            "pass --trust if you made this file"
        )
    return sio.load(path, trusted=untrusted or None)


def _kind(value: str | None, default: OutputKind) -> OutputKind:
    if value is None:
        return default
    try:
        return OutputKind(value)
    except ValueError:
        choices = ", ".join(k.value for k in OutputKind)
        raise ConfigError(f"unknown output kind {value!r}; use one of {choices}") from None


def load_target_and_data(
    spec: str | None,
    data_spec: str | None = None,
    *,
    arch: str | None = None,
    trust: bool = False,
    device: str | None = None,
    output_kind: str | None = None,
    query_budget: int | None = None,
    headers: Mapping[str, str] | None = None,
    label_column: str = "label",
    bounds: tuple[float, float] | None = None,
    num_classes: int | None = None,
    progress: ProgressFn | None = None,
) -> tuple[Target, Dataset]:
    """The target named by ``spec`` and the data to attack it with.

    With no ``spec`` the built-in demo (a small CNN on scikit-learn's digits) is used, trained
    on first use. A user's model needs ``data_spec``: its bounds, classes and input shape come
    from the data.
    """
    spec = spec or DEMO
    if spec == "demo":
        spec = DEMO
    if spec in ZOO:
        target, data = load_demo(spec, device=resolve_device(device), progress=progress)
        if data_spec is not None:
            data = load_data(
                data_spec, label_column=label_column, bounds=bounds, num_classes=num_classes
            )
        if query_budget is not None:
            target.query_budget = query_budget
        return target, data
    if data_spec is None:
        raise DataError("a model of your own needs data to attack: give --data")
    data = load_data(data_spec, label_column=label_column, bounds=bounds, num_classes=num_classes)
    common: dict[str, Any] = dict(
        num_classes=data.num_classes,
        bounds=data.bounds,
        input_shape=data.input_shape,
        query_budget=query_budget,
    )
    if spec.startswith(("http://", "https://")):
        kind = _kind(output_kind, OutputKind.PROBABILITIES)
        return HttpTarget(spec, output_kind=kind, headers=headers, **common), data
    path = Path(spec).expanduser()
    if not path.exists():
        demos = ", ".join(ZOO)
        raise TargetError(f"no model at {spec!r} (not a file, a URL, or a demo: {demos})")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        kind = _kind(output_kind, OutputKind.LOGITS)
        return OnnxTarget(path, output_kind=kind, **common), data
    if suffix == ".skops" or suffix in _PICKLES:
        estimator = _sklearn(path, trust)
        kind_or_none = _kind(output_kind, OutputKind.PROBABILITIES) if output_kind else None
        return SklearnTarget(estimator, output_kind=kind_or_none, name=path.name, **common), data
    if suffix in _TORCH:
        module = _torch_module(path, arch)
        kind = _kind(output_kind, OutputKind.LOGITS)
        return TorchTarget(
            module, output_kind=kind, device=resolve_device(device), name=path.name, **common
        ), data
    raise TargetError(
        f"{path}: unknown model format {suffix!r}; use .pt (TorchScript or a state dict with "
        "--arch), .onnx, .skops, .joblib (with --trust) or an http(s) URL"
    )
