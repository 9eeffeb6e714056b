"""Targets: the models bastion attacks, white-box and black-box, behind one interface."""

from bastion.core.targets.base import BlackBoxTarget, Target
from bastion.core.targets.http import HttpTarget
from bastion.core.targets.onnx import OnnxTarget
from bastion.core.targets.sklearn import SklearnTarget
from bastion.core.targets.torch import TorchTarget, resolve_device

__all__ = [
    "BlackBoxTarget",
    "HttpTarget",
    "OnnxTarget",
    "SklearnTarget",
    "Target",
    "TorchTarget",
    "resolve_device",
]
