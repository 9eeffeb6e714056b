"""The gateway's cost: the demo model served with every guard on against the same model served
bare by the same stack (FastAPI on uvicorn, the same JSON), in one run.

Each server runs in a process of its own; this process is the load: ``--clients`` threads, each
sending one-input predict requests back to back on a keep-alive connection for ``--seconds``.
Rounds alternate (bare, guarded, bare, ...) so machine noise hits both alike; medians are
compared. Guarded means: a key checked per request, a rate limit and a budget counted (never
reached), the body and inputs validated, scores rounded, the audit row committed to SQLite
(WAL, synchronous=FULL) before each answer.

    python benchmarks/serve_overhead.py                  # 4 clients, 3 rounds of 5 s each
    python benchmarks/serve_overhead.py --clients 8 --seconds 10
    python benchmarks/serve_overhead.py --audit-sync normal   # durable against a process crash

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


def serve(kind: str, port: int, folder: str, sync: str) -> None:
    """Run one server (a child process): print its key (or '-') once it listens."""
    import torch
    import uvicorn

    import bastion
    from bastion.serve import Gateway, create_app, load_policy

    torch.set_num_threads(1)
    target, _ = bastion.load_demo("digits-cnn", device="cpu")
    key = "-"
    if kind == "bare":
        app = _bare_app(target)
    else:
        policy = load_policy(
            {
                "database": f"sqlite:///{folder}/bench.db",
                "limits": {"rate": "100000/second", "budget": "100000000/day"},
                "output": ["round:decimals=2"],
                "audit": {"synchronous": sync},
            }
        )
        gateway = Gateway(target, policy)
        _, key = gateway.keys.create(f"bench-{port}")
        app = create_app(gateway)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", access_log=False)
    server = uvicorn.Server(config)
    threading.Thread(target=lambda: _announce(server, key), daemon=True).start()
    server.run()


def _announce(server: Any, key: str) -> None:
    while not server.started:
        time.sleep(0.05)
    print(key, flush=True)


# ---------------------------------------------------------------------- the load
def _load(url: str, key: str, clients: int, seconds: float) -> tuple[float, list[float], int]:
    headers = {"Content-Type": "application/json"}
    if key != "-":
        headers["Authorization"] = f"Bearer {key}"
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = time.perf_counter()
    stop = start + seconds

    def worker(i: int) -> None:
        with httpx.Client(timeout=30) as http:
            while time.perf_counter() < stop:
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
        "--audit-sync",
        choices=("full", "normal"),
        default="full",
        help="the policy's audit.synchronous (SQLite): full (default) or normal",
    )
    parser.add_argument("--serve", choices=("bare", "guarded"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, args.folder, args.audit_sync)
        return

    folder = tempfile.mkdtemp(prefix="bastion-bench-")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs: dict[str, tuple[subprocess.Popen[str], str, str]] = {}
    try:
        for kind, port in (("bare", 18731), ("guarded", 18732)):
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--serve", kind, "--port",
                 str(port), "--folder", folder, "--audit-sync", args.audit_sync],
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            assert proc.stdout is not None
            key = proc.stdout.readline().strip()
            procs[kind] = (proc, f"http://127.0.0.1:{port}/predict", key)
        results: dict[str, list[tuple[float, list[float], int]]] = {"bare": [], "guarded": []}
        for _, url, key in procs.values():  # warm-up
            _load(url, key, args.clients, 1.0)
        for _ in range(args.rounds):
            for name, (_, url, key) in procs.items():
                results[name].append(_load(url, key, args.clients, args.seconds))
        summary = {}
        for name, runs in results.items():
            all_lat = [v for _, lat, _ in runs for v in lat]
            summary[name] = {
                "rps": statistics.median(r for r, _, _ in runs),
                "p50": _pct(all_lat, 50),
                "p99": _pct(all_lat, 99),
                "errors": sum(e for _, _, e in runs),
                "requests": len(all_lat),
            }
        for name, s in summary.items():
            print(
                f"{name:8s} {s['rps']:8.1f} req/s   p50 {s['p50']:6.2f} ms   p99 {s['p99']:6.2f} ms"
                f"   ({s['requests']} requests, {s['errors']} not 200)"
            )
        ratio = summary["guarded"]["rps"] / summary["bare"]["rps"]
        added = summary["guarded"]["p99"] - summary["bare"]["p99"]
        print(f"throughput ratio (guarded / bare): {ratio:.2f}   (goal >= 0.8)")
        print(f"added p99 latency: {added:+.2f} ms   (goal <= 5 ms)")
        print(
            f"{args.clients} clients, {args.rounds} rounds of {args.seconds:g} s, 1 input/request"
        )
    finally:
        for proc, _, _ in procs.values():
            proc.terminate()
            proc.wait(timeout=10)


if __name__ == "__main__":
    main()
