"""The gateway's cost: the demo model served with every guard on against the same model served
bare by the same stack (FastAPI on uvicorn, the same JSON), in one run.

Each server runs in a process of its own; this process is the load. Two phases, rounds
alternating between the contenders (bare, guarded with ``durability: process``, guarded with
``durability: power``, bare, ...) so machine noise hits all alike:

- throughput: ``--clients`` threads, each sending one-input predict requests back to back on a
  keep-alive connection for ``--seconds``; the ratio guarded / bare per round, min and median.
- latency at moderate load: the same clients paced to ``--moderate`` requests per second in
  all (well under what either server can answer); p50 and p99 per contender, and the p99 the
  gateway adds.

Guarded means: a key checked per request, a rate limit and a budget counted (never reached),
the body and inputs validated, scores rounded, the audit row committed to SQLite (WAL) before
each answer, a JSON log line per request (to a file, as ``bastion serve`` writes to stderr).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/serve_overhead.py
    python benchmarks/serve_overhead.py --clients 8 --seconds 10 --rounds 5
    python benchmarks/serve_overhead.py --durability process     # one guarded contender

Goals (issue 13): throughput ratio (guarded / bare) at least 0.8; added p99 latency at most 5 ms
at moderate load.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import Request
from fastapi.responses import Response

BODY = json.dumps({"inputs": np.full((1, 1, 8, 8), 0.5).tolist()}).encode()


# ---------------------------------------------------------------------- the servers
def _bare_app(target: Any) -> Any:
    import torch
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool

    app = FastAPI()

    def answer(body: bytes) -> bytes:
        x = np.asarray(json.loads(body)["inputs"], dtype=np.float32)
        with torch.no_grad():
            out = target(torch.from_numpy(x)).numpy().astype(np.float64)
        return json.dumps({"outputs": out.tolist()}).encode()

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        body = await request.body()
        return Response(await run_in_threadpool(answer, body), media_type="application/json")

    return app


def serve(kind: str, port: int, folder: str, durability: str) -> None:
    """Run one server (a child process): print its key (or '-') once it listens."""
    import torch
    import uvicorn

    import bastion
    from bastion.serve import Gateway, create_app, load_policy
    from bastion.serve.logs import configure_logging

    torch.set_num_threads(1)
    target, _ = bastion.load_demo("digits-cnn", device="cpu")
    key = "-"
    if kind == "bare":
        app = _bare_app(target)
    else:
        policy = load_policy(
            {
                "database": f"sqlite:///{folder}/bench-{durability}.db",
                "limits": {"rate": "100000/second", "budget": "100000000/day"},
                "output": ["round:decimals=2"],
                "audit": {"durability": durability},
            }
        )
        gateway = Gateway(target, policy)
        _, key = gateway.keys.create(f"bench-{port}")
        app = create_app(gateway)
        configure_logging()  # a JSON line per request on stderr, as bastion serve writes
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=lambda: _announce(server, key), daemon=True).start()
    server.run()


def _announce(server: Any, key: str) -> None:
    while not server.started:
        time.sleep(0.05)
    print(key, flush=True)


# ---------------------------------------------------------------------- the load
def _load(
    url: str, key: str, clients: int, seconds: float, rate: float | None = None
) -> tuple[float, list[float], int]:
    """Requests per second, latencies and non-200 answers; ``rate``: paced to that many
    requests per second in all (each client sends on a schedule, never faster)."""
    headers = {"Content-Type": "application/json"}
    if key != "-":
        headers["Authorization"] = f"Bearer {key}"
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = time.perf_counter()
    stop = start + seconds
    gap = clients / rate if rate else 0.0

    def worker(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            due = start + gap * i / clients
            while time.perf_counter() < stop:
                if gap:
                    pause = due - time.perf_counter()
                    if pause > 0:
                        time.sleep(pause)
                    due += gap
                t0 = time.perf_counter()
                r = http.post(url, content=BODY, headers=headers)
                latencies[i].append(time.perf_counter() - t0)
                errors[i] += r.status_code != 200

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    flat = [v for per in latencies for v in per]
    return len(flat) / elapsed, flat, sum(errors)


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values) * 1000, q))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--moderate", type=float, default=100.0, help="requests/s of the latency phase (0: skip)"
    )
    parser.add_argument(
        "--durability",
        choices=("process", "power"),
        action="append",
        help="the guarded contenders' audit.durability (repeatable; default: both)",
    )
    parser.add_argument("--serve", choices=("bare", "guarded"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    durabilities = args.durability or ["process", "power"]
    if args.serve:
        serve(args.serve, args.port, args.folder, durabilities[0])
        return

    folder = tempfile.mkdtemp(prefix="bastion-bench-")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    contenders = [("bare", "bare", "process")] + [
        (f"guarded-{d}", "guarded", d) for d in durabilities
    ]
    procs: dict[str, tuple[subprocess.Popen[str], str, str]] = {}
    try:
        for i, (name, kind, durability) in enumerate(contenders):
            port = 18731 + i
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port",
                 str(port), "--folder", folder, "--durability", durability],
                stdout=subprocess.PIPE,
                stderr=(Path(folder) / f"{name}.log").open("w"),
                text=True,
                env=env,
            )  # fmt: skip
            assert proc.stdout is not None
            key = proc.stdout.readline().strip()
            procs[name] = (proc, f"http://127.0.0.1:{port}/predict", key)
        load_before = os.getloadavg()
        for _, url, key in procs.values():  # warm-up
            _load(url, key, args.clients, 1.0)
        runs: dict[str, list[tuple[float, list[float], int]]] = {n: [] for n in procs}
        paced: dict[str, list[float]] = {n: [] for n in procs}
        for _ in range(args.rounds):
            for name, (_, url, key) in procs.items():
                runs[name].append(_load(url, key, args.clients, args.seconds))
            if args.moderate > 0:
                for name, (_, url, key) in procs.items():
                    paced[name] += _load(url, key, args.clients, args.seconds, args.moderate)[1]
        load_after = os.getloadavg()

        print(f"throughput: {args.clients} clients back to back, {args.rounds} rounds of "
              f"{args.seconds:g} s, 1 input/request")  # fmt: skip
        bare = [r for r, _, _ in runs["bare"]]
        for name, per in runs.items():
            rps = [r for r, _, _ in per]
            errors = sum(e for _, _, e in per)
            line = (
                f"  {name:16s} req/s min {min(rps):7.1f}  median {statistics.median(rps):7.1f}"
                f"  ({sum(len(lat) for _, lat, _ in per)} requests, {errors} not 200)"
            )
            if name != "bare":
                ratios = [g / b for g, b in zip(rps, bare, strict=True)]
                line += (
                    f"  ratio to bare per round: min {min(ratios):.2f}  median "
                    f"{statistics.median(ratios):.2f}  (goal >= 0.8)"
                )
            print(line)
        if args.moderate > 0:
            print(f"latency at {args.moderate:g} requests/s ({args.rounds} x {args.seconds:g} s)")
            base = _pct(paced["bare"], 99)
            for name, lat in paced.items():
                line = f"  {name:16s} p50 {_pct(lat, 50):6.2f} ms  p99 {_pct(lat, 99):6.2f} ms"
                if name != "bare":
                    line += f"  added p99 {_pct(lat, 99) - base:+.2f} ms  (goal <= 5 ms)"
                print(line)
        print(
            f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} on "
            f"{os.cpu_count()} CPUs (other work on the machine shares them)"
        )
    finally:
        for proc, _, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
