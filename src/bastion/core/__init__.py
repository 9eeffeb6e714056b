"""The core abstractions: targets, threats, results, findings, the registries and the errors."""

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
from bastion.core.threat import Access, Norm, OutputKind, Threat

__all__ = [
    "ATTACKS",
    "DEFENCES",
    "Access",
    "AccessError",
    "AttackResult",
    "BastionError",
    "BlackBoxTarget",
    "ConfigError",
    "DataError",
    "Entry",
    "Finding",
    "HttpTarget",
    "MissingExtraError",
    "Norm",
    "OnnxTarget",
    "OutputKind",
    "QueryBudgetExceeded",
    "Registry",
    "Severity",
    "SklearnTarget",
    "Target",
    "TargetError",
    "Threat",
    "TorchTarget",
    "UntrustedFileError",
    "register_attack",
    "register_defence",
]
