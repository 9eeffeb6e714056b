"""The threat: what the adversary may change and what they know, as a serializable value."""

from __future__ import annotations

import math
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bastion.core.criteria import (
    Criterion,
    CriterionSpec,
    Misclassification,
    TargetedMisclassification,
)
from bastion.core.errors import ConfigError

__all__ = [
    "RELATIVE_EPSILONS",
    "Access",
    "Norm",
    "OutputKind",
    "Threat",
    "absolute_epsilons",
    "default_epsilons",
]

#: the default sweep, as shares of what the norm can reach (see :func:`default_epsilons`)
RELATIVE_EPSILONS: dict[str, tuple[float, ...]] = {
    "linf": (0.05, 0.1, 0.2, 0.3),
    "l2": (0.05, 0.1, 0.2, 0.3),
    "l1": (0.01, 0.02, 0.05, 0.1),
    "l0": (1, 2, 4, 8),
}


class Norm(str, Enum):
    """The norm that measures a perturbation."""

    LINF = "linf"
    L2 = "l2"
    L1 = "l1"
    L0 = "l0"

    @classmethod
    def parse(cls, value: str | Norm) -> Norm:
        if isinstance(value, Norm):
            return value
        key = str(value).strip().lower().replace("_", "").replace("-", "")
        aliases = {
            "linf": cls.LINF,
            "inf": cls.LINF,
            "l∞": cls.LINF,
            "l2": cls.L2,
            "l1": cls.L1,
            "l0": cls.L0,
        }
        if key not in aliases:
            raise ConfigError(f"unknown norm {value!r}: use one of linf, l2, l1, l0")
        return aliases[key]


class Access(str, Enum):
    """How much of the model an adversary (or an attack) can see, from most to least."""

    WHITE_BOX = "white-box"
    SCORES = "score-based"
    LABELS = "label-only"

    @property
    def rank(self) -> int:
        return {"white-box": 2, "score-based": 1, "label-only": 0}[self.value]

    def allows(self, needed: Access) -> bool:
        """Whether this much access is enough for something that needs ``needed``."""
        return self.rank >= needed.rank


class OutputKind(str, Enum):
    """What a model returns for a batch of inputs."""

    LOGITS = "logits"
    PROBABILITIES = "probabilities"
    LABELS = "labels"


class Threat(BaseModel):
    """A threat model: the perturbation norm and sizes, the goal and the adversary's knowledge.

    ``epsilons`` is a sweep; :meth:`at` picks one size for a single attack run.

    >>> Threat(norm="linf", epsilons=(0.1, 0.3)).at(0.1).epsilon
    0.1
    """

    model_config = ConfigDict(frozen=True, use_enum_values=False, extra="forbid")

    norm: Norm = Norm.LINF
    epsilons: tuple[float, ...] = Field(default=(0.3,), min_length=1)
    targeted: bool = False
    criterion: CriterionSpec | None = Field(
        default=None, description="what counts as fooled; None: (targeted) misclassification"
    )
    knowledge: Access = Field(
        default=Access.WHITE_BOX,
        description="the most access the adversary has: attacks needing more do not run",
    )
    queries_per_input: int | None = Field(
        default=None, description="queries a black-box attack may spend on each input"
    )

    @field_validator("norm", mode="before")
    @classmethod
    def _parse_norm(cls, value: object) -> Norm:
        return Norm.parse(value)  # type: ignore[arg-type]

    @field_validator("epsilons", mode="before")
    @classmethod
    def _as_tuple(cls, value: object) -> object:
        if isinstance(value, (int, float)):
            return (float(value),)
        return value

    @model_validator(mode="after")
    def _check(self) -> Threat:
        for eps in self.epsilons:
            if not math.isfinite(eps) or eps <= 0:
                raise ConfigError(f"epsilon must be a positive finite number, got {eps}")
            if self.norm is Norm.L0 and eps != int(eps):
                raise ConfigError(
                    f"an L0 epsilon counts changed features, so it must be whole: {eps}"
                )
        if len(set(self.epsilons)) != len(self.epsilons):
            raise ConfigError(f"epsilons repeat: {self.epsilons}")
        if self.queries_per_input is not None and self.queries_per_input < 1:
            raise ConfigError(f"queries per input must be at least 1, got {self.queries_per_input}")
        if self.criterion is not None and self.targeted != (self.criterion.kind == "targeted"):
            raise ConfigError(
                f"targeted={self.targeted} contradicts the {self.criterion.kind} criterion"
            )
        return self

    @property
    def goal(self) -> Criterion:
        """The success criterion: the one given, or (targeted) misclassification."""
        if self.criterion is not None:
            return self.criterion
        return TargetedMisclassification() if self.targeted else Misclassification()

    @property
    def epsilon(self) -> float:
        """The single epsilon of this threat; an error if it is a sweep."""
        if len(self.epsilons) != 1:
            raise ConfigError(
                f"this threat sweeps {len(self.epsilons)} epsilons; pick one with at()"
            )
        return self.epsilons[0]

    def at(self, eps: float) -> Threat:
        """The same threat with a single epsilon."""
        return self.model_copy(update={"epsilons": (float(eps),)})

    def check_bounds(self, bounds: tuple[float, float]) -> None:
        """Refuse epsilons that make no sense for inputs within ``bounds``."""
        span = bounds[1] - bounds[0]
        if self.norm is Norm.LINF:
            for eps in self.epsilons:
                if eps >= span:
                    raise ConfigError(
                        f"Linf epsilon {eps} is not below the input range {span:g} "
                        f"(bounds {bounds[0]:g}..{bounds[1]:g}): every input could become any input"
                    )


def absolute_epsilons(
    relative: tuple[float, ...], norm: Norm | str, bounds: tuple[float, float], dims: int
) -> tuple[float, ...]:
    """Epsilons given as shares of what the norm can reach, in input units: a share of the
    input range per feature (Linf), of the range times the root of the dimension (L2), of the
    range times the dimension (L1), or numbers of changed features as given (L0)."""
    n = Norm.parse(norm)
    span = bounds[1] - bounds[0]
    if n is Norm.LINF:
        return tuple(round(r * span, 6) for r in relative)
    if n is Norm.L2:
        return tuple(round(r * span * max(dims, 1) ** 0.5, 4) for r in relative)
    if n is Norm.L1:
        return tuple(round(r * span * max(dims, 1), 4) for r in relative)
    return tuple(sorted({float(min(int(r), max(dims, 1))) for r in relative}))


def default_epsilons(norm: Norm | str, bounds: tuple[float, float], dims: int) -> tuple[float, ...]:
    """The default sweep, meaning the same on any data: 5%, 10%, 20% and 30% of the input range
    per feature (Linf), of the range times the root of the dimension (L2), 1%, 2%, 5% and 10%
    of the range times the dimension (L1), or 1, 2, 4 and 8 changed features (L0). The one
    definition every command uses."""
    n = Norm.parse(norm)
    return absolute_epsilons(RELATIVE_EPSILONS[n.value], n, bounds, dims)
