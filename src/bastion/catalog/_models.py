"""The catalog's entries as typed, immutable values."""

from __future__ import annotations

from enum import Enum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.core.threat import Access

__all__ = [
    "AttackPath",
    "Harm",
    "Mitigation",
    "Phase",
    "Playbook",
    "PlaybookStep",
    "Prerequisites",
    "Signal",
    "Surface",
    "Tactic",
    "Technique",
]


class Harm(str, Enum):
    """The security property a technique damages."""

    CONFIDENTIALITY = "confidentiality"
    INTEGRITY = "integrity"
    AVAILABILITY = "availability"


class Surface(str, Enum):
    """What an adversary must be able to reach for a technique to be possible.

    Threat modeling scores each surface for a system (how exposed it is, 0 to 5) and derives a
    technique's likelihood from the surfaces it needs.
    """

    PUBLIC_INFO = "public-info"
    API = "api"
    QUERY = "query"
    SCORES = "scores"
    WEIGHTS = "weights"
    PHYSICAL = "physical"
    TRAINING_DATA = "training-data"
    THIRD_PARTY_DATA = "third-party-data"
    SUPPLY_CHAIN = "supply-chain"
    ARTIFACTS = "artifacts"
    ACCOUNTS = "accounts"
    BIOMETRIC = "biometric"
    PERSONAL_DATA = "personal-data"
    OUTCOME = "outcome"


class Phase(str, Enum):
    """Where in the ML lifecycle a mitigation acts."""

    DESIGN = "design"
    DATA = "data"
    TRAINING = "training"
    EVALUATION = "evaluation"
    DEPLOYMENT = "deployment"
    MONITORING = "monitoring"
    RESPONSE = "response"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Tactic(_Frozen):
    """A stage of the adversary's path, aligned to one ATLAS tactic."""

    id: str = Field(pattern=r"^AML\.TA\d{4}$")
    name: str
    stage: str
    order: int
    description: str


class Prerequisites(_Frozen):
    """What the adversary needs before a technique is possible."""

    access: tuple[Access, ...] = Field(
        default=(), description="model access levels that suffice; empty: no model access needed"
    )
    data_kinds: tuple[str, ...] = Field(default=("any",), description="input kinds it works on")
    knowledge: str = "none"


class Technique(_Frozen):
    """An adversary technique, with what it needs, what it harms and how it shows."""

    id: str = Field(pattern=r"^AML\.T\d{4}(\.\d{3})?$")
    name: str
    maturity: Literal["feasible", "demonstrated", "realized"] = Field(
        default="demonstrated", description="ATLAS's evidence level: research, demo, in the wild"
    )
    description: str
    tactics: tuple[str, ...] = ()
    parent: str | None = None
    harms: tuple[Harm, ...] = ()
    enabler: bool = Field(
        default=False, description="prepares other techniques; harms nothing alone"
    )
    prerequisites: Prerequisites = Prerequisites()
    surfaces: tuple[str, ...] = Field(
        default=(), description="all needed; 'a|b' means either a or b is enough"
    )
    signals: tuple[str, ...] = ()
    attacks: tuple[str, ...] = Field(default=(), description="bastion attacks that execute it")
    executable: bool = Field(default=False, description="could be exercised in software")
    playbook: str | None = None

    @property
    def is_subtechnique(self) -> bool:
        return self.parent is not None


class Mitigation(_Frozen):
    """A mitigation (ATLAS) or defensive technique (AIDEFEND) and what it counters."""

    id: str = Field(pattern=r"^(AML\.M\d{4}|AID-[A-Z]{1,2}-\d{3}(\.\d{3})?)$")
    name: str
    framework: Literal["atlas", "aidefend"]
    description: str
    phase: tuple[Phase, ...] = ()
    techniques: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    defences: tuple[str, ...] = Field(default=(), description="bastion defences implementing it")
    aidefend_tactic: str | None = None


class Signal(_Frozen):
    """Something a defender can observe that points at a technique."""

    id: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$")
    name: str
    description: str


class PlaybookStep(_Frozen):
    step: str
    controls: tuple[str, ...] = ()


class Playbook(_Frozen):
    """Response steps for a family of techniques: contain, evict, restore."""

    id: str
    name: str
    contain: tuple[PlaybookStep, ...]
    evict: tuple[PlaybookStep, ...]
    restore: tuple[PlaybookStep, ...]


class AttackPath(_Frozen):
    """A chain of techniques from access to impact."""

    id: str
    name: str
    description: str
    steps: tuple[str, ...] = Field(min_length=2)
