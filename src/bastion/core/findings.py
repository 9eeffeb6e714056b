"""Findings: what an assessment concludes, and the only thing reports are made from."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Finding", "Severity"]


class Severity(str, Enum):
    """How much a finding matters, from most to least."""

    CRITICAL = "critical"
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"

    @property
    def rank(self) -> int:
        return ["info", "low", "medium", "high", "critical"].index(self.value)


class Finding(BaseModel):
    """One conclusion of an assessment, with its evidence and what to do about it.

    ``techniques`` are MITRE ATLAS ids, most specific first (``AML.T0043.000`` before
    ``AML.T0015``); ``mitigations`` are ATLAS mitigation ids; both are described in the catalog.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    title: str
    severity: Severity
    techniques: tuple[str, ...]
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)
    mitigations: tuple[str, ...] = ()
    attacks: tuple[str, ...] = ()
    unreliable: str | None = Field(
        default=None,
        description="why the figure behind this finding cannot be trusted (the evaluation's own "
        "checks fired); an unreliable finding fails any --fail-on gate",
    )

    def fails(self, threshold: Severity) -> bool:
        """Whether this finding fails a gate at ``threshold``: severe enough, or unreliable."""
        return self.severity.rank >= threshold.rank or self.unreliable is not None
