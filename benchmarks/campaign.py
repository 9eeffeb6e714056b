"""Campaigns: engine throughput, resuming after a kill, exact sharding, the plan's estimate, and
a 1,000-cell plan stored.

    python benchmarks/campaign.py                  # every part
    python benchmarks/campaign.py --part engines --repeats 3

Parts:

- ``engines``: 4 demo models x 3 assessments run in one process (``local``, with torch's
  default threads, and again with one thread), on a pool of 2 worker processes
  (``processes``) and on a local Ray cluster of 2 CPUs (``ray``), each from a fresh store and
  a fresh shadow-model cache, alternated and repeated; throughput relative to one process,
  and each run's wall time against ``campaign plan``'s estimate for that engine.
- ``kill``: ``bastion campaign run`` killed with SIGKILL once some cells are done, then run
  again; the cells computed by each run, counted from the store.
- ``sharding``: one evaluation of 360 inputs in 4 blocks over a process pool against the same
  blocks in one process: the robust accuracy must be identical, per input.
- ``dry-run``: ``bastion campaign run --dry-run`` of a 1,000-cell campaign, timed as a user
  would run it (a new process).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ASSESSMENTS: list[dict[str, Any]] = [
    {"name": "evasion", "kind": "evasion", "eps": [0.05, 0.1, 0.2], "samples": 360},
    {
        "name": "membership",
        "kind": "membership",
        "attacks": ["loss-threshold", "shadow"],
        "settings": {"shadow": {"shadows": 4, "epochs": 20}},
    },
    {"name": "extraction", "kind": "extraction", "attacks": ["knockoff"], "max_queries": 2000},
]
TARGETS = [
    {"name": "cnn", "target": "digits-cnn"},
    {"name": "mlp", "target": "digits-mlp"},
    {"name": "logreg", "target": "digits-logreg"},
    {"name": "cancer-mlp", "target": "breast-cancer-mlp"},
]


def campaign(folder: Path, name: str = "bench", **extra: Any) -> Path:
    path = folder / f"{name}.yaml"
    spec = {"name": name, "targets": TARGETS, "assessments": ASSESSMENTS, **extra}
    path.write_text(yaml.safe_dump(spec))
    return path


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (5 min {five:.2f}) on {os.cpu_count()} CPUs"


# ------------------------------------------------------------------------------ engines
def engines(repeats: int, folder: Path) -> dict[str, Any]:
    from bastion.campaign import expand, load_campaign
    from bastion.campaign.estimate import estimate_cells, wall_time

    path = campaign(folder)
    spec, root = load_campaign(path)
    cells = expand(spec, root)
    # warm the demo cache: training the demo models is not the campaign's work
    estimates, _ = estimate_cells(cells)
    import torch

    threads = torch.get_num_threads()
    times: dict[str, list[float]] = {
        "local": [],
        "local-1-thread": [],
        "processes": [],
        "ray": [],
        "ray-cluster": [],
    }
    # a cluster started beforehand, as a team runs one (`ray start --head`); its GCS port is
    # kept off Redis's 6379
    ray_cli = str(Path(sys.executable).with_name("ray"))
    subprocess.run(
        [
            ray_cli,
            "start",
            "--head",
            "--num-cpus",
            "2",
            "--port",
            "6390",
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ],
        check=True,
        capture_output=True,
    )
    try:
        _engine_runs(times, repeats, folder, spec, root, cells, threads)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True)
    out: dict[str, Any] = {"cells": len(cells), "load_after": load()}
    base = statistics.median(times["local"])
    for name, values in times.items():
        workers = 1 if name.startswith("local") else 2
        kind = {"ray-cluster": "ray-address", "local-1-thread": "local"}.get(name, name)
        predicted = wall_time(estimates, workers, kind)
        out[name] = {
            "min_s": round(min(values), 1),
            "median_s": round(statistics.median(values), 1),
            "throughput_vs_local": round(base / statistics.median(values), 2),
            "throughput_vs_local_1_thread": round(
                statistics.median(times["local-1-thread"]) / statistics.median(values), 2
            ),
            "estimate_s": round(predicted, 1),
            "actual_over_estimate": round(statistics.median(values) / predicted, 2),
        }
    for name in ("ray", "ray-cluster"):
        out[f"{name}_vs_processes"] = round(
            statistics.median(times["processes"]) / statistics.median(times[name]), 2
        )
    return out


def _engine_runs(
    times: dict[str, list[float]],
    repeats: int,
    folder: Path,
    spec: Any,
    root: Path,
    cells: list[Any],
    threads: int,
) -> None:
    import torch

    from bastion.campaign import Store, make_engine, run_campaign

    warm = Path(os.environ["BASTION_CACHE_DIR"])
    for r in range(repeats):
        for name in times:
            store = Store.open(f"sqlite:///{folder / f'{name}-{r}.db'}")
            # the demo weights, but no shadow model of an earlier run: every run trains its own
            cache = folder / f"cache-{name}-{r}"
            cache.mkdir()
            for item in warm.iterdir():
                if item.name != "shadows":
                    (cache / item.name).symlink_to(item)
            os.environ["BASTION_CACHE_DIR"] = str(cache)
            torch.set_num_threads(1 if name == "local-1-thread" else threads)
            began = time.perf_counter()
            if name == "ray-cluster":
                engine = make_engine("ray", address="127.0.0.1:6390")
            else:
                engine = make_engine(name.split("-")[0], workers=2)
            try:
                # as `campaign run` does: a pool or cluster estimates on its own workers
                summary = run_campaign(spec, root, store, engine, cells=cells)
            finally:
                engine.close()
                os.environ["BASTION_CACHE_DIR"] = str(warm)
                torch.set_num_threads(threads)
            seconds = time.perf_counter() - began
            assert summary.done == len(cells), summary.failed
            times[name].append(seconds)
            print(f"  repeat {r + 1} {name:14s} {seconds:6.1f} s  ({load()})", flush=True)


# ------------------------------------------------------------------------------ kill
def _done(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=1) as conn:
            (n,) = conn.execute("SELECT count(*) FROM results WHERE status='done'").fetchone()
            return int(n)
    except sqlite3.OperationalError:
        return 0


def kill(folder: Path) -> dict[str, Any]:
    from bastion.campaign import Store, expand, load_campaign

    path = campaign(folder, "killed")
    db = folder / "killed.db"
    cmd = [
        sys.executable,
        "-m",
        "bastion.cli.main",
        "campaign",
        "run",
        str(path),
        "--store",
        f"sqlite:///{db}",
        "--engine",
        "processes",
        "--workers",
        "2",
        "--out",
        str(folder / "killed-report"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    while proc.poll() is None and _done(db) < 5:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)  # the pool's orphaned workers finish their task and exit
    cells = expand(*load_campaign(path))
    store = Store.open(f"sqlite:///{db}")
    done_at_kill = store.done(c.key for c in cells)
    stamps = {k: r.updated for k, r in store.results(done_at_kill).items()}
    began = time.perf_counter()
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - began
    after = store.results(c.key for c in cells)
    recomputed = [k for k in done_at_kill if after[k].updated != stamps[k]]
    line = [ln for ln in rerun.stdout.splitlines() if "cells done" in ln]
    return {
        "cells": len(cells),
        "done_when_killed": len(done_at_kill),
        "rerun_exit": rerun.returncode,
        "rerun_says": line[0].strip() if line else rerun.stdout[-300:],
        "finished_cells_recomputed": len(recomputed),
        "all_done_after_rerun": all(after[c.key].status == "done" for c in cells),
        "rerun_seconds": round(seconds, 1),
    }


# ------------------------------------------------------------------------------ sharding
def _block(args: tuple[list[int], int]) -> dict[str, Any]:
    import torch

    from bastion.assess.sharded import run_block
    from bastion.assess.specs import load_target_and_data
    from bastion.core.threat import Threat

    torch.set_num_threads(1)
    indices, position = args
    target, data = load_target_and_data("digits-cnn")
    threat = Threat(epsilons=(0.05, 0.1, 0.2), knowledge=target.access)
    return run_block(target, data, threat, indices, seed=0, examples=position == 0)


def sharding() -> dict[str, Any]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import torch

    from bastion.assess.sharded import merge_blocks, plan_blocks
    from bastion.assess.specs import load_target_and_data
    from bastion.core.threat import Threat

    target, data = load_target_and_data("digits-cnn")
    threat = Threat(epsilons=(0.05, 0.1, 0.2), knowledge=target.access)
    blocks = plan_blocks(data, 360, 0, 90)
    jobs = [(b, i) for i, b in enumerate(blocks)]
    began = time.perf_counter()
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        pooled = list(pool.map(_block, jobs))
    pool_s = time.perf_counter() - began
    threads = torch.get_num_threads()
    began = time.perf_counter()
    here = [_block(j) for j in jobs]
    here_s = time.perf_counter() - began
    torch.set_num_threads(threads)
    a = merge_blocks(pooled, target, data, threat, samples=360)
    b = merge_blocks(list(reversed(here)), target, data, threat, samples=360)
    same_inputs = all(
        ra.robust(k) == rb.robust(k)
        for ra, rb in zip(a.inputs, b.inputs, strict=True)
        for k in range(len(a.sweep))
    )
    return {
        "blocks": len(blocks),
        "robust_pool": [p.robust for p in a.sweep],
        "robust_one_process": [p.robust for p in b.sweep],
        "identical": [p.robust for p in a.sweep] == [p.robust for p in b.sweep] and same_inputs,
        "pool_s": round(pool_s, 1),
        "one_process_s": round(here_s, 1),
    }


# ------------------------------------------------------------------------------ dry run
def dry_run(folder: Path, repeats: int) -> dict[str, Any]:
    path = folder / "big.yaml"
    spec = {
        "name": "big",
        "targets": [
            {"name": f"model-{i}", "target": f"models/m{i}.onnx", "data": "digits"}
            for i in range(10)
        ],
        "assessments": [
            {
                "name": f"evasion-{j}",
                "kind": "evasion",
                "matrix": {"samples": list(range(100, 1100, 100))},
            }
            for j in range(10)
        ],
    }
    (folder / "models").mkdir(exist_ok=True)
    for i in range(10):
        (folder / "models" / f"m{i}.onnx").write_bytes(os.urandom(1 << 20))  # 1 MiB each
    path.write_text(yaml.safe_dump(spec))
    seconds = []
    for r in range(repeats):
        db = folder / f"big-{r}.db"
        began = time.perf_counter()
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "bastion.cli.main",
                "campaign",
                "run",
                str(path),
                "--dry-run",
                "--store",
                f"sqlite:///{db}",
            ],
            capture_output=True,
            text=True,
        )
        seconds.append(time.perf_counter() - began)
        assert done.returncode == 0, done.stderr
        with sqlite3.connect(db) as conn:
            (n,) = conn.execute("SELECT count(*) FROM cells").fetchone()
        assert n == 1000, n
    return {
        "cells": 1000,
        "min_s": round(min(seconds), 2),
        "median_s": round(statistics.median(seconds), 2),
        "says": done.stdout.strip(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", choices=["engines", "kill", "sharding", "dry-run", "all"], default="all"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    out: dict[str, Any] = {"load_before": load()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        os.environ.setdefault("BASTION_CACHE_DIR", str(Path.home() / ".cache" / "bastion-bench"))
        if args.part in ("engines", "all"):
            out["engines"] = engines(args.repeats, folder)
        if args.part in ("kill", "all"):
            out["kill"] = kill(folder)
        if args.part in ("sharding", "all"):
            out["sharding"] = sharding()
        if args.part in ("dry-run", "all"):
            out["dry_run"] = dry_run(folder, args.repeats)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
