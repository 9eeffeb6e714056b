"""A large evasion evaluation cut into blocks of inputs, run anywhere, merged exactly.

The inputs a scan would sample are cut, in order, into fixed blocks (:func:`plan_blocks`).
Each block is a task: the full scan (or a preset's evaluation) on exactly its inputs, with
the evaluation's seed, returned as JSON-ready data (:func:`run_block`). The blocks' results
merge into the one :class:`~bastion.assess.scan.ScanResult` (:func:`merge_blocks`): per input
the worst case over every attack (an input is robust at an epsilon only if no attack fooled it
there), the attacks' counts summed, the findings and the checks on the sweep recomputed on the
merged figures. :func:`sharded_scan` does all three with any ``map``, a process pool's
included. The functions are top-level and their results plain data, so a campaign engine can
send them to worker processes or Ray workers.

What exactness depends on:

- Each block is attacked with the same seed and only its own inputs, so a block's figures
  depend on its inputs and the seed alone: the merged figure depends on ``(seed, block)``,
  never on how many workers ran the blocks or in which order. With ``block >= samples`` there
  is one block, and the result is that of :func:`~bastion.assess.scan.scan` with the seed.
  Another block size is an equally valid evaluation with other figures: an attack's random
  draws (start points, search squares) are made per block, and a model's floating-point
  answers may depend on the batch size.
- The model must answer a given batch with the same numbers in every worker: the same
  library versions and hardware kind, the same number of threads (``torch.set_num_threads``;
  a different count may change the order of float sums), deterministic kernels on a GPU
  (``torch.use_deterministic_algorithms``), and no randomness in the forward pass.
- A query budget is counted per copy of the target: each block plans within what its copy
  has left, so a budget-limited evaluation is exact only where every block sees the same
  budget (a fresh target per block).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bastion.assess.evaluate import _cross_check, evaluate
from bastion.assess.scan import (
    AttackSummary,
    EpsilonResult,
    Example,
    InputOutcome,
    InputRecord,
    ScanResult,
    _check_masking,
    _check_sweep,
    _sample,
    evasion_findings,
    scan,
)
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.core.targets.base import Target
from bastion.core.threat import Threat
from bastion.data import Dataset

__all__ = ["merge_blocks", "plan_blocks", "run_block", "sharded_scan"]

#: the layout of a block's result; a merge refuses others
PARTIAL_VERSION = 1

# what must be the same in every block for the merged figure to be one evaluation's
_AGREE = ("seed", "attacks", "attack_params", "protocol", "preset", "evaluate", "epsilons")


def plan_blocks(data: Dataset, samples: int, seed: int, block: int) -> list[list[int]]:
    """The test inputs a scan of ``samples`` with ``seed`` attacks (positions in the test
    split, ascending), cut in order into blocks of ``block`` (the last may be shorter)."""
    if block < 1:
        raise ConfigError(f"block must be at least 1 input, got {block}")
    idx = [int(i) for i in _sample(data, samples, seed)]
    return [idx[start : start + block] for start in range(0, len(idx), block)]


def run_block(
    target: Target,
    data: Dataset,
    threat: Threat | Mapping[str, Any],
    indices: Sequence[int],
    *,
    seed: int,
    attacks: Sequence[str] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    preset: str | None = None,
    examples: bool = True,
) -> dict[str, Any]:
    """Scan exactly the test inputs ``indices`` (or, with ``preset``, run that evaluation of
    :func:`bastion.assess.evaluate.evaluate` on them) and return a JSON-ready partial.

    The partial holds, per input, whether it was answered right and, per epsilon, which
    attack fooled it and the prediction there; per epsilon and attack the counts (attacked,
    fooled, queries, seconds); the warnings that do not depend on the whole sweep; with
    ``examples``, the example images of the block's first inputs (ask for them for the first
    block only: they are the merged result's examples). ``threat`` may be a
    :class:`~bastion.core.threat.Threat` or its JSON form.
    """
    threat = _threat(threat)
    if preset is not None:
        result = evaluate(
            target,
            data,
            threat,
            preset=preset,
            seed=seed,
            attacks=attacks,
            attack_params=attack_params,
            indices=indices,
        )
    else:
        result = scan(
            target,
            data,
            threat,
            seed=seed,
            attacks=attacks,
            attack_params=attack_params,
            indices=indices,
        )
    return _partial(result, evaluated=preset is not None, examples=examples)


def merge_blocks(
    parts: Iterable[Mapping[str, Any]],
    target: Target | Mapping[str, Any],
    data: Dataset,
    threat: Threat | Mapping[str, Any],
    *,
    samples: int | None = None,
) -> ScanResult:
    """The one result of the blocks ``parts`` (:func:`run_block`'s partials), in any order.

    Per input, the worst case: robust at an epsilon only if no attack of any part fooled it
    there (an input in two parts counts once, fooled if either fooled it). The attacks'
    counts and seconds are summed, their median queries to success taken over every input
    they fooled; warnings are de-duplicated, and the checks on the sweep (robust accuracy
    rising with epsilon, signs of masked gradients) and the findings are computed afresh on
    the merged figures. The result is complete only if every part is. ``target`` is the
    target or its description (``target.describe()``); ``samples`` is how many inputs were
    asked for, to say so when the data had fewer.
    """
    threat = _threat(threat)
    given = sorted(parts, key=lambda p: min(p["indices"], default=-1))
    if not given:
        raise ConfigError("nothing to merge: no block results")
    first = given[0]
    for part in given:
        if part.get("version") != PARTIAL_VERSION:
            raise ConfigError(
                f"a block result of layout {part.get('version')!r}; this merge reads "
                f"{PARTIAL_VERSION}: rerun the blocks with this version of bastion"
            )
        differ = [key for key in _AGREE if _plain(part[key]) != _plain(first[key])]
        if differ:
            raise ConfigError(
                f"the blocks differ in {', '.join(differ)}: they are not one evaluation"
            )
    epsilons = [float(e) for e in first["epsilons"]]
    if sorted(threat.epsilons) != epsilons:
        raise ConfigError(
            f"the blocks ran epsilons {epsilons}, the threat has {sorted(threat.epsilons)}"
        )

    records: dict[int, InputRecord] = {}
    for part in given:
        for raw in part["inputs"]:
            record = _record(raw)
            held = records.get(record.index)
            records[record.index] = record if held is None else _worse(held, record)
    inputs = [records[i] for i in sorted(records)]

    sweep = []
    for k, eps in enumerate(epsilons):
        groups = list(first["sweep"][k]["group_robust"])
        rows = [part["sweep"][k]["attacks"] for part in given]
        ran = [[s["attack"] for s in row] for row in rows]
        if any(names != ran[0] for names in ran):
            raise ConfigError(f"the blocks ran different attacks at eps={eps:g}")
        summaries = [_summed([row[j] for row in rows], inputs, k) for j in range(len(ran[0]))]
        sweep.append(
            EpsilonResult(
                eps,
                sum(r.robust(k) for r in inputs),
                len(inputs),
                summaries,
                {g: sum(g in r.outcomes[k].standing for r in inputs) for g in groups},
            )
        )

    complete = all(bool(part["complete"]) for part in given)
    limits = []
    if samples is not None and len(inputs) < samples:
        limits.append(f"{samples} inputs were asked for; the data has {len(inputs)} test inputs")
    limits += _unique(line for part in given for line in part["limits"])
    warnings = _unique(line for part in given for line in part["warnings"])
    if complete:
        warnings += _check_sweep(sweep)
    warnings += _check_masking(sweep)
    shown: list[dict[str, Any]] = next((p["examples"] for p in given if p["examples"]), [])
    dtype = data.x_test.dtype
    result = ScanResult(
        target=dict(target.describe() if isinstance(target, Target) else target),
        dataset=data.describe(),
        threat=threat,
        attacks=list(first["attacks"]),
        attack_params=dict(first["attack_params"]),
        samples=len(inputs),
        seed=int(first["seed"]),
        clean_correct=sum(r.correct for r in inputs),
        sweep=sweep,
        examples=[
            Example(
                **{
                    **e,
                    "clean": np.asarray(e["clean"], dtype=dtype),
                    "adversarial": np.asarray(e["adversarial"], dtype=dtype),
                }
            )
            for e in shown
        ],
        findings=[],
        warnings=warnings,
        seconds=sum(float(part["seconds"]) for part in given),
        class_names=list(data.class_names),
        feature_names=list(data.feature_names),
        complete=complete,
        limits=limits,
        protocol=first["protocol"],
        preset=first["preset"],
        adaptations=_unique(line for part in given for line in part["adaptations"]),
        inputs=inputs,
    )
    if first["evaluate"]:
        result.warnings += _cross_check(result)
    result.findings = evasion_findings(result, [ATTACKS.get(n) for n in result.attacks], data)
    return result


def sharded_scan(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    samples: int = 200,
    seed: int = 0,
    block: int = 50,
    attacks: Sequence[str] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    preset: str | None = None,
    map_fn: Callable[..., Iterable[Any]] = map,
) -> ScanResult:
    """The scan of ``samples`` inputs with ``seed`` (or, with ``preset``, that evaluation),
    run in blocks of ``block`` inputs through ``map_fn`` and merged.

    ``map_fn(fn, blocks)`` runs the blocks: the built-in ``map`` in this process, or a pool's
    (``ProcessPoolExecutor.map``: ``target`` and ``data`` then travel to the workers with
    each block). The figures depend on ``seed`` and ``block`` only (see the module's notes on
    exactness); with ``block >= samples`` they are those of :func:`~bastion.assess.scan.scan`.

    Example:
        >>> with ProcessPoolExecutor(4) as pool:  # doctest: +SKIP
        ...     result = sharded_scan(target, data, threat, samples=1000, map_fn=pool.map)
        >>> result.sweep[-1].robust_accuracy  # doctest: +SKIP
    """
    started = time.perf_counter()
    blocks = plan_blocks(data, samples, seed, block)
    run = functools.partial(
        _run_planned,
        target,
        data,
        threat,
        seed=seed,
        attacks=list(attacks) if attacks else None,
        attack_params=attack_params,
        preset=preset,
    )
    parts = list(map_fn(run, list(enumerate(blocks))))
    result = merge_blocks(parts, target, data, threat, samples=samples)
    result.seconds = time.perf_counter() - started
    return result


def _run_planned(
    target: Target,
    data: Dataset,
    threat: Threat,
    planned: tuple[int, list[int]],
    **settings: Any,
) -> dict[str, Any]:
    """:func:`run_block` on the ``n``-th block of a plan: only the first brings examples."""
    n, indices = planned
    return run_block(target, data, threat, indices, examples=n == 0, **settings)


# ---------------------------------------------------------------------- partials
def _threat(threat: Threat | Mapping[str, Any]) -> Threat:
    return threat if isinstance(threat, Threat) else Threat.model_validate(dict(threat))


def _sweep_warnings(result: ScanResult, evaluated: bool) -> list[str]:
    """The warnings drawn from a result's whole sweep: a merge draws them afresh."""
    out = _check_sweep(result.sweep) if result.complete else []
    out += _check_masking(result.sweep)
    if evaluated:
        out += _cross_check(result)
    return out


def _partial(result: ScanResult, *, evaluated: bool, examples: bool) -> dict[str, Any]:
    drawn = set(_sweep_warnings(result, evaluated))
    return {
        "version": PARTIAL_VERSION,
        "indices": [r.index for r in result.inputs],
        "seed": result.seed,
        "attacks": list(result.attacks),
        "attack_params": result.attack_params,
        "protocol": result.protocol,
        "preset": result.preset,
        "evaluate": evaluated,
        "adaptations": list(result.adaptations),
        "epsilons": [p.epsilon for p in result.sweep],
        "target": result.target,
        "clean_correct": result.clean_correct,
        "sweep": [
            {
                "epsilon": p.epsilon,
                "robust": p.robust,
                "total": p.total,
                "group_robust": dict(p.group_robust),
                "attacks": [dataclasses.asdict(s) for s in p.attacks],
            }
            for p in result.sweep
        ],
        "inputs": [dataclasses.asdict(r) for r in result.inputs],
        "examples": (
            [
                {
                    **{f.name: getattr(e, f.name) for f in dataclasses.fields(e)},
                    "clean": e.clean.tolist(),
                    "adversarial": e.adversarial.tolist(),
                }
                for e in result.examples
            ]
            if examples
            else []
        ),
        "warnings": [w for w in result.warnings if w not in drawn],
        "limits": list(result.limits),
        "complete": result.complete,
        "seconds": result.seconds,
    }


def _record(raw: Mapping[str, Any]) -> InputRecord:
    return InputRecord(
        index=int(raw["index"]),
        label=int(raw["label"]),
        clean_prediction=int(raw["clean_prediction"]),
        correct=bool(raw["correct"]),
        outcomes=[
            InputOutcome(
                fooled_by=o["fooled_by"],
                adversarial_prediction=int(o["adversarial_prediction"]),
                standing=list(o["standing"]),
                fooled=dict(o["fooled"]),
            )
            for o in raw["outcomes"]
        ],
    )


def _worse(a: InputRecord, b: InputRecord) -> InputRecord:
    """One input attacked in two blocks: the worst case of both, at every epsilon."""
    outcomes = []
    for x, y in zip(a.outcomes, b.outcomes, strict=True):
        worst = x if x.fooled_by is not None or y.fooled_by is None else y
        outcomes.append(
            InputOutcome(
                worst.fooled_by,
                worst.adversarial_prediction,
                [g for g in x.standing if g in y.standing],
                {**y.fooled, **x.fooled},
            )
        )
    return dataclasses.replace(a, correct=a.correct and b.correct, outcomes=outcomes)


def _summed(rows: list[Mapping[str, Any]], inputs: list[InputRecord], k: int) -> AttackSummary:
    """One attack's counts at the ``k``-th epsilon over every block."""
    name = rows[0]["attack"]
    spent = [q for r in inputs if (q := r.outcomes[k].fooled.get(name)) is not None]
    return AttackSummary(
        attack=name,
        access=rows[0]["access"],
        attacked=sum(int(r["attacked"]) for r in rows),
        fooled=sum(int(r["fooled"]) for r in rows),
        queries=sum(int(r["queries"]) for r in rows),
        seconds=sum(float(r["seconds"]) for r in rows),
        # the lower median, as the scan takes it (torch's), over every input it fooled
        median_queries_to_success=(
            float(torch.tensor(spent, dtype=torch.float32).median()) if spent else None
        ),
        limited=next((r["limited"] for r in rows if r["limited"]), None),
    )


def _plain(value: Any) -> str:
    """A setting as JSON: a block read back from a store (lists for tuples) still agrees
    with one fresh from a worker."""
    return json.dumps(value, sort_keys=True, default=str)


def _unique(lines: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(lines))
