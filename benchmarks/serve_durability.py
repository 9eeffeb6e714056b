"""Durability of the audit log: every acknowledged request is in it, even when the gateway is
killed mid-load.

``bastion serve`` (the real command, on the demo model) runs in a subprocess with a policy whose
rate limit the load exceeds, so the answers are a mix of 200 and 429. ``--clients`` threads on
loopback send one-input predict requests back to back for ``--seconds`` and keep the
``X-Request-ID`` of every answer they receive. Then the audit database is opened and each of
those ids looked up.

An *acknowledged* request is one whose answer reached the client. The gateway commits the
audit row of every predict request before it answers, whatever the outcome (200, 401, 403,
413, 422, 429, 503 for the kill switch, 500 for a model error); the one answer without a row
is the 503 "cannot record requests", sent precisely because the row could not be committed,
so it is counted apart and not required. A request whose connection broke before an answer
came (the gateway was killed) was never acknowledged; its row may or may not be there.

``--kill`` sends SIGKILL to the gateway at ``--kill-at`` (a fraction of the run), starts it
again on the same database and port while the clients keep going, and checks the same thing
across the crash.

    PYTHONPATH=src python benchmarks/serve_durability.py         # SQLite, 60 s
    python benchmarks/serve_durability.py --kill                 # SIGKILL at 30 s, restart
    python benchmarks/serve_durability.py --kill --durability power
    python benchmarks/serve_durability.py --kill \\
        --database postgresql://postgres@127.0.0.1:5432/test

Goal (issue 13): under a 60-second load at the rate limit, every acknowledged request is in
the audit log; killing the gateway process mid-load loses none of them.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

BODY = json.dumps({"inputs": np.full((1, 1, 8, 8), 0.5).tolist()}).encode()
UNRECORDED = "the gateway cannot record requests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _bastion(*args: str) -> list[str]:
    return [sys.executable, "-m", "bastion.cli.main", *args]


class Gateway:
    """``bastion serve`` in a subprocess; started, killed and started again."""

    def __init__(self, policy: Path, port: int, log: Path) -> None:
        self.policy = policy
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self, timeout: float = 180.0) -> float:
        started = time.monotonic()
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                _bastion("serve", "--policy", str(self.policy), "--port", str(self.port)),
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "OMP_NUM_THREADS": "1"},
            )
        while True:
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return time.monotonic() - started
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() - started > timeout:
                self.stop()
                raise SystemExit(f"bastion serve did not start; see {self.log}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Load:
    """Client threads sending predict requests; every answer's request id and status kept."""

    def __init__(self, url: str, key: str, clients: int) -> None:
        self.url = f"{url}/predict"
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
        self.clients = clients
        self.answered: list[tuple[str, int, str]] = []  # (request id, status, detail)
        self.broken = 0  # requests that got no answer (connection refused or cut)
        self.without_id: list[tuple[int, str]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._run) for _ in range(self.clients)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def _run(self) -> None:
        with httpx.Client(timeout=30) as http:
            while not self._stop.is_set():
                try:
                    r = http.post(self.url, content=BODY, headers=self.headers)
                except httpx.TransportError:
                    with self._lock:
                        self.broken += 1
                    time.sleep(0.05)
                    continue
                rid = r.headers.get("x-request-id")
                try:
                    detail = r.json().get("detail", "") if r.status_code != 200 else ""
                except ValueError:
                    detail = r.text[:200]
                with self._lock:
                    if rid is None:  # not an answer of the gateway's (the server's own error)
                        self.without_id.append((r.status_code, detail))
                    else:
                        self.answered.append((rid, r.status_code, detail))


def run(args: argparse.Namespace) -> bool:
    """One run; whether every acknowledged request is in the audit log."""
    from bastion.serve import AuditLog, connect

    folder = Path(tempfile.mkdtemp(prefix="bastion-durability-"))
    database = args.database or f"sqlite:///{folder / 'audit.db'}"
    policy = folder / "policy.yaml"
    policy.write_text(
        yaml.safe_dump(
            {
                "database": database,
                "limits": {"rate": args.rate, "budget": None},
                "output": ["round:decimals=2"],
                "audit": {"durability": args.durability},
            }
        )
    )
    name = f"durability-{os.getpid()}-{int(time.time())}"
    made = subprocess.run(
        _bastion("keys", "create", "--name", name, "--policy", str(policy)),
        capture_output=True,
        text=True,
        check=True,
    )
    key = made.stdout.strip()
    gateway = Gateway(policy, _free_port(), folder / "serve.log")
    startup = gateway.start()
    load = Load(gateway.url, key, args.clients)
    restart = None
    start = time.monotonic()
    try:
        load.start()
        if args.kill:
            # the load runs --seconds while a gateway is up: the restart's time is added
            time.sleep(args.seconds * args.kill_at)
            gateway.kill()
            killed_at = time.monotonic() - start
            restart = (killed_at, gateway.start())
            time.sleep(args.seconds * (1 - args.kill_at))
        else:
            time.sleep(args.seconds)
        load.stop()
    finally:
        gateway.stop()
    elapsed = time.monotonic() - start

    audit = AuditLog(connect(database))
    unrecorded = [a for a in load.answered if a[1] == 503 and a[2].startswith(UNRECORDED)]
    acknowledged = [a for a in load.answered if not (a[1] == 503 and a[2].startswith(UNRECORDED))]
    missing = audit.missing(rid for rid, _, _ in acknowledged)
    statuses = collections.Counter(status for _, status, _ in acknowledged)
    lost = collections.Counter(status for rid, status, _ in acknowledged if rid in missing)
    rows = audit.count(key_id=key.split("_")[1])
    audit.engine.dispose()

    shown = database.split("@")[-1] if "@" in database else database.split(":///")[0]
    print(f"database {shown}, audit.durability {args.durability}, rate limit {args.rate}")
    print(f"{args.clients} clients for {elapsed:.1f} s; gateway start {startup:.1f} s")
    if restart is not None:
        print(f"SIGKILL at {restart[0]:.1f} s; restarted in {restart[1]:.1f} s")
    print(
        f"acknowledged {len(acknowledged)} ("
        + ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        + f"); no answer {load.broken}; 503 unrecorded {len(unrecorded)}; "
        f"answers without a request id {len(load.without_id)}"
    )
    print(
        f"in the audit log: {len(acknowledged) - len(missing)} of {len(acknowledged)}; "
        f"missing {len(missing)}" + (f" ({dict(lost)})" if lost else "")
    )
    print(f"audit rows of the load's key: {rows} (answers cut by the kill may add a few)")
    return not missing and not load.without_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rate", default="100/second", help="the policy's limits.rate")
    parser.add_argument(
        "--database", help="audit database URL (default: a fresh SQLite file; or postgresql://)"
    )
    parser.add_argument(
        "--durability",
        choices=("process", "power"),
        default="process",
        help="the policy's audit.durability (SQLite): process (default) or power",
    )
    parser.add_argument("--kill", action="store_true", help="SIGKILL the gateway mid-load")
    parser.add_argument("--kill-at", type=float, default=0.5, help="when, as a fraction")
    args = parser.parse_args()
    if not 0 < args.kill_at < 1:
        parser.error("--kill-at must be in (0, 1)")
    ok = run(args)
    print("every acknowledged request is in the audit log" if ok else "LOST acknowledged requests")
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
