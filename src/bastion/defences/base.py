"""Base classes of the five kinds of defence, and the parsing of ``name:param=value,...``."""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from bastion.core.errors import ConfigError
from bastion.core.registry import DEFENCES, Entry, config_model
from bastion.core.threat import OutputKind

__all__ = [
    "Defence",
    "Detector",
    "Postprocessor",
    "Preprocessor",
    "Sanitizer",
    "Trainer",
    "create_defence",
    "parse_defence",
]


class Defence:
    """Base of every defence: hyperparameters as keyword arguments stored unchanged (the
    scikit-learn convention), learned state in attributes ending in ``_``."""

    registry_name: ClassVar[str]

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in config_model(type(self)).model_fields}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    @property
    def entry(self) -> Entry:
        return DEFENCES.get(type(self).registry_name)

    def describe(self) -> str:
        """``name:param=value,...`` as a user would type it."""
        params = ",".join(f"{k}={v}" for k, v in self.get_params().items())
        return f"{self.registry_name}:{params}" if params else self.registry_name


class Preprocessor(Defence):
    """Transforms inputs before the model sees them.

    :meth:`transform` is what the defended model applies; :meth:`approximation` is a
    differentiable stand-in that gradients flow through (BPDA: Athalye, Carlini, Wagner,
    "Obfuscated Gradients Give a False Sense of Security", 2018, arXiv:1802.00420), so a
    white-box evaluation of the defended model is not fooled by a transform that only
    breaks gradients. The default stand-in is the identity.
    """

    def transform(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        raise NotImplementedError

    def approximation(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        return x

    def __call__(self, x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
        """The transform in the forward pass, the approximation's gradient in the backward."""
        approx = self.approximation(x, bounds)
        return approx + (self.transform(x.detach(), bounds) - approx).detach()


class Postprocessor(Defence):
    """Hardens what a model returns (fewer digits, fewer classes, labels only)."""

    def output_kind(self, inner: OutputKind) -> OutputKind:
        """What the defended target returns, given what the model returns."""
        return inner

    def transform(self, outputs: torch.Tensor, kind: OutputKind) -> torch.Tensor:
        raise NotImplementedError


class Trainer(Defence):
    """Fits and returns a new model: ``fit(target, data) -> target``."""

    def fit(self, target: Any, data: Any) -> Any:
        raise NotImplementedError


class Detector(Defence):
    """Scores inputs (or training samples); higher means more suspicious.

    :meth:`calibrate` sets ``threshold_`` so that at most ``fpr`` of clean inputs are flagged.
    """

    threshold_: float

    def score(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def calibrate(self, x_clean: torch.Tensor, fpr: float = 0.05) -> Detector:
        if not 0 < fpr < 1:
            raise ConfigError(f"the false-positive rate must be in (0, 1), got {fpr}")
        scores = self.score(x_clean).detach().float()
        self.threshold_ = float(torch.quantile(scores, 1 - fpr))
        return self

    def detect(self, x: torch.Tensor) -> torch.Tensor:
        if not hasattr(self, "threshold_"):
            raise ConfigError(f"{type(self).__name__} is not calibrated: call calibrate() first")
        return self.score(x) > self.threshold_


class Sanitizer(Defence):
    """Filters a dataset: ``fit(x, y)`` then ``keep_`` says which samples stay."""

    keep_: torch.Tensor

    def fit(self, x: torch.Tensor, y: torch.Tensor) -> Sanitizer:
        raise NotImplementedError


def parse_defence(spec: str) -> tuple[str, dict[str, Any]]:
    """``"squeeze:bits=4"`` -> ``("squeeze", {"bits": "4"})``; values are converted to their
    declared types when the defence is created."""
    import yaml

    name, _, rest = spec.strip().partition(":")
    if not name:
        raise ConfigError(f"a defence looks like 'name' or 'name:param=value,...', got {spec!r}")
    params: dict[str, Any] = {}
    for item in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"defence parameter {item!r} in {spec!r} is not 'param=value'")
        try:
            params[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            params[key.strip()] = value
    return name, params


def create_defence(spec: str) -> Defence:
    """The registered defence a ``name:param=value,...`` spec names, with its parameters."""
    name, params = parse_defence(spec)
    defence: Defence = DEFENCES.create(name, **params)
    check = getattr(defence, "_check_params", None)
    if callable(check):
        check()
    return defence
