"""The assessment plan: which bastion attacks to run against which asset, and how hard.

A threat model emits a plan; ``bastion scan --plan plan.json`` consumes it. The plan is a
pydantic model so both sides agree on its shape, and :func:`load_plan` reads it back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field

from bastion.core.errors import ConfigError
from bastion.core.files import atomic_write
from bastion.core.registry import ATTACKS
from bastion.core.threat import Access, Norm
from bastion.threats._io import inside, load_model_file
from bastion.threats.system import ID_PATTERN

__all__ = ["AssessmentPlan", "PlanItem", "load_plan", "save_plan"]


class PlanItem(BaseModel):
    """One assessment to run: a set of attacks against one model asset."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # The asset id names the folder ``bastion scan --plan`` writes this item's reports into, so
    # it must be a plain id (as in the system description), never a path such as ``../x``.
    asset: str = Field(
        pattern=ID_PATTERN, description="id of the model asset in the system description"
    )
    techniques: tuple[str, ...] = Field(min_length=1, description="ATLAS ids being measured")
    attacks: tuple[str, ...] = Field(min_length=1, description="bastion attack registry names")
    access: Access = Field(description="the access a real adversary would have")
    norm: Norm = Norm.LINF
    epsilons: tuple[float, ...] = Field(min_length=1)
    relative: bool = Field(
        default=True,
        description="epsilons are shares of the input range (Linf; L2: of the range times the "
        "root of the dimension), turned into input units by the data's bounds when scanned; "
        "false: epsilons are in input units already",
    )
    query_budget: int | None = Field(default=None, ge=1, description="queries per input")
    samples: int = Field(default=200, ge=1)
    priority: Literal["critical", "high", "medium", "low"] = "medium"
    reason: str = ""


class AssessmentPlan(BaseModel):
    """Every assessment a threat model recommends, most urgent first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal["1.0"] = "1.0"
    system: str
    generated_by: str = "bastion threats model"
    items: tuple[PlanItem, ...] = ()

    def unknown_attacks(self) -> list[str]:
        """Attack names in the plan that the attack registry does not know."""
        return sorted({a for item in self.items for a in item.attacks if a not in ATTACKS})


def load_plan(path: str | Path, *, check_attacks: bool = True) -> AssessmentPlan:
    """Read a plan (JSON or YAML); ``ConfigError`` if invalid or naming unknown attacks."""
    plan = load_model_file(path, AssessmentPlan, "assessment plan")
    if check_attacks:
        unknown = plan.unknown_attacks()
        if unknown:
            raise ConfigError(f"plan {path} names unknown attacks: {', '.join(unknown)}")
    return plan


def save_plan(plan: AssessmentPlan, path: str | Path, *, within: str | Path | None = None) -> Path:
    """Write ``plan`` as JSON (``.json``) or YAML (any other suffix), atomically.

    ``within``: the output folder the plan must land in; a ``path`` resolving elsewhere (through
    ``..`` or a symbolic link) is refused with ``ConfigError``. Without it, ``path`` is taken as
    the user's explicit choice of file.
    """
    p = Path(path)
    target = inside(within, p) if within is not None else p
    data = plan.model_dump(mode="json")
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False)
    atomic_write(target, text)
    return p
