"""Sharded evaluation: blocks of inputs run anywhere and merged give the exact figures."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest
import torch

from bastion.assess.evaluate import evaluate
from bastion.assess.scan import ScanResult, scan
from bastion.assess.sharded import merge_blocks, plan_blocks, run_block, sharded_scan
from bastion.core.errors import ConfigError
from bastion.core.targets import TorchTarget
from bastion.core.threat import Threat

THREAT = Threat(epsilons=(0.05, 0.1, 0.2))
SETTINGS: dict[str, Any] = {
    "attacks": ["fgsm", "pgd"],
    "attack_params": {"pgd": {"steps": 5}},
}
SAMPLES, SEED, BLOCK = 60, 3, 20


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread, as in the workers: a float sum's order depends on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _figures(result: ScanResult) -> dict[str, Any]:
    """Every figure of a result, the timings left out."""
    return {
        "clean_correct": result.clean_correct,
        "samples": result.samples,
        "sweep": [
            (
                p.epsilon,
                p.robust,
                p.total,
                p.group_robust,
                [
                    (s.attack, s.attacked, s.fooled, s.queries, s.median_queries_to_success)
                    for s in p.attacks
                ],
            )
            for p in result.sweep
        ],
        "findings": [(f.title, f.severity, f.evidence) for f in result.findings],
        "warnings": result.warnings,
        "inputs": result.inputs,
        "complete": result.complete,
    }


# ------------------------------------------------------------------------ one block is the scan
@pytest.mark.parametrize("block", [SAMPLES, 500])
def test_one_block_is_the_scan(cnn: TorchTarget, demo: Any, block: int) -> None:
    _, data = demo
    plain = scan(cnn, data, THREAT, samples=SAMPLES, seed=SEED, **SETTINGS)
    sharded = sharded_scan(cnn, data, THREAT, samples=SAMPLES, seed=SEED, block=block, **SETTINGS)
    assert _figures(sharded) == _figures(plain)
    assert [p.robust for p in plain.sweep] == [54, 31, 1]  # the attacks did their job
    assert [f.title for f in sharded.findings] == [f.title for f in plain.findings]
    assert len(sharded.examples) == len(plain.examples) == 8 * len(THREAT.epsilons)
    for mine, theirs in zip(sharded.examples, plain.examples, strict=True):
        assert (mine.index, mine.epsilon, mine.attack) == (
            theirs.index,
            theirs.epsilon,
            theirs.attack,
        )
        assert (mine.adversarial == theirs.adversarial).all()
    assert sharded.to_assessment().metrics == plain.to_assessment().metrics


def test_one_block_is_the_preset_evaluation(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    plain = evaluate(cnn, data, THREAT, preset="quick", samples=30, seed=SEED)
    sharded = sharded_scan(cnn, data, THREAT, samples=30, seed=SEED, block=30, preset="quick")
    assert _figures(sharded) == _figures(plain)
    assert (sharded.preset, sharded.protocol) == (plain.preset, plain.protocol)
    assert sharded.adaptations == plain.adaptations
    assert sharded.to_assessment().setting == plain.to_assessment().setting


def test_the_records_add_up_to_the_figures(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    result = scan(cnn, data, THREAT, samples=SAMPLES, seed=SEED, **SETTINGS)
    assert [r.index for r in result.inputs] == sorted(r.index for r in result.inputs)
    assert result.clean_correct == sum(r.correct for r in result.inputs)
    for k, point in enumerate(result.sweep):
        assert point.robust == sum(r.robust(k) for r in result.inputs)
        for s in point.attacks:
            assert s.fooled == sum(s.attack in r.outcomes[k].fooled for r in result.inputs)
        for group, standing in point.group_robust.items():
            assert standing == sum(group in r.outcomes[k].standing for r in result.inputs)


def test_plan_cuts_the_scans_sample_in_order(demo: Any) -> None:
    _, data = demo
    blocks = plan_blocks(data, SAMPLES, SEED, BLOCK)
    assert [len(b) for b in blocks] == [20, 20, 20]
    flat = [i for b in blocks for i in b]
    assert flat == sorted(flat) and len(set(flat)) == SAMPLES
    assert [len(b) for b in plan_blocks(data, 50, SEED, BLOCK)] == [20, 20, 10]
    with pytest.raises(ConfigError, match="block"):
        plan_blocks(data, SAMPLES, SEED, 0)


def test_scan_refuses_bad_indices(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    for bad, why in (([1, 1], "repeat"), ([len(data.x_test)], "lie in"), ([], "at least one")):
        with pytest.raises(ConfigError, match=why):
            scan(cnn, data, THREAT, indices=bad, **SETTINGS)


# ------------------------------------------------------------------------ blocks in processes
_WORKER: dict[str, Any] = {}


def _worker_start() -> None:
    torch.set_num_threads(1)


def _block_by_spec(job: tuple[list[int], bool]) -> dict[str, Any]:
    """A block in a worker: the demo loaded there by its name, nothing big pickled."""
    from bastion.assess.specs import load_target_and_data

    if "demo" not in _WORKER:
        _WORKER["demo"] = load_target_and_data("digits-cnn", device="cpu")
    target, data = _WORKER["demo"]
    indices, examples = job
    threat = json.loads(THREAT.model_dump_json())
    return run_block(target, data, threat, indices, seed=SEED, examples=examples, **SETTINGS)


def _without_timings(part: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in part.items() if k not in ("seconds", "target")}
    out["sweep"] = [
        {**p, "attacks": [{**s, "seconds": 0} for s in p["attacks"]]} for p in part["sweep"]
    ]
    return out


def test_blocks_in_processes_merge_to_the_same_figures(
    cnn: TorchTarget, demo: Any, one_thread: None
) -> None:
    _, data = demo
    blocks = plan_blocks(data, SAMPLES, SEED, BLOCK)
    jobs = [(b, n == 0) for n, b in enumerate(blocks)]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=_worker_start) as pool:
        remote = list(pool.map(_block_by_spec, jobs))
    here = [
        run_block(cnn, data, THREAT, b, seed=SEED, examples=first, **SETTINGS) for b, first in jobs
    ]
    backwards = [
        run_block(cnn, data, THREAT, b, seed=SEED, examples=first, **SETTINGS)
        for b, first in reversed(jobs)
    ]
    # each block is the same in a worker and here, to the last input
    for mine, theirs in zip(here, remote, strict=True):
        assert _without_timings(mine) == _without_timings(theirs)

    merged = [
        merge_blocks(parts, cnn, data, THREAT, samples=SAMPLES)
        # read back from JSON too, as a store of the blocks would give them
        for parts in (remote, here, backwards, json.loads(json.dumps(remote[::-1])))
    ]
    reference = _figures(merged[0])
    assert all(_figures(m) == reference for m in merged[1:])
    # the merged figure is the blocks' figures added up
    for k, point in enumerate(merged[0].sweep):
        assert point.robust == sum(p["sweep"][k]["robust"] for p in remote)
        assert point.total == SAMPLES
    assert merged[0].clean_correct == sum(p["clean_correct"] for p in remote)
    assert merged[0].to_assessment().metrics == merged[2].to_assessment().metrics
    # the examples are the first block's, whichever order the blocks came in
    assert {e.index for e in merged[2].examples} == set(blocks[0][:8])
    # and the same plan run through sharded_scan's own map gives it too
    again = sharded_scan(cnn, data, THREAT, samples=SAMPLES, seed=SEED, block=BLOCK, **SETTINGS)
    assert _figures(again) == reference


# ------------------------------------------------------------------------ the merge by hand
def _outcome(
    fooled_by: str | None, standing: list[str], fooled: dict[str, float | None]
) -> dict[str, Any]:
    return {
        "fooled_by": fooled_by,
        "adversarial_prediction": 7 if fooled_by else 1,
        "standing": standing,
        "fooled": fooled,
    }


def _input(index: int, correct: bool, *outcomes: dict[str, Any]) -> dict[str, Any]:
    return {
        "index": index,
        "label": 1,
        "clean_prediction": 1 if correct else 2,
        "correct": correct,
        "outcomes": list(outcomes),
    }


def _summary(attack: str, access: str, attacked: int, fooled: int, queries: int) -> dict[str, Any]:
    return {
        "attack": attack,
        "access": access,
        "attacked": attacked,
        "fooled": fooled,
        "queries": queries,
        "seconds": 0.5,
        "median_queries_to_success": None,
        "limited": None,
    }


WB, SC = "white-box", "score-based"


def _part(
    inputs: list[dict[str, Any]], counts: list[list[tuple[int, int, int]]], **extra: Any
) -> dict[str, Any]:
    names = [("fgsm", WB), ("pgd", WB), ("square", SC)]
    return {
        "version": 1,
        "indices": [i["index"] for i in inputs],
        "seed": 0,
        "attacks": [n for n, _ in names],
        "attack_params": {},
        "protocol": "grouped",
        "preset": None,
        "evaluate": False,
        "adaptations": [],
        "epsilons": [0.1, 0.2],
        "target": {},
        "clean_correct": sum(i["correct"] for i in inputs),
        "sweep": [
            {
                "epsilon": eps,
                "robust": 0,
                "total": len(inputs),
                "group_robust": {WB: 0, SC: 0},
                "attacks": [_summary(n, a, *c) for (n, a), c in zip(names, counts[k], strict=True)],
            }
            for k, eps in enumerate((0.1, 0.2))
        ],
        "inputs": inputs,
        "examples": [],
        "warnings": ["w: a block's note", *extra.pop("warnings", [])],
        "limits": [],
        "complete": True,
        "seconds": 1.0,
        **extra,
    }


def _hand_built() -> tuple[dict[str, Any], dict[str, Any]]:
    first = _part(
        [
            # fooled by pgd only at 0.1, by fgsm and square at 0.2
            _input(
                0,
                True,
                _outcome("pgd", [SC], {"pgd": None}),
                _outcome("fgsm", [], {"fgsm": None, "square": 10.0}),
            ),
            _input(1, True, _outcome(None, [WB, SC], {}), _outcome(None, [WB, SC], {})),
            # wrong before any attack: never robust, never attacked
            _input(2, False, _outcome(None, [], {}), _outcome(None, [], {})),
        ],
        [[(2, 0, 2), (2, 1, 10), (2, 0, 50)], [(2, 1, 2), (1, 0, 5), (2, 1, 60)]],
    )
    second = _part(
        [
            # only the score-based attack fools it
            _input(
                3,
                True,
                _outcome("square", [WB], {"square": 30.0}),
                _outcome("square", [WB], {"square": 20.0}),
            ),
            # input 1 again: it stood in the first block, not here at 0.2
            _input(1, True, _outcome(None, [WB, SC], {}), _outcome("pgd", [SC], {"pgd": None})),
        ],
        [[(2, 0, 2), (2, 0, 10), (2, 1, 40)], [(2, 0, 2), (2, 1, 10), (2, 1, 30)]],
        warnings=["w: another note"],
        complete=False,
        limits=["budget ran short"],
    )
    return first, second


def test_merge_is_the_pointwise_worst_case(demo: Any) -> None:
    _, data = demo
    first, second = _hand_built()
    threat = Threat(epsilons=(0.2, 0.1))
    target = {"bounds": [0.0, 1.0], "name": "hand"}
    merged = merge_blocks([first, second], target, data, threat, samples=6)
    assert merged.samples == 4 and merged.clean_correct == 3
    assert [r.index for r in merged.inputs] == [0, 1, 2, 3]
    at_01, at_02 = merged.sweep
    # 0.1: only input 1 stands; white-box attacks leave 1 and 3, the score-based 0 and 1
    assert (at_01.robust, at_01.total, at_01.group_robust) == (1, 4, {WB: 2, SC: 2})
    # 0.2: input 1 fell in the second block, so nothing stands
    assert (at_02.robust, at_02.group_robust) == (0, {WB: 1, SC: 1})
    assert merged.inputs[1].outcomes[1].fooled_by == "pgd"
    assert merged.inputs[1].outcomes[1].standing == [SC]
    # the attacks' counts are summed; the median of 10 and 20 queries is torch's lower one
    assert [(s.attack, s.attacked, s.fooled, s.queries) for s in at_02.attacks] == [
        ("fgsm", 4, 1, 4),
        ("pgd", 3, 1, 15),
        ("square", 4, 2, 90),
    ]
    assert at_02.attacks[2].median_queries_to_success == 10.0
    assert at_01.attacks[2].median_queries_to_success == 30.0
    assert at_01.attacks[0].seconds == 1.0 and merged.seconds == 2.0
    assert not merged.complete
    assert merged.limits == [
        "6 inputs were asked for; the data has 4 test inputs",
        "budget ran short",
    ]
    assert merged.warnings == ["w: a block's note", "w: another note"]
    # findings read the merged figures: white-box attacks leave 2 of 4, then 1 of 4
    white = next(f for f in merged.findings if f.id == "evasion-white-box")
    assert white.evidence["robust_accuracy"] == {"0.1": 0.5, "0.2": 0.25}
    # the order the blocks come in does not matter
    again = merge_blocks([second, first], target, data, threat, samples=6)
    assert _figures(again) == _figures(merged)


def test_merge_refuses_blocks_of_different_evaluations(demo: Any) -> None:
    _, data = demo
    first, second = _hand_built()
    target = {"bounds": [0.0, 1.0]}
    with pytest.raises(ConfigError, match="seed"):
        merge_blocks([first, {**second, "seed": 1}], target, data, Threat(epsilons=(0.1, 0.2)))
    with pytest.raises(ConfigError, match="epsilons"):
        merge_blocks([first, second], target, data, Threat(epsilons=(0.1, 0.3)))
    with pytest.raises(ConfigError, match="layout"):
        merge_blocks([{**first, "version": 0}], target, data, Threat(epsilons=(0.1, 0.2)))
    with pytest.raises(ConfigError, match="nothing to merge"):
        merge_blocks([], target, data, Threat(epsilons=(0.1, 0.2)))
