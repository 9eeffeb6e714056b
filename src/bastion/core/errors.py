"""The errors a user can cause, as one small hierarchy.

Everything here derives from :class:`BastionError`; the CLI renders any of them as one line
and exits non-zero. Programming errors (bugs) stay ordinary Python exceptions.
"""

from __future__ import annotations

__all__ = [
    "AccessError",
    "BastionError",
    "ConfigError",
    "DataError",
    "IntegrityError",
    "MissingExtraError",
    "QueryBudgetExceeded",
    "TargetError",
    "UntrustedFileError",
]


class BastionError(Exception):
    """Base class of every error a user of bastion can cause."""

    exit_code = 2


class ConfigError(BastionError):
    """An argument or setting makes no sense (a negative epsilon, an unknown norm)."""


class DataError(BastionError):
    """Inputs or labels do not fit the target (shape, bounds, label range)."""


class IntegrityError(DataError):
    """Data or a model does not match what was signed: a bad signature, an unknown key, or
    samples added, removed, changed or relabelled since the manifest was made."""


class TargetError(BastionError):
    """The model cannot be loaded or queried."""


class AccessError(TargetError):
    """The target does not give the access an operation needs (gradients from a black box)."""


class QueryBudgetExceeded(BastionError):
    """A query would take the target past its query budget."""

    exit_code = 3


class UntrustedFileError(BastionError):
    """A file could run code when loaded and was not marked as trusted."""


class MissingExtraError(BastionError, ImportError):
    """An optional dependency is missing; the message names the extra that provides it."""
