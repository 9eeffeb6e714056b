"""A campaign's tasks, and running one wherever an engine puts it.

A task is plain data (so any engine can ship it to another process or machine): the target's
entry, the assessment with its setting, and, for a sharded evaluation, which block of inputs
it attacks, or the blocks' partial results to merge. :func:`execute` runs one and never raises
for a failure of the assessment itself: the error comes back in the :class:`Outcome`, so one
crashed cell never stops the others.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Outcome", "Task", "execute"]

_LOADED: OrderedDict[str, tuple[Any, Any]] = OrderedDict()
_KEEP = 4


@dataclass(frozen=True)
class Task:
    """One unit of work.

    Attributes:
        key: where its result is stored (the cell's key, or the key of one of its blocks).
        cell: the key of the cell it belongs to.
        step: ``run`` (the whole cell), ``block`` (one block of a sharded evaluation),
            ``merge`` (the blocks' results into the cell's) or ``estimate`` (the cost of
            ``parts``, assessments of this target, so that the longest go first).
        target: the target's entry, as data.
        assessment: the assessment with this cell's setting, as data.
        label: how progress and errors name it.
        block: which block, of ``blocks``.
        parts: the blocks' payloads, for a merge; the assessments, for an estimate.
        gpu: whether the engine should give it a GPU.
    """

    key: str
    cell: str
    step: str
    target: dict[str, Any]
    assessment: dict[str, Any]
    label: str
    block: int = 0
    blocks: int = 1
    parts: list[dict[str, Any]] = field(default_factory=list)
    gpu: bool = False


@dataclass
class Outcome:
    """What running a task gave: a JSON-ready payload, or the error, never both."""

    key: str
    payload: dict[str, Any] | None
    error: str | None
    seconds: float
    worker: str
    #: whether trying again could help: a crash or a lost worker may pass, a setting the
    #: assessment refuses (a bastion error: wrong access, bad parameter) will not
    retryable: bool = True

    @property
    def ok(self) -> bool:
        return self.error is None


def execute(task: Task) -> Outcome:
    """Run ``task`` here; the failure of an assessment is returned, not raised."""
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    try:
        payload = _run(task)
        # the store keeps JSON: prove it serializes here, where the error can be named
        json.dumps(payload, allow_nan=False)
        return Outcome(task.key, payload, None, time.perf_counter() - started, worker)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        from bastion.core.errors import BastionError

        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        where = ""
        if not isinstance(exc, BastionError):
            frames = traceback.extract_tb(exc.__traceback__)
            if frames:
                last = frames[-1]
                where = f" (at {os.path.basename(last.filename)}:{last.lineno})"
        error = f"{type(exc).__name__}: {text}{where}" if text else f"{type(exc).__name__}{where}"
        retryable = not isinstance(exc, BastionError)
        return Outcome(task.key, None, error, time.perf_counter() - started, worker, retryable)


# ------------------------------------------------------------------------------ running
def _load(target: dict[str, Any]) -> tuple[Any, Any]:
    """The target and its data, kept for the next task of this worker that asks for them
    (while their files are unchanged: a model retrained in place is loaded again)."""
    stamps = []
    for spec in (target.get("target"), target.get("data")):
        try:
            stat = os.stat(spec) if spec else None
        except OSError:
            stat = None
        stamps.append([stat.st_size, stat.st_mtime_ns] if stat is not None else None)
    memo = json.dumps([target, stamps], sort_keys=True)
    # a target with a query budget is loaded afresh for each cell: the budget is per cell
    keep = target.get("query_budget") is None
    if keep and memo in _LOADED:
        _LOADED.move_to_end(memo)
        return _LOADED[memo]
    from bastion.assess.specs import load_target_and_data
    from bastion.campaign.spec import expand_headers

    options = {
        k: target[k] for k in ("timeout", "retries", "redirects") if target.get(k) is not None
    }
    bounds = target.get("bounds")
    loaded = load_target_and_data(
        target["target"],
        target.get("data"),
        arch=target.get("arch"),
        trust=bool(target.get("trust", False)),
        device=target.get("device", "auto"),
        output_kind=target.get("output_kind"),
        query_budget=target.get("query_budget"),
        headers=expand_headers(dict(target.get("headers") or {})),
        label_column=target.get("label_column", "label"),
        bounds=tuple(bounds) if bounds is not None else None,
        num_classes=target.get("num_classes"),
        options=options,
    )
    if not keep:
        return loaded
    _LOADED[memo] = loaded
    while len(_LOADED) > _KEEP:
        _LOADED.popitem(last=False)
    return loaded


def _json(assessments: list[Any], target: Any, data: Any) -> dict[str, Any]:
    from bastion.report.json import _assessment, _plain

    return {
        "assessments": [_assessment(a) for a in assessments],
        "target": _plain(target.describe()),
        "dataset": _plain(data.describe()),
    }


def _threat(a: dict[str, Any], target: Any, data: Any) -> Any:
    from bastion.core.threat import Norm, Threat, default_epsilons

    norm = Norm.parse(a.get("norm") or "linf")
    eps = a.get("eps") or default_epsilons(norm, data.bounds, math.prod(data.input_shape))
    return Threat(norm=norm, epsilons=tuple(sorted(float(e) for e in eps)), knowledge=target.access)


def _run(task: Task) -> dict[str, Any]:
    if task.step == "merge":
        return _merge(task)
    if task.step == "estimate":
        from bastion.campaign.estimate import estimate_for

        return {"seconds": estimate_for(task.target, task.parts)}
    target, data = _load(task.target)
    kind = task.assessment["kind"]
    if task.step == "block":
        return _block(task, target, data)
    if kind not in _KINDS:
        raise ValueError(f"unknown assessment kind {kind!r}")
    return _json([_KINDS[kind](task, target, data)], target, data)


def _block(task: Task, target: Any, data: Any) -> dict[str, Any]:
    """One block of a sharded evaluation, as the partial result the merge takes."""
    from bastion.assess.sharded import plan_blocks, run_block

    a = task.assessment
    seed = int(a.get("seed", 0))
    blocks = plan_blocks(data, int(a["samples"]), seed, _block_size(a))
    if task.block >= len(blocks):
        # the data has fewer test inputs than the samples asked for: nothing left
        return {"empty": True}
    return run_block(
        target,
        data,
        _threat(a, target, data),
        blocks[task.block],
        seed=seed,
        attacks=a.get("attacks"),
        attack_params=a.get("settings") or None,
        preset=a.get("preset"),
        examples=task.block == 0,
    )


def _evasion(task: Task, target: Any, data: Any) -> Any:
    a = task.assessment
    threat = _threat(a, target, data)
    kw: dict[str, Any] = {
        "samples": int(a["samples"]),
        "seed": int(a.get("seed", 0)),
        "attacks": a.get("attacks"),
        "attack_params": a.get("settings") or None,
    }
    if a.get("preset"):
        from bastion.assess.evaluate import evaluate

        return evaluate(target, data, threat, preset=a["preset"], **kw).to_assessment()
    from bastion.assess import scan

    return scan(target, data, threat, **kw).to_assessment()


def _membership(task: Task, target: Any, data: Any) -> Any:
    from bastion.assess.membership import default_membership_attacks, membership_assessment
    from bastion.core.errors import ConfigError
    from bastion.core.registry import ATTACKS
    from bastion.zoo import ZOO, cache_dir

    a = task.assessment
    members: Any
    if a.get("members", "train") == "train":
        if str(task.target.get("target")) not in ZOO or task.target.get("data"):
            # only a demo is known to be trained on its data's training split
            raise ConfigError(
                "members: train means the training split of a demo's own data; for your "
                "model give members: a file of samples it was trained on"
            )
        members = (data.x_train, data.y_train)
    else:
        from bastion.data import load_data

        members = load_data(
            a["members"],
            label_column=task.target.get("label_column", "label"),
            bounds=data.bounds,
            num_classes=data.num_classes,
        )
    # shadow models are the engine's tasks (see bastion.core.parallel), not joblib's
    params = {k: dict(v) for k, v in (a.get("settings") or {}).items()}
    candidates = a.get("candidates")
    for name in a.get("attacks") or default_membership_attacks(target):
        known = ATTACKS.get(name).parameters()
        if "n_jobs" in known:
            params.setdefault(name, {}).setdefault("n_jobs", 1)
        if "shadows" in known and candidates is None:
            # the shadows train on held-out data the candidates leave to the adversary
            candidates = max(10, len(data.x_test) // 2)
    return membership_assessment(
        target,
        members,
        data,
        attacks=a.get("attacks"),
        attack_params=params or None,
        max_candidates=int(candidates or 2000),
        seed=int(a.get("seed", 0)),
        shadow_cache=cache_dir() / "shadows",
    )


def _extraction(task: Task, target: Any, data: Any) -> Any:
    from bastion.assess.extraction import extraction_assessment

    a = task.assessment
    return extraction_assessment(
        target,
        data,
        attacks=a.get("attacks"),
        max_queries=int(a.get("max_queries", 2000)),
        attack_params=a.get("settings") or None,
        seed=int(a.get("seed", 0)),
    )


def _inversion(task: Task, target: Any, data: Any) -> Any:
    from bastion.assess.inversion import inversion_assessment

    a = task.assessment
    return inversion_assessment(
        target,
        data,
        attacks=a.get("attacks"),
        attack_params=a.get("settings") or None,
        seed=int(a.get("seed", 0)),
    )


def _poisoning(task: Task, target: Any, data: Any) -> Any:
    from bastion.assess.poisoning import assess_poisoning, recipe_fit
    from bastion.core.errors import ConfigError
    from bastion.core.registry import ATTACKS

    a = task.assessment
    entry = ATTACKS.get(a["attack"])
    if entry.family != "poisoning":
        raise ConfigError(f"{a['attack']} is a {entry.family} attack, not a poisoning one")
    attack = ATTACKS.create(a["attack"], **entry.validate(a.get("params") or {}))
    fit = recipe_fit(_victim_arch(a, task.target, data), epochs=int(a.get("epochs", 10)))
    seed = int(a.get("seed", 0))
    return assess_poisoning(attack, data, fit, counts=a.get("counts") or None, seed=seed).assessment


def _hardening(task: Task, target: Any, data: Any) -> Any:
    from bastion.assess.hardening import harden

    a = task.assessment
    return harden(
        target,
        data,
        a.get("method", "pgd-at"),
        epsilons=a.get("eps"),
        norm=a.get("norm", "linf"),
        preset=a.get("preset", "quick"),
        samples=int(a.get("samples", 200)),
        seed=int(a.get("seed", 0)),
        budget_minutes=a.get("budget"),
    ).assessment


#: what each kind of assessment runs: (task, target, data) -> Assessment
_KINDS: dict[str, Callable[[Task, Any, Any], Any]] = {
    "evasion": _evasion,
    "membership": _membership,
    "extraction": _extraction,
    "inversion": _inversion,
    "poisoning": _poisoning,
    "hardening": _hardening,
}


def _victim_arch(a: dict[str, Any], target: dict[str, Any], data: Any) -> str:
    """The architecture a poisoning cell retrains: the one asked for, else the demo's own,
    else a CNN for images and an MLP for the rest."""
    if a.get("arch"):
        return str(a["arch"])
    from bastion.zoo import ZOO

    recipe = ZOO.get(str(target.get("target")))
    if recipe is not None and recipe.arch in ("cnn", "mlp"):
        return str(recipe.arch)
    return "cnn" if getattr(data, "kind", "") == "image" else "mlp"


def _block_size(a: dict[str, Any]) -> int:
    return max(1, math.ceil(int(a["samples"]) / max(1, int(a.get("shards", 1)))))


def _merge(task: Task) -> dict[str, Any]:
    from bastion.assess.sharded import merge_blocks

    a = task.assessment
    target, data = _load(task.target)
    threat = _threat(a, target, data)
    parts = [p for p in task.parts if not p.get("empty")]
    result = merge_blocks(parts, target, data, threat, samples=int(a["samples"]))
    return _json([result.to_assessment()], target, data)
