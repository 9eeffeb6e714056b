"""Run the scans an assessment plan (from ``bastion threats model``) asks for."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from bastion.assess.scan import ScanResult, scan
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.core.targets.base import Target
from bastion.core.threat import Threat, absolute_epsilons
from bastion.data import Dataset
from bastion.threats.plan import AssessmentPlan, PlanItem

__all__ = ["plan_items", "scan_plan"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


def plan_items(plan: AssessmentPlan, asset: str | None) -> list[PlanItem]:
    """The plan's items for ``asset`` (all of them when ``asset`` is None)."""
    if asset is None:
        if not plan.items:
            raise ConfigError(f"the plan for {plan.system!r} has no assessments")
        return list(plan.items)
    chosen = [i for i in plan.items if i.asset == asset]
    if not chosen:
        known = ", ".join(sorted({i.asset for i in plan.items})) or "none"
        raise ConfigError(f"the plan has no assessment for asset {asset!r}; assets: {known}")
    return chosen


def scan_plan(
    target: Target,
    data: Dataset,
    plan: AssessmentPlan,
    *,
    asset: str | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> list[tuple[PlanItem, ScanResult]]:
    """Scan ``target`` as each chosen plan item says: its attacks (those the target's access
    allows), norm, epsilons, samples and per-input query budget."""
    results = []
    for item in plan_items(plan, asset):
        runnable = [a for a in item.attacks if target.access.allows(ATTACKS.get(a).access)]
        skipped = sorted(set(item.attacks) - set(runnable))
        if skipped:
            log.warning(
                "%s gives %s access; skipping %s",
                target.name,
                target.access.value,
                ", ".join(skipped),
            )
        if not runnable:
            raise ConfigError(
                f"none of the plan's attacks for {item.asset!r} ({', '.join(item.attacks)}) "
                f"can run against a {target.access.value} target"
            )
        threat = Threat(
            norm=item.norm,
            epsilons=(
                absolute_epsilons(
                    item.epsilons, item.norm, data.bounds, math.prod(data.input_shape)
                )
                if item.relative
                else item.epsilons
            ),
            knowledge=item.access,
            queries_per_input=item.query_budget,
        )
        result = scan(
            target,
            data,
            threat,
            samples=item.samples,
            seed=seed,
            attacks=runnable,
            progress=progress,
        )
        results.append((item, result))
    return results
