"""How long a campaign's cells will take, before any of them runs.

Each distinct target is loaded once and timed: seconds per input for a forward pass and for a
forward and backward pass. A cell's estimate counts the passes its assessment makes (attack
steps times inputs times epsilons; training epochs times samples; queries) from the settings
and the registry's defaults, times those unit costs, plus a fixed cost per assessment (loading,
setup, reports). Where the store has seen the same assessment on the same target before (an
earlier version of the model, say), the time it took then is used instead. The estimates are
single-worker seconds; the campaign's wall time divides them over the engine's workers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.campaign.spec import Cell

if TYPE_CHECKING:
    from bastion.campaign.store import Store

__all__ = ["Timing", "estimate_cells", "history", "wall_time"]

#: seconds each assessment costs whatever its size (setup, findings, the JSON of its result)
_OVERHEAD = {
    "evasion": 0.1,
    "membership": 0.1,
    "extraction": 0.2,
    "inversion": 0.2,
    "poisoning": 0.2,
    "hardening": 1.0,
}
#: share of the inputs an attack after the first of its access group still attacks (the
#: others are fooled); each access group (white-box, score-based, label-only) starts afresh
_LATER_SHARE = 0.5
#: seconds of a query attack's own work per iteration (sampling, bookkeeping), measured on
#: the demo models: a few tenths of a millisecond
_QUERY_ITERATION = 3e-4


@dataclass(frozen=True)
class Timing:
    """What one target costs: seconds for a batch of ``n`` inputs are ``latency + n * per``,
    for a forward pass and for a forward and backward pass; and its data's sizes."""

    forward: float
    gradient: float
    n_test: int
    n_train: int
    classes: int
    forward_latency: float = 0.0
    gradient_latency: float = 0.0

    def fwd(self, n: float) -> float:
        return self.forward_latency + n * self.forward

    def grad(self, n: float) -> float:
        return self.gradient_latency + n * self.gradient


def _time_target(target: Any, data: Any) -> Timing:
    from bastion.assess.hardening import _timing

    batch = min(128, len(data.x_train))
    big_f, big_g = _timing(target, data, batch)
    one_f, one_g = _timing(target, data, 1)
    per_f = max(big_f - one_f, 0.0) / max(batch - 1, 1)
    per_g = max(big_g - one_g, 0.0) / max(batch - 1, 1)
    return Timing(
        per_f,
        per_g,
        len(data.x_test),
        len(data.x_train),
        data.num_classes,
        forward_latency=max(one_f - per_f, 0.0),
        gradient_latency=max(one_g - per_g, 0.0),
    )


_FIT_COST: dict[str, float] = {}


def _fit_cost(settings: Any, data: Any) -> float:
    """Seconds per sample per epoch of training a model of ``settings`` (a FitSettings) on
    ``data``'s inputs, timed on one epoch of a few batches by the real training loop."""
    import dataclasses

    import numpy as np
    import torch

    from bastion.zoo.fit import build_model, fit_model

    key = repr((settings, tuple(data.input_shape), data.num_classes))
    if key in _FIT_COST:
        return _FIT_COST[key]
    n = min(len(data.x_train), 4 * int(settings.batch_size))
    one = dataclasses.replace(settings, epochs=1, patience=None)
    x = torch.from_numpy(np.asarray(data.x_train[:n]))
    y = torch.from_numpy(np.asarray(data.y_train[:n]).astype(np.int64))
    best = float("inf")
    for _ in range(2):
        model = build_model(data.input_shape, data.num_classes, one)
        began = time.perf_counter()
        fit_model(model, x, y, one)
        best = min(best, time.perf_counter() - began)
    _FIT_COST[key] = best / n
    return _FIT_COST[key]


def _attack_cost(entry: Any, params: dict[str, Any], n: float, t: Timing) -> float:
    """Seconds one attack takes on ``n`` inputs at one epsilon, with its settings: its
    iterations, each a pass over the inputs still attacked."""
    p = {**entry.parameters(), **entry.defaults, **params}

    def num(name: str, default: float) -> float:
        value = p.get(name, default)
        return float(value) if isinstance(value, (int, float)) else default

    name = entry.name
    if name == "fgsm":
        return t.grad(n)
    if name == "square":
        # one query per input per iteration, until every input is fooled or the budget is
        # spent; inputs leave the batch once fooled (about half of them, on average)
        iters = num("max_queries", 1000)
        return iters * (_QUERY_ITERATION + t.forward_latency) + 0.5 * iters * n * t.forward
    if name == "nes":
        iters = num("max_queries", 1000) / (2 * num("samples", 25))
        return iters * t.fwd(0.5 * n * 2 * num("samples", 25))
    if name == "hopskipjump":
        return num("steps", 64) * 20 * t.forward_latency + num("max_queries", 1000) * n * t.forward
    if name == "cw":
        steps = num("binary_search_steps", 9) * num("steps", 100)
    elif name == "deepfool":
        steps = num("steps", 50) * min(num("candidates", 10), 10) / 4
    elif name == "transfer":
        steps = num("steps", 20) * num("tries", 2)
    elif name == "apgd-t":
        steps = num("steps", 100) * num("restarts", 1) * num("target_classes", 9)
    else:
        steps = num("steps", 20) * num("restarts", 1)
    return steps * t.grad(n)


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
        queries = _QUERIES_PER_INPUT.get(a.preset, 0)
        black = queries * t.forward_latency + 0.25 * queries * n * t.forward
        return len(eps) * (grads * t.grad(n) + black)
    threat = Threat(norm=norm, epsilons=tuple(eps), knowledge=target.access)
    names = a.attacks or [e.name for e in default_attacks(target, threat)]
    cost = 0.0
    groups: set[str] = set()
    for name in names:
        entry = ATTACKS.get(name)
        share = _LATER_SHARE if entry.access in groups else 1.0
        groups.add(entry.access)
        params = (a.settings or {}).get(name, {})
        cost += _attack_cost(entry, params, share * n, t)
    return len(eps) * cost


def _membership(a: Any, target: Any, data: Any, t: Timing) -> float:
    from bastion.assess.membership import default_membership_attacks
    from bastion.core.registry import ATTACKS

    names = a.attacks or default_membership_attacks(target)
    shadowed = any("shadows" in ATTACKS.get(n).parameters() for n in names)
    per_side = a.candidates or (max(10, t.n_test // 2) if shadowed else t.n_test)
    per_side = min(per_side, t.n_test, t.n_train, 2000)
    aux = max(t.n_test - per_side, 0)
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        params = {**entry.defaults, **(a.settings or {}).get(name, {})}
        attack = ATTACKS.create(name, **entry.validate(params))
        if "shadows" in entry.parameters():
            fit = _fit_cost(attack.settings, data)
            # each shadow learns from half the adversary's data, then answers every candidate
            shadows = float(attack.shadows)
            cost += shadows * (attack.settings.epochs * aux / 2 * fit + t.fwd(2 * per_side))
        elif "copies" in entry.parameters():
            cost += float(getattr(attack, "copies", 16)) * t.fwd(2 * per_side)
        else:
            cost += t.fwd(2 * per_side)
    return cost


def _extraction(a: Any, target: Any, data: Any, t: Timing) -> float:
    from bastion.assess.extraction import default_extraction_attacks
    from bastion.core.registry import ATTACKS

    names = a.attacks or default_extraction_attacks(target)
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        params = {**entry.defaults, **(a.settings or {}).get(name, {})}
        attack = ATTACKS.create(name, **entry.validate(params))
        wanted = getattr(attack, "max_queries", None) or a.max_queries
        queries = float(min(wanted, a.max_queries))
        cost += t.fwd(queries)
        settings = getattr(attack, "settings", None)
        if settings is None:
            continue
        rounds = int(getattr(attack, "rounds", 1) or 1)
        # rounds double in size and the copy is trained on everything asked so far
        grown = sum((2**k - 1) for k in range(1, rounds + 1)) / (2**rounds - 1)
        cost += settings.epochs * queries * grown * _fit_cost(settings, data)
    return cost


def _inversion(a: Any, target: Any, t: Timing) -> float:
    from bastion.core.registry import ATTACKS

    names = a.attacks or ["mi-face"]
    cost = 0.0
    for name in names:
        entry = ATTACKS.get(name)
        p = {**entry.parameters(), **entry.defaults, **(a.settings or {}).get(name, {})}
        if "steps" in p:
            cost += float(p["steps"]) * t.grad(t.classes)
        else:
            cost += t.fwd(t.n_test * t.classes)
    return cost


def _poisoning(a: Any, target: dict[str, Any], data: Any) -> float:
    from bastion.campaign.tasks import _victim_arch
    from bastion.zoo.fit import FitSettings

    # a clean model, a poisoned one, then one per point of the curve, with the recipe's batch
    arch = _victim_arch(a.model_dump(), target, data)
    per = _fit_cost(FitSettings(arch=arch, batch_size=64), data)
    models = 2 + len(a.counts)
    return models * int(a.epochs) * len(data.x_train) * per


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
    cells: Sequence[Cell], *, history: dict[str, float] | None = None
) -> tuple[list[float], dict[str, Timing]]:
    """Single-worker seconds per cell, and the timing of each target (by its name).

    ``history`` maps a cell's history key (:func:`history_key`) to the seconds it took
    before (:func:`history`)."""
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
            out.append(past)
            continue
        out.append(_estimate(cell.assessment, cell.target.model_dump(), target, data, t))
    return out, timings


def _estimate(a: Any, entry: dict[str, Any], target: Any, data: Any, t: Timing) -> float:
    """Single-worker seconds of assessment ``a`` on a loaded target."""
    if a.kind == "evasion":
        work = _evasion(a, target, data, t)
    elif a.kind == "membership":
        work = _membership(a, target, data, t)
    elif a.kind == "extraction":
        work = _extraction(a, target, data, t)
    elif a.kind == "inversion":
        work = _inversion(a, target, t)
    elif a.kind == "poisoning":
        work = _poisoning(a, entry, data)
    else:
        work = _hardening(a, target, data)
    return _OVERHEAD.get(a.kind, 1.0) + work


def estimate_for(target: dict[str, Any], assessments: Sequence[dict[str, Any]]) -> list[float]:
    """Estimates of these assessments (as data) of one target (as data): what a worker runs
    for the runner, which then sends the longest cells first. The target stays loaded in the
    worker for the cells that follow."""
    from pydantic import TypeAdapter

    from bastion.campaign.spec import AssessmentSpec
    from bastion.campaign.tasks import _load

    adapter: TypeAdapter[Any] = TypeAdapter(AssessmentSpec)
    loaded, data = _load(target)
    t = _time_target(loaded, data)
    return [_estimate(adapter.validate_python(a), target, loaded, data, t) for a in assessments]


def history_key(cell: Cell) -> str:
    """What makes two cells comparable across model versions: the target's name and the
    assessment with its setting (not the model's content)."""
    return _history_key(cell.target.name, cell.assessment.model_dump())


def _history_key(target: str, assessment: dict[str, Any]) -> str:
    shown = {k: v for k, v in assessment.items() if k != "matrix"}
    return json.dumps({"target": target, "assessment": shown}, sort_keys=True)


def history(store: Store, campaign: str, runs: int = 3) -> dict[str, float]:
    """Seconds the last ``runs`` runs of ``campaign`` took per finished cell, by history key
    (the newest run's figure where several have one)."""
    out: dict[str, float] = {}
    for run in store.runs(campaign)[:runs]:
        rows = [r for r in store.cells(run.id) if r.tasks == 1]
        results = store.results(r.key for r in rows)
        for r in rows:
            found = results.get(r.key)
            if found is not None and found.status == "done" and found.seconds is not None:
                key = _history_key(r.target, r.spec.get("assessment", {}))
                out.setdefault(key, found.seconds)
    return out


#: seconds an engine takes to start before the first cell runs, measured on 2 cores
#: (``benchmarks/campaign.py``): worker processes importing torch and loading their models;
#: for Ray, the local cluster started too (a cluster given by address is already up)
ENGINE_START = {"local": 0.0, "processes": 3.0, "ray": 7.0, "ray-address": 3.0}


def wall_time(estimates: Sequence[float], workers: int, engine: str = "local") -> float:
    """The campaign's wall time on ``engine`` with ``workers`` workers: its start, then the
    cells, longest first as the runner sends them, each onto whichever worker frees up
    first."""
    import heapq

    start = ENGINE_START.get(engine, 0.0)
    if workers <= 1:
        return start + float(sum(estimates))
    free = [start] * workers
    for seconds in sorted(estimates, reverse=True):
        heapq.heapreplace(free, free[0] + seconds)
    return max(free)
