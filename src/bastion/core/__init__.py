"""The core abstractions: targets, threats, results, findings, the registries and the errors."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion._lazy import lazy_getattr

_LAZY = {
    "Artifact": "bastion.core.assessment",
    "Assessment": "bastion.core.assessment",
    "Metric": "bastion.core.assessment",
    "Report": "bastion.core.assessment",
    "Criterion": "bastion.core.criteria",
    "Misclassification": "bastion.core.criteria",
    "TargetedMisclassification": "bastion.core.criteria",
    "TopKMisclassification": "bastion.core.criteria",
    "ConfidentMisclassification": "bastion.core.criteria",
    "load_plugins": "bastion.core.plugins",
    "default_epsilons": "bastion.core.threat",
    "ATTACKS": "bastion.core.registry",
    "Access": "bastion.core.threat",
    "AccessError": "bastion.core.errors",
    "AttackResult": "bastion.core.results",
    "BastionError": "bastion.core.errors",
    "BlackBoxTarget": "bastion.core.targets",
    "ConfigError": "bastion.core.errors",
    "DEFENCES": "bastion.core.registry",
    "DataError": "bastion.core.errors",
    "Entry": "bastion.core.registry",
    "Finding": "bastion.core.findings",
    "HttpTarget": "bastion.core.targets",
    "MissingExtraError": "bastion.core.errors",
    "Norm": "bastion.core.threat",
    "OnnxTarget": "bastion.core.targets",
    "OutputKind": "bastion.core.threat",
    "QueryBudgetExceeded": "bastion.core.errors",
    "Registry": "bastion.core.registry",
    "Severity": "bastion.core.findings",
    "SklearnTarget": "bastion.core.targets",
    "Target": "bastion.core.targets",
    "TargetError": "bastion.core.errors",
    "Threat": "bastion.core.threat",
    "TorchTarget": "bastion.core.targets",
    "UntrustedFileError": "bastion.core.errors",
    "register_attack": "bastion.core.registry",
    "register_defence": "bastion.core.registry",
}

if TYPE_CHECKING:
    from bastion.core.assessment import Artifact, Assessment, Metric, Report
    from bastion.core.criteria import (
        ConfidentMisclassification,
        Criterion,
        Misclassification,
        TargetedMisclassification,
        TopKMisclassification,
    )
    from bastion.core.errors import (
        AccessError,
        BastionError,
        ConfigError,
        DataError,
        MissingExtraError,
        QueryBudgetExceeded,
        TargetError,
        UntrustedFileError,
    )
    from bastion.core.findings import Finding, Severity
    from bastion.core.plugins import load_plugins
    from bastion.core.registry import (
        ATTACKS,
        DEFENCES,
        Entry,
        Registry,
        register_attack,
        register_defence,
    )
    from bastion.core.results import AttackResult
    from bastion.core.targets import (
        BlackBoxTarget,
        HttpTarget,
        OnnxTarget,
        SklearnTarget,
        Target,
        TorchTarget,
    )
    from bastion.core.threat import Access, Norm, OutputKind, Threat, default_epsilons

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "Access",
    "AccessError",
    "Artifact",
    "Assessment",
    "AttackResult",
    "BastionError",
    "BlackBoxTarget",
    "ConfidentMisclassification",
    "ConfigError",
    "Criterion",
    "DataError",
    "Entry",
    "Finding",
    "HttpTarget",
    "Metric",
    "Misclassification",
    "MissingExtraError",
    "Norm",
    "OnnxTarget",
    "OutputKind",
    "QueryBudgetExceeded",
    "Registry",
    "Report",
    "Severity",
    "SklearnTarget",
    "Target",
    "TargetError",
    "TargetedMisclassification",
    "Threat",
    "TopKMisclassification",
    "TorchTarget",
    "UntrustedFileError",
    "default_epsilons",
    "load_plugins",
    "register_attack",
    "register_defence",
]

__getattr__ = lazy_getattr(__name__, _LAZY, globals())
