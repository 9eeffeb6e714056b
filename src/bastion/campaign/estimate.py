"""How long a campaign's cells will take, before any of them runs.

Each distinct target is loaded once and timed: seconds per input for a forward pass and for a
forward and backward pass. A cell's estimate counts the passes its assessment makes (attack
steps times inputs times epsilons; training epochs times samples; queries) from the settings
and the registry's defaults, times those unit costs, plus a fixed cost per assessment (loading,
setup, reports). Where the store has seen the same assessment on the same target before (an
earlier version of the model, say), the time it took then, scaled by how much slower or faster
the model is now, is used instead. The estimates are single-worker seconds; the campaign's wall
time divides them over the engine's workers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bastion.campaign.spec import Cell

__all__ = ["Timing", "estimate_cells", "wall_time"]

#: seconds each assessment costs whatever its size (imports, loading, setup, findings)
_OVERHEAD = {
    "evasion": 0.1,
    "membership": 0.2,
    "extraction": 0.5,
    "inversion": 0.5,
    "poisoning": 0.5,
    "hardening": 1.0,
}
#: share of the inputs an attack after the first still attacks (the others are fooled)
_LATER_SHARE = 0.5


@dataclass(frozen=True)
class Timing:
    """Seconds per input of one target: forward, and forward with backward."""

    forward: float
    gradient: float
    n_test: int
    n_train: int
    classes: int


def _time_target(target: Any, data: Any) -> Timing:
    from bastion.assess.hardening import _timing

    batch = min(128, len(data.x_train))
    t_fwd, t_grad = _timing(target, data, batch)
    return Timing(
        t_fwd / batch, t_grad / batch, len(data.x_test), len(data.x_train), data.num_classes
    )


def _grads(entry: Any, params: dict[str, Any]) -> tuple[float, float]:
    """Gradient passes and forward queries per input of one attack run, with its settings."""
    p = {**entry.parameters(), **entry.defaults, **params}

    def num(name: str, default: float) -> float:
        value = p.get(name, default)
        return float(value) if isinstance(value, (int, float)) and value is not ... else default

    name = entry.name
    if name == "fgsm":
        return 1.0, 0.0
    if name in ("square", "nes", "hopskipjump"):
        # query attacks stop on success: about half their budget on average
        return 0.0, 0.5 * num("max_queries", 1000)
    if name == "cw":
        return num("binary_search_steps", 9) * num("steps", 100), 0.0
    if name == "deepfool":
        return num("steps", 50) * min(num("candidates", 10), 10) / 4, 0.0
    if name == "transfer":
        return num("steps", 20) * num("tries", 2), num("tries", 2)
    if name == "apgd-t":
        return num("steps", 100) * num("restarts", 1) * num("target_classes", 9), 0.0
    steps = num("steps", 20)
    return steps * num("restarts", 1), 0.0


def _evasion(a: Any, target: Any, data: Any, t: Timing) -> float:
    from bastion.assess import default_attacks
    from bastion.core.registry import ATTACKS
    from bastion.core.threat import Norm, Threat, default_epsilons

    n = min(int(a.samples), t.n_test)
    norm = Norm.parse(a.norm)
    eps = a.eps or default_epsilons(norm, data.bounds, math.prod(data.input_shape))
    if a.preset:
        from bastion.assess.hardening import _GRADS_PER_INPUT, _QUERIES_PER_INPUT

        grads = _GRADS_PER_INPUT.get(a.preset, 60)
        queries = 0.5 * _QUERIES_PER_INPUT.get(a.preset, 0)
        return len(eps) * n * (grads * t.gradient + queries * t.forward)
    threat = Threat(norm=norm, epsilons=tuple(eps), knowledge=target.access)
    names = a.attacks or [e.name for e in default_attacks(target, threat)]
    cost = 0.0
    for i, name in enumerate(names):
        grads, queries = _grads(ATTACKS.get(name), (a.settings or {}).get(name, {}))
        share = 1.0 if i == 0 else _LATER_SHARE
        cost += share * (grads * t.gradient + queries * t.forward)
    return len(eps) * n * cost


def _membership(a: Any, target: Any, t: Timing) -> float:
    from bastion.assess.membership import default_membership_attacks
    from bastion.core.registry import ATTACKS

    names = a.attacks or default_membership_attacks(target)
    candidates = 2 * min(2000, t.n_train, t.n_test)
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        p = {**entry.parameters(), **entry.defaults, **(a.settings or {}).get(name, {})}
        if "shadows" in p:
            # each shadow trained on half the candidates, then asked about all of them
            shadows, epochs = float(p["shadows"]), float(p.get("epochs", 30))
            cost += shadows * (epochs * candidates / 2 * t.gradient + candidates * t.forward)
        elif "copies" in p:
            cost += float(p["copies"]) * candidates * t.forward
        else:
            cost += candidates * t.forward
    return cost


def _extraction(a: Any, target: Any, t: Timing) -> float:
    from bastion.assess.extraction import default_extraction_attacks
    from bastion.core.registry import ATTACKS

    names = a.attacks or default_extraction_attacks(target)
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        p = {**entry.parameters(), **entry.defaults, **(a.settings or {}).get(name, {})}
        queries = float(p.get("max_queries") or a.max_queries)
        queries = min(queries, float(a.max_queries))
        epochs = float(p.get("epochs", 0) or 0)
        # the queries, then the copy trained on their answers
        cost += queries * t.forward + epochs * queries * t.gradient
    return cost


def _inversion(a: Any, target: Any, t: Timing) -> float:
    from bastion.core.registry import ATTACKS

    names = a.attacks or ["mi-face"]
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        p = {**entry.parameters(), **entry.defaults, **(a.settings or {}).get(name, {})}
        if "steps" in p:
            cost += float(p["steps"]) * t.classes * t.gradient * 4
        else:
            cost += t.n_test * t.forward * t.classes
    return cost


def _poisoning(a: Any, t: Timing) -> float:
    # a clean model, a poisoned one, then one per point of the curve
    models = 2 + len(a.counts)
    return models * int(a.epochs) * t.n_train * t.gradient


def _hardening(a: Any, target: Any, data: Any) -> float:
    from bastion.assess.hardening import plan_recipe
    from bastion.core.registry import parse_settings
    from bastion.core.threat import Norm, default_epsilons

    name, _, rest = str(a.method).partition(":")
    params = parse_settings([f"{name}:{rest}"]).get(name, {}) if rest else {}
    eps = a.eps or default_epsilons(Norm.parse(a.norm), data.bounds, math.prod(data.input_shape))
    recipe = plan_recipe(
        name,
        params,
        target,
        data,
        epsilons=tuple(eps),
        preset=a.preset,
        samples=int(a.samples),
        budget_minutes=a.budget,
    )
    return float(recipe.seconds)


def estimate_cells(
    cells: Sequence[Cell],
    *,
    history: dict[str, tuple[float, Timing | None]] | None = None,
) -> tuple[list[float], dict[str, Timing]]:
    """Single-worker seconds per cell, and the timing of each target (by its name).

    ``history`` maps a cell's history key (:func:`history_key`) to the seconds it took
    before and the target's timing then."""
    from bastion.campaign.tasks import _load

    timings: dict[str, Timing] = {}
    loaded: dict[str, tuple[Any, Any]] = {}
    out = []
    for cell in cells:
        name = cell.target.name
        if name not in loaded:
            loaded[name] = _load(cell.target.model_dump())
            timings[name] = _time_target(*loaded[name])
        target, data = loaded[name]
        t = timings[name]
        past = (history or {}).get(history_key(cell))
        if past is not None:
            seconds, then = past
            scale = t.gradient / then.gradient if then is not None and then.gradient > 0 else 1.0
            out.append(seconds * scale)
            continue
        a = cell.assessment
        if a.kind == "evasion":
            work = _evasion(a, target, data, t)
        elif a.kind == "membership":
            work = _membership(a, target, t)
        elif a.kind == "extraction":
            work = _extraction(a, target, t)
        elif a.kind == "inversion":
            work = _inversion(a, target, t)
        elif a.kind == "poisoning":
            work = _poisoning(a, t)
        else:
            work = _hardening(a, target, data)
        out.append(_OVERHEAD.get(a.kind, 1.0) + work)
    return out, timings


def history_key(cell: Cell) -> str:
    """What makes two cells comparable across model versions: the target's name and the
    assessment with its setting (not the model's content)."""
    return json.dumps(
        {"target": cell.target.name, "assessment": cell.assessment.model_dump(exclude={"matrix"})},
        sort_keys=True,
    )


def wall_time(estimates: Sequence[float], workers: int) -> float:
    """The campaign's wall time on ``workers`` workers: the cells, in the order the runner
    sends them, each onto whichever worker frees up first."""
    import heapq

    if workers <= 1:
        return float(sum(estimates))
    free = [0.0] * workers
    for seconds in estimates:
        heapq.heapreplace(free, free[0] + seconds)
    return max(free)
