"""Where the inner tasks of an assessment run: a map that an engine can replace.

Some assessments are made of independent pieces of work: the shadow models of a membership
attack, the retrainings of a poisoning susceptibility curve. They run through
:func:`task_map`, which by default is Python's sequential ``map``. An engine that runs
assessments elsewhere (a process pool, a Ray cluster) installs its own map with
:func:`use_map` while an assessment runs, and the pieces become tasks of their own there.

A map installed with :func:`use_map` holds for the current context only (a context
variable): other threads and asyncio tasks keep theirs. Whatever goes through
:func:`task_map` must be picklable for a map that crosses processes: a top-level function
(or a :func:`functools.partial` of one) and plain data. The results are the same under any
map because each task's randomness is seeded by its arguments (a shadow by its job's seed, a
curve point by the assessment's); its floating-point results are the same where the workers
run the same libraries with the same number of threads (``torch.set_num_threads``).

Example:
    >>> from concurrent.futures import ProcessPoolExecutor
    >>> with ProcessPoolExecutor(2) as pool, use_map(pool.map):  # doctest: +SKIP
    ...     result = LiRA(shadows=8).run(target, x, y, member)
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

__all__ = ["MapFn", "current_map", "task_map", "use_map"]

T = TypeVar("T")
R = TypeVar("R")

#: a map: ``map_fn(fn, items)`` gives ``fn(item)`` for each item, in the items' order
MapFn = Callable[[Callable[[Any], Any], Iterable[Any]], Iterable[Any]]

_MAP: contextvars.ContextVar[MapFn] = contextvars.ContextVar("bastion_task_map", default=map)


def current_map() -> MapFn:
    """The map :func:`task_map` uses now: the built-in ``map`` unless one is installed."""
    return _MAP.get()


@contextlib.contextmanager
def use_map(map_fn: MapFn | None) -> Iterator[None]:
    """Run the inner tasks of what happens inside the block through ``map_fn``
    (``None``: the built-in sequential ``map``); the previous map holds again after it."""
    token = _MAP.set(map if map_fn is None else map_fn)
    try:
        yield
    finally:
        _MAP.reset(token)


def task_map(fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[fn(item) for item in items]``, each call a task of the current map.

    The results come back in the items' order whatever order the tasks finish in. With the
    default map the items are drawn one at a time, just before each call.
    """
    return list(_MAP.get()(fn, items))
