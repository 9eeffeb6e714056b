"""bastion: red-team, harden and guard machine learning models against adversarial attacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_getattr

__version__ = "0.1.0"

_LAZY = {
    "DefendedTarget": "bastion.defences",
    "Report": "bastion.core.assessment",
    "Assessment": "bastion.core.assessment",
    "ATTACKS": "bastion.core",
    "Access": "bastion.core",
    "Attack": "bastion.attacks",
    "AttackResult": "bastion.core",
    "BastionError": "bastion.core",
    "DEFENCES": "bastion.core",
    "Dataset": "bastion.data",
    "FGSM": "bastion.attacks",
    "Finding": "bastion.core",
    "HttpTarget": "bastion.core",
    "Norm": "bastion.core",
    "OnnxTarget": "bastion.core",
    "OutputKind": "bastion.core",
    "PGD": "bastion.attacks",
    "Severity": "bastion.core",
    "SklearnTarget": "bastion.core",
    "SquareAttack": "bastion.attacks",
    "Target": "bastion.core",
    "Threat": "bastion.core",
    "TorchTarget": "bastion.core",
    "load_data": "bastion.data",
    "load_dataset": "bastion.data",
    "load_demo": "bastion.zoo",
    "evaluate": "bastion.assess.evaluate",
}

if TYPE_CHECKING:
    from bastion.assess.evaluate import evaluate
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
    from bastion.core.assessment import Assessment, Report
    from bastion.data import Dataset, load_data, load_dataset
    from bastion.defences import DefendedTarget
    from bastion.zoo import load_demo

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "FGSM",
    "PGD",
    "Access",
    "Assessment",
    "Attack",
    "AttackResult",
    "BastionError",
    "Dataset",
    "DefendedTarget",
    "Finding",
    "HttpTarget",
    "Norm",
    "OnnxTarget",
    "OutputKind",
    "Report",
    "Severity",
    "SklearnTarget",
    "SquareAttack",
    "Target",
    "Threat",
    "TorchTarget",
    "__version__",
    "evaluate",
    "load_data",
    "load_dataset",
    "load_demo",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
