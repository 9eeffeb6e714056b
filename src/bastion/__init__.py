"""bastion: red-team, harden and guard machine learning models against adversarial attacks."""

from bastion.attacks import FGSM, PGD, Attack, SquareAttack
from bastion.core import (
    ATTACKS,
    DEFENCES,
    Access,
    AttackResult,
    BastionError,
    Finding,
    HttpTarget,
    Norm,
    OnnxTarget,
    OutputKind,
    Severity,
    SklearnTarget,
    Target,
    Threat,
    TorchTarget,
)
from bastion.data import Dataset, load_data, load_dataset
from bastion.zoo import load_demo

__version__ = "0.1.0"

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "FGSM",
    "PGD",
    "Access",
    "Attack",
    "AttackResult",
    "BastionError",
    "Dataset",
    "Finding",
    "HttpTarget",
    "Norm",
    "OnnxTarget",
    "OutputKind",
    "Severity",
    "SklearnTarget",
    "SquareAttack",
    "Target",
    "Threat",
    "TorchTarget",
    "__version__",
    "load_data",
    "load_dataset",
    "load_demo",
]
