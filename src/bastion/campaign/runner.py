"""Running a campaign: cells to tasks, tasks to an engine, outcomes to the store.

A cell whose key the store holds as done is skipped, whatever run or campaign computed it, so a
campaign killed at any moment continues where it stopped when it is run again. A task that
fails is tried again up to ``retries`` times, then recorded as failed with its error; the
others go on. Outcomes are committed as they arrive, one transaction each.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.campaign.engines import Engine
from bastion.campaign.spec import CampaignSpec, Cell, expand, shard_count
from bastion.campaign.store import Store
from bastion.campaign.tasks import Outcome, Task

__all__ = ["Progress", "RunSummary", "block_key", "plan_tasks", "run_campaign"]


@dataclass
class RunSummary:
    """What one ``campaign run`` did.

    Attributes:
        run: the run's id in the store.
        cells: cells in the campaign.
        skipped: cells already done before this run (by any run).
        computed: tasks computed by this run (a sharded cell is several: blocks and a merge).
        done: cells done at the end.
        failed: cells failed at the end, with their errors.
        seconds: wall time.
        interrupted: whether the run stopped on Ctrl-C before the end.
    """

    run: int
    cells: int
    skipped: int = 0
    computed: int = 0
    done: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False


@dataclass
class Progress:
    """What the runner reports after each outcome (for a progress bar)."""

    done: int
    total: int
    failed: int
    running: list[str]
    last: str | None = None
    #: the error of a cell that has just failed for good
    error: str | None = None


def block_key(cell_key: str, block: int, blocks: int) -> str:
    """The store key of one block of a sharded cell."""
    return f"{cell_key}:b{block}of{blocks}"


def _task(cell: Cell, step: str, gpu: bool, **more: Any) -> Task:
    key = cell.key if step != "block" else block_key(cell.key, more["block"], more["blocks"])
    label = cell.label + (f" block {more['block'] + 1}/{more['blocks']}" if step == "block" else "")
    return Task(
        key=key,
        cell=cell.key,
        step=step,
        target=cell.target.model_dump(),
        assessment=cell.assessment.model_dump(exclude={"matrix"}),
        label=label + (" (merge)" if step == "merge" else ""),
        gpu=gpu,
        **more,
    )


def _wants_gpu(cell: Cell, gpus: int) -> bool:
    device = cell.target.device
    return gpus > 0 and (device.startswith("cuda") or device == "auto")


def plan_tasks(cells: Sequence[Cell], store: Store, gpus: int = 0) -> tuple[list[Task], set[str]]:
    """The tasks still to run for ``cells`` (skipping what the store holds as done), and the
    keys of the cells already done."""
    keys = [c.key for c in cells]
    for c in cells:
        n = shard_count(c)
        if n > 1:
            keys += [block_key(c.key, b, n) for b in range(n)]
    finished = store.done(keys)
    tasks: list[Task] = []
    seen: set[str] = set()
    for c in cells:
        # two cells of the same content (one model under two names) are one task
        if c.key in finished or c.key in seen:
            continue
        seen.add(c.key)
        gpu = _wants_gpu(c, gpus)
        n = shard_count(c)
        if n == 1:
            tasks.append(_task(c, "run", gpu))
            continue
        todo = [b for b in range(n) if block_key(c.key, b, n) not in finished]
        if not todo:
            # every block done, the merge not: merge now
            tasks.append(_merge_task(c, store, gpu))
        tasks += [_task(c, "block", gpu, block=b, blocks=n) for b in todo]
    return tasks, {c.key for c in cells if c.key in finished}


def _merge_task(cell: Cell, store: Store, gpu: bool) -> Task:
    n = shard_count(cell)
    keys = [block_key(cell.key, b, n) for b in range(n)]
    found = store.results(keys)
    parts = [found[k].payload or {} for k in keys]
    return _task(cell, "merge", gpu, parts=parts)


def run_campaign(
    spec: CampaignSpec,
    root: Path,
    store: Store,
    engine: Engine,
    *,
    cells: Sequence[Cell] | None = None,
    estimates: Sequence[float] | None = None,
    progress: Callable[[Progress], None] | None = None,
) -> RunSummary:
    """Run every cell of ``spec`` not yet done on ``engine``, recording outcomes in ``store``."""
    started = time.perf_counter()
    cells = list(cells) if cells is not None else expand(spec, root)
    run_id = store.new_run(
        spec.name,
        spec.model_dump(mode="json"),
        cells,
        engine=engine.name,
        tasks=[shard_count(c) for c in cells],
        estimates=estimates,
    )
    summary = RunSummary(run_id, len(cells))
    tasks, already = plan_tasks(cells, store, engine.gpus)
    if engine.workers > 1 and len(tasks) > 1:
        # longest first: the long cells start while there is work to run beside them, so
        # no worker is left alone with one at the end
        if estimates is None:
            estimates = _estimate_on(engine, cells, {t.cell for t in tasks})
        cost = {c.key: estimates[i] / shard_count(c) for i, c in enumerate(cells)}
        tasks.sort(key=lambda t: -cost.get(t.cell, 0.0))
    summary.skipped = sum(1 for c in cells if c.key in already)
    by_key = {c.key: c for c in cells}
    attempts: dict[str, int] = {}
    queue = list(reversed(tasks))
    running: dict[str, Task] = {}
    cells_done = set(already)
    failed: dict[str, str] = {}
    # enough in flight to keep every worker busy, few enough that "running" means running
    capacity = max(1, engine.workers) + (0 if engine.name == "local" else 1)

    def count(keys: set[str] | dict[str, str]) -> int:
        return sum(1 for c in cells if c.key in keys)

    def report(last: str | None = None, error: str | None = None) -> None:
        if progress is not None:
            progress(
                Progress(
                    count(cells_done),
                    len(cells),
                    count(failed),
                    [t.label for t in running.values()],
                    last,
                    error,
                )
            )

    report()
    try:
        while queue or running:
            while queue and len(running) < capacity:
                task = queue.pop()
                attempts[task.key] = attempts.get(task.key, 0) + 1
                store.mark_running(task.key, attempts[task.key])
                engine.submit(task)
                running[task.key] = task
            for outcome in engine.wait():
                task = running.pop(outcome.key)
                follow = _record(task, outcome, attempts[task.key], spec.retries, store, summary)
                final_error = None
                if follow == "retry":
                    queue.append(task)
                elif follow == "failed":
                    failed[task.cell] = final_error = outcome.error or "failed"
                elif follow == "done":
                    if task.step == "block":
                        cell = by_key[task.cell]
                        if _blocks_done(cell, store):
                            queue.append(_merge_task(cell, store, task.gpu))
                    else:
                        cells_done.add(task.cell)
                report(task.label, final_error)
    except KeyboardInterrupt:
        summary.interrupted = True
        engine.close(cancel=True)
        # what was running is no longer: it is pending again, for the next run
        store.forget(list(running))
        running.clear()
    else:
        store.finish_run(run_id)
    summary.done = count(cells_done)
    summary.failed = {by_key[k].label: v for k, v in failed.items()}
    summary.seconds = time.perf_counter() - started
    return summary


def _estimate_on(engine: Engine, cells: Sequence[Cell], todo: set[str]) -> list[float]:
    """Each cell's estimate, measured by the engine's own workers (one task per target, in
    parallel; the workers keep the targets loaded for the cells that follow). A target that
    cannot be estimated counts as 0 s: its cells go last, nothing fails."""
    by_target: dict[str, list[Cell]] = {}
    for c in cells:
        if c.key in todo:
            by_target.setdefault(json.dumps(c.target.model_dump(), sort_keys=True), []).append(c)
    keys: dict[str, list[Cell]] = {}
    for i, group in enumerate(by_target.values()):
        key = f"estimate:{i}"
        keys[key] = group
        engine.submit(
            Task(
                key=key,
                cell=key,
                step="estimate",
                target=group[0].target.model_dump(),
                assessment={},
                label=f"{group[0].target.name}: estimating",
                parts=[c.assessment.model_dump(exclude={"matrix"}) for c in group],
            )
        )
    found: dict[str, float] = {}
    while engine.in_flight:
        for outcome in engine.wait():
            group = keys.get(outcome.key, [])
            seconds = (outcome.payload or {}).get("seconds") or [0.0] * len(group)
            found.update({c.key: float(s) for c, s in zip(group, seconds, strict=False)})
    return [found.get(c.key, 0.0) for c in cells]


def _record(
    task: Task, outcome: Outcome, attempt: int, retries: int, store: Store, summary: RunSummary
) -> str:
    """Store one outcome; what follows: ``done``, ``retry`` or ``failed``."""
    if outcome.ok:
        store.record(
            task.key,
            status="done",
            attempts=attempt,
            payload=outcome.payload,
            seconds=outcome.seconds,
            worker=outcome.worker,
        )
        summary.computed += 1
        return "done"
    final = attempt > retries or not outcome.retryable
    store.record(
        task.key,
        status="failed",
        attempts=attempt,
        error=outcome.error,
        seconds=outcome.seconds,
        worker=outcome.worker,
    )
    return "failed" if final else "retry"


def _blocks_done(cell: Cell, store: Store) -> bool:
    n = shard_count(cell)
    keys = [block_key(cell.key, b, n) for b in range(n)]
    return len(store.done(keys)) == n
