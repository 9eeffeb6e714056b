"""Engines: where a campaign's tasks run. The same campaign runs unchanged on any of them.

- ``local``: one task after another in this process (the default; nothing to install).
- ``processes``: a pool of worker processes on this machine, one task each at a time.
- ``ray``: tasks on a Ray cluster (the ``distributed`` extra): a local one started for the
  campaign, or a running one at ``--address``. A task asks Ray for a GPU when its model is on
  one, and the inner tasks of an assessment (shadow models, retrainings of a susceptibility
  curve) become Ray tasks of their own.

Every engine has the same three calls: :meth:`Engine.submit` a task, :meth:`Engine.wait` for
at least one outcome, :meth:`Engine.close`. The campaign runner is the only writer of the
store: workers return outcomes and never touch it.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import sys
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from bastion.campaign.tasks import Outcome, Task, execute
from bastion.core.errors import ConfigError

__all__ = ["ENGINES", "Engine", "LocalEngine", "ProcessEngine", "RayEngine", "make_engine"]

ENGINES = ("local", "processes", "ray")


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


class Engine:
    """What every engine does."""

    name = "engine"
    #: tasks that may run at once
    workers = 1

    def submit(self, task: Task) -> None:
        raise NotImplementedError

    def wait(self) -> list[Outcome]:
        """At least one finished outcome (blocking), or ``[]`` when nothing is in flight."""
        raise NotImplementedError

    @property
    def in_flight(self) -> int:
        raise NotImplementedError

    @property
    def gpus(self) -> int:
        """GPUs tasks can ask for."""
        return 0

    def close(self, *, cancel: bool = False) -> None:
        """Release the workers; with ``cancel``, stop what is running now."""

    def describe(self) -> str:
        return f"{self.name} ({self.workers} worker{'s' if self.workers != 1 else ''})"


class LocalEngine(Engine):
    """Tasks one after another in this process."""

    name = "local"

    def __init__(self) -> None:
        self.workers = 1
        self._queue: deque[Task] = deque()

    def submit(self, task: Task) -> None:
        self._queue.append(task)

    def wait(self) -> list[Outcome]:
        if not self._queue:
            return []
        return [execute(self._queue.popleft())]

    @property
    def in_flight(self) -> int:
        return len(self._queue)

    @property
    def gpus(self) -> int:
        return _local_gpus()


def _warm() -> None:
    """Nothing but the imports every task needs."""
    import bastion.assess.specs
    import bastion.campaign.tasks  # noqa: F401


def _init_worker(threads: int, parent: int) -> None:
    """A pool worker: its share of the CPUs, so workers do not fight over them; and it dies
    with the campaign, even one killed with SIGKILL (an orphaned worker would otherwise wait
    for work forever, holding its memory)."""
    if sys.platform.startswith("linux"):
        import ctypes
        import signal

        # PR_SET_PDEATHSIG: the kernel sends SIGKILL when the parent goes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent went before the line above could take effect
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    import torch

    torch.set_num_threads(threads)


class ProcessEngine(Engine):
    """A pool of worker processes (started with ``spawn``: safe beside torch's threads)."""

    name = "processes"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or cpus()
        if self.workers < 1:
            raise ConfigError(f"--workers must be at least 1, got {self.workers}")
        self._threads = max(1, cpus() // self.workers)
        self._pool = self._new_pool()
        self._futures: dict[cf.Future[Outcome], Task] = {}
        # start the workers now (the pool starts them on demand): they import torch and
        # bastion while this process plans
        for _ in range(self.workers):
            self._pool.submit(_warm)

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        return cf.ProcessPoolExecutor(
            max_workers=self.workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self._threads, os.getpid()),
        )

    def submit(self, task: Task) -> None:
        self._futures[self._pool.submit(execute, task)] = task

    def wait(self) -> list[Outcome]:
        if not self._futures:
            return []
        done, _ = cf.wait(list(self._futures), return_when=cf.FIRST_COMPLETED)
        out = []
        broken = False
        for future in done:
            task = self._futures.pop(future)
            try:
                out.append(future.result())
            except cf.process.BrokenProcessPool:
                broken = True
                out.append(_lost(task, "its worker process died (out of memory, or killed)"))
            except Exception as exc:
                out.append(_lost(task, f"{type(exc).__name__}: {exc}"))
        if broken:
            # every task of a broken pool is lost with it: report them, start a new pool
            for future, task in list(self._futures.items()):
                out.append(_lost(task, "its worker pool broke while it ran"))
                del self._futures[future]
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
        return out

    @property
    def in_flight(self) -> int:
        return len(self._futures)

    @property
    def gpus(self) -> int:
        return _local_gpus()

    def close(self, *, cancel: bool = False) -> None:
        if cancel:
            for process in list(getattr(self._pool, "_processes", {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not cancel, cancel_futures=True)


def _lost(task: Task, why: str) -> Outcome:
    return Outcome(task.key, None, f"WorkerLost: {why}", 0.0, "")


# ------------------------------------------------------------------------------ Ray
_APPLY: list[Any] = []


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    return fn(item)


def _ray_map(fn: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
    """Inner tasks of an assessment, each a Ray task of its own (a task blocked here gives
    its CPU back to Ray while it waits, so nested tasks cannot starve). ``fn`` may be any
    picklable callable (a partial, say). When the cluster has no CPU free, they run here:
    shipping them would only queue them behind the work that keeps the cluster busy, and
    start new worker processes to do so."""
    import ray

    items = list(items)
    free = ray.available_resources().get("CPU", 0.0)  # type: ignore[no-untyped-call]
    if len(items) < 2 or free < 1:
        return [fn(item) for item in items]
    if not _APPLY:
        _APPLY.append(ray.remote(num_cpus=1, max_retries=0)(_apply))
    remote = _APPLY[0]
    return list(ray.get([remote.remote(fn, item) for item in items]))


def _execute_on_ray(task: Task) -> Outcome:
    import torch

    from bastion.core.parallel import use_map

    torch.set_num_threads(1)
    with use_map(_ray_map):
        return execute(task)


class RayEngine(Engine):
    """Tasks on a Ray cluster: one started here (with ``workers`` CPUs) or the one at
    ``address``."""

    name = "ray"

    def __init__(self, workers: int | None = None, address: str | None = None) -> None:
        from bastion._extras import require

        ray = require("ray")
        self.address = address
        self._refs: dict[Any, Task] = {}
        kwargs: dict[str, Any] = {
            "include_dashboard": False,
            "log_to_driver": False,
            "configure_logging": False,
            "ignore_reinit_error": True,
        }
        try:
            if address:
                ray.init(address=address, **kwargs)
            else:
                # a cluster of its own on loopback, even where another one runs here
                ray.init(
                    address="local",
                    num_cpus=workers or cpus(),
                    _node_ip_address="127.0.0.1",
                    **kwargs,
                )
        except Exception as exc:
            where = f" at {address}" if address else ""
            detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(f"cannot start or reach a Ray cluster{where}: {detail}") from None
        resources = ray.cluster_resources()
        self.workers = max(1, int(resources.get("CPU", 1)))
        self._gpus = int(resources.get("GPU", 0))
        self._remote = ray.remote(max_retries=0)(_execute_on_ray)

    def submit(self, task: Task) -> None:
        options: dict[str, Any] = {"num_cpus": 1}
        if task.gpu and self._gpus:
            options["num_gpus"] = 1
        self._refs[self._remote.options(**options).remote(task)] = task

    def wait(self) -> list[Outcome]:
        import ray

        if not self._refs:
            return []
        ready, _ = ray.wait(list(self._refs), num_returns=1)
        out = []
        for ref in ready:
            task = self._refs.pop(ref)
            try:
                out.append(ray.get(ref))
            except Exception as exc:
                detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                out.append(_lost(task, f"Ray lost it: {type(exc).__name__} {detail}".strip()))
        return out

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    @property
    def gpus(self) -> int:
        return self._gpus

    def close(self, *, cancel: bool = False) -> None:
        import ray

        if cancel:
            for ref in self._refs:
                ray.cancel(ref, force=True)
        self._refs.clear()
        ray.shutdown()

    def describe(self) -> str:
        where = f"at {self.address}" if self.address else "local cluster"
        return f"ray ({where}, {self.workers} CPUs, {self._gpus} GPUs)"


def _local_gpus() -> int:
    try:
        import torch

        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:
        return 0


def make_engine(name: str, *, workers: int | None = None, address: str | None = None) -> Engine:
    """The engine called ``name``."""
    if name not in ENGINES:
        raise ConfigError(f"--engine takes {', '.join(ENGINES)}; got {name!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    if address is not None and name != "ray":
        raise ConfigError("--address names a Ray cluster: give --engine ray")
    if name == "local":
        return LocalEngine()
    if name == "processes":
        return ProcessEngine(workers)
    return RayEngine(workers, address)
