"""``bastion serve`` and ``bastion keys`` end to end, and bastion red-teaming its own gateway."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from bastion.serve import AuditLog, KeyStore, connect

from helpers import run

POLICY = {
    "auth": {"key_cache_seconds": 0},
    "limits": {"rate": None, "budget": "600/hour"},
    "output": ["round:decimals=2"],
}


def _policy(folder: Path, **overrides: Any) -> Path:
    path = folder / "policy.yaml"
    body = {**POLICY, "database": f"sqlite:///{folder / 'serve.db'}", **overrides}
    path.write_text(yaml.safe_dump(body))
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------- keys
def test_keys_create_list_revoke_rotate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    policy = str(_policy(tmp_path))
    code, out, err = run(capsys, "keys", "create", "--name", "alice", "--policy", policy)
    assert code == 0, err
    secret = out.strip()
    assert secret.startswith("bst_") and len(out.splitlines()) == 1  # alone on stdout
    assert "not shown again" in err
    store = KeyStore(connect(f"sqlite:///{tmp_path / 'serve.db'}"), cache_seconds=0)
    assert store.verify(secret) is not None

    code, out, _ = run(capsys, "keys", "list", "--policy", policy)
    assert code == 0 and "alice" in out and "predict" in out and secret[17:] not in out

    code, out, err = run(capsys, "keys", "rotate", "alice", "--policy", policy)
    assert code == 0, err
    rotated = out.strip()
    assert store.verify(secret) is None and store.verify(rotated) is not None

    code, _, err = run(capsys, "keys", "revoke", "alice", "--policy", policy)
    assert code == 0 and "revoked alice" in err
    assert store.verify(rotated) is None
    code, out, _ = run(capsys, "keys", "list", "--policy", policy)
    assert out.count("revoked") == 2 and "rotated to" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["keys", "create", "--name", "a b"], "key name"),
        (["keys", "create", "--name", "x", "--scope", "root"], "unknown scope"),
        (["keys", "revoke", "nobody"], "no key named"),
        (["keys", "list", "--db", "mysql://h/db"], "sqlite"),
    ],
)
def test_keys_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    extra = [] if "--db" in args else ["--policy", str(_policy(tmp_path))]
    code, _, err = run(capsys, *args, *extra)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"limits": {"rate": "fast"}}, "limits.rate"),
        ({"limit": {}}, "limit: Extra inputs"),
        ({"output": ["squeeze:bits=4"]}, "not a postprocessor"),
        ({"output": ["nonesuch"]}, "nonesuch"),
        ({"inputs": {"max_batch": 0}}, "inputs.max_batch"),
        ({"database": "mysql://x/y"}, "database"),
        ({"limits": {"storage": "memcached://x"}}, "storage"),
    ],
)
def test_bad_policies_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, policy: dict[str, Any], message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(policy))
    code, _, err = run(capsys, "serve", "--policy", str(path))
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_missing_serve_extra_names_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)
    code, _, err = run(capsys, "serve")
    assert code == 2
    assert "bastion-ml[serve]" in err and len(err.strip().splitlines()) == 1


def test_light_imports_stay_light() -> None:
    code = (
        "import sys, bastion, bastion.serve, bastion.cli.main; "
        "heavy = [m for m in ('fastapi', 'sqlalchemy', 'uvicorn', 'limits', 'torch') "
        "if m in sys.modules]; sys.exit(1 if heavy else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# ---------------------------------------------------------------------- the real command
@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, demo: Any) -> Iterator[dict[str, Any]]:
    """``bastion serve`` in a subprocess on the demo, with a policy that rounds and budgets."""
    folder = tmp_path_factory.mktemp("served")
    policy = _policy(folder)
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    log = (folder / "serve.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "serve",
            "--policy",
            str(policy),
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"bastion serve did not start: {(folder / 'serve.log').read_text()}")
        time.sleep(0.2)
    try:
        yield {"url": url, "policy": policy, "folder": folder, "proc": proc}
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()


def _key(capsys: pytest.CaptureFixture[str], policy: Path, name: str) -> str:
    code, out, err = run(capsys, "keys", "create", "--name", name, "--policy", str(policy))
    assert code == 0, err
    return out.strip()


def test_serve_command_answers_with_a_cli_key_and_refuses_it_once_revoked(
    capsys: pytest.CaptureFixture[str], served: dict[str, Any]
) -> None:
    key = _key(capsys, served["policy"], "cli-user")
    headers = {"Authorization": f"Bearer {key}"}
    body = {"inputs": [[[[0.5] * 8] * 8]]}
    r = httpx.post(f"{served['url']}/predict", json=body, headers=headers)
    assert r.status_code == 200, r.text
    (scores,) = r.json()["outputs"]
    assert len(scores) == 10 and all(round(v, 2) == v for v in scores)
    run(capsys, "keys", "revoke", "cli-user", "--policy", str(served["policy"]))
    assert httpx.post(f"{served['url']}/predict", json=body, headers=headers).status_code == 401
    log = (served["folder"] / "serve.log").read_text()
    lines = [json.loads(x) for x in log.splitlines() if x.startswith("{")]
    ids = {line.get("request_id") for line in lines if line.get("event") == "predict"}
    assert r.headers["x-request-id"] in ids
    assert key[17:] not in log


def test_bastion_red_teams_its_own_gateway(
    capsys: pytest.CaptureFixture[str], served: dict[str, Any], tmp_path: Path
) -> None:
    """A scan through the gateway sees rounded scores; a bigger one is stopped by the budget."""
    url = f"{served['url']}/predict"
    fast = ["--data", "digits", "--attacks", "square", "--eps", "0.2", "--retries", "0"]
    small = _key(capsys, served["policy"], "red-team-small")
    code, _, err = run(
        capsys, "scan", "--target", url, "--header", f"Authorization: Bearer {small}",
        *fast, "--samples", "8", "--max-queries", "20", "--out", str(tmp_path / "small"),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "small" / "report.json").read_text())
    assert report["target"]["access"] == "score-based"
    assert small not in (tmp_path / "small" / "report.json").read_text()

    big = _key(capsys, served["policy"], "red-team-big")
    code, _, err = run(
        capsys, "scan", "--target", url, "--header", f"Authorization: Bearer {big}",
        *fast, "--samples", "40", "--max-queries", "200", "--out", str(tmp_path / "big"),
    )  # fmt: skip
    assert code != 0
    assert "429" in err and "Traceback" not in err

    db = connect(f"sqlite:///{served['folder'] / 'serve.db'}")
    audit = AuditLog(db)
    keys = {k.name: k.key_id for k in KeyStore(db).list()}
    small_rows = audit.rows(key_id=keys["red-team-small"])
    big_rows = audit.rows(key_id=keys["red-team-big"])
    db.dispose()
    # the small scan ran within its budget, every query of it answered and logged
    assert small_rows and all(r["status"] == 200 for r in small_rows)
    # the big one got exactly its budget's worth of answers and no more
    answered = sum(r["n_inputs"] for r in big_rows if r["status"] == 200)
    assert 0 < answered <= 600
    refused = [r for r in big_rows if r["decision"] == "over-budget"]
    assert refused and answered + refused[0]["n_inputs"] > 600
