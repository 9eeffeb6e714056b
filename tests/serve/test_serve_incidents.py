"""Incidents and the playbooks that act on them: the library, ``bastion incident`` and a
running gateway obeying what the CLI switches."""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from bastion.core.errors import ConfigError
from bastion.core.targets import TorchTarget
from bastion.serve import BackgroundServer, Gateway, connect, load_policy
from bastion.serve.detection import Alert
from bastion.serve.incidents import IncidentStore
from bastion.serve.response import ModelVersions, Responder

from .conftest import Client, MakeGateway
from helpers import run

Serve = Callable[..., Client]
FAST_CONTROLS = {"auth": {"key_cache_seconds": 0}, "limits": {"rate": None, "budget": None}}


def _alert(key_id: str | None = "k1", **kw: Any) -> Alert:
    base: dict[str, Any] = {
        "detector": "prada",
        "check": "distances",
        "action": "flag",
        "key_id": key_id,
        "severity": "medium",
        "summary": "synthetic queries",
        "techniques": ("AML.T0024.002", "AML.T0040"),
        "signals": ("synthetic-query-distribution",),
        "evidence": {"shapiro_w": 0.8},
    }
    return Alert(**{**base, **kw})


def batch(n: int = 1) -> list[Any]:
    return np.full((n, 1, 8, 8), 0.5).tolist()


def test_alerts_open_one_incident_per_detector_check_and_key(make_gateway: MakeGateway) -> None:
    store = IncidentStore(make_gateway(FAST_CONTROLS).engine)
    first = store.report(_alert())
    again = store.report(_alert(evidence={"shapiro_w": 0.7}))
    other = store.report(_alert(key_id="k2"))
    assert again.id == first.id != other.id
    assert again.evidence == {"shapiro_w": 0.7}
    assert [e.action for e in again.timeline] == ["alert", "alert"]
    assert first.playbook == "extraction"  # the catalog's, inherited from AML.T0024
    assert store.report(_alert(techniques=("AML.T0040",))).playbook == "extraction"  # same one
    assert store.report(_alert(check="x", techniques=("AML.T0040",))).playbook == "access-abuse"

    store.ack(first.id, note="looking", actor="ana")
    with pytest.raises(ConfigError, match="already acknowledged"):
        store.ack(first.id)
    done = store.resolve(first.id, actor="ana")
    assert done.status == "resolved"
    assert [(e.actor, e.action) for e in done.timeline][-2:] == [
        ("ana", "acknowledge"),
        ("ana", "resolve"),
    ]
    with pytest.raises(ConfigError, match="already resolved"):
        store.resolve(first.id)
    # a resolved incident is not reopened: the same alert later opens a new one
    assert store.report(_alert()).id not in (first.id, other.id)
    assert [i.status for i in store.list(status="resolved")] == ["resolved"]
    with pytest.raises(ConfigError, match="no incident 999"):
        store.get(999)


def test_every_technique_and_signal_a_detector_reports_is_in_the_catalog() -> None:
    import inspect

    from bastion.catalog import load_catalog
    from bastion.serve import detection

    catalog = load_catalog(links=False)
    source = inspect.getsource(detection)
    techniques = set(__import__("re").findall(r'"(AML\.T\d{4}(?:\.\d{3})?)"', source))
    signals = set(__import__("re").findall(r'"([a-z]+(?:-[a-z]+)+)"', source)) & set(
        catalog.signals
    )
    assert techniques >= {"AML.T0024.002", "AML.T0040", "AML.T0043.001"}
    assert techniques <= set(catalog.techniques)
    assert signals >= {"synthetic-query-distribution", "near-duplicate-queries"}


def _policy_file(c: Client, tmp_path: Path) -> str:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump({"database": str(c.gateway.engine.url)}))
    return str(path)


def test_cli_lists_shows_acks_and_acts_on_a_running_gateway(
    serve: Serve, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = serve({**FAST_CONTROLS, "response": {"quarantine_rate": "1/minute"}})
    alice = c.gateway.keys.find("alice")
    incident = c.gateway.incidents.report(_alert(key_id=alice.key_id))
    policy = _policy_file(c, tmp_path)
    ident = str(incident.id)

    code, out, err = run(capsys, "incident", "list", "--policy", policy)
    assert code == 0, err
    assert alice.key_id in out and "AML.T0024.002" in out and "open" in out
    code, out, _ = run(capsys, "incident", "show", ident, "--policy", policy)
    assert "Extract AI Model" in out and "synthetic-query-distribution" in out
    assert "contain" in out and "Throttle the suspected callers" in out  # the catalog playbook
    assert run(capsys, "incident", "ack", ident, "--policy", policy, "--actor", "ana")[0] == 0

    # contain: quarantine the key; the running gateway throttles it to a trickle
    assert c.predict(batch()).status_code == 200
    code, _, err = run(capsys, "incident", "act", ident, "quarantine", "--policy", policy)
    assert code == 0, err
    codes = [c.predict(batch()).status_code for _ in range(3)]
    assert codes == [200, 429, 429]
    assert "quarantined" in c.predict(batch()).json()["detail"]
    run(capsys, "incident", "act", ident, "release", "--policy", policy)
    assert c.predict(batch()).status_code == 200

    # the kill switch, set from another process, reaches the running gateway
    run(capsys, "incident", "act", ident, "kill-switch", "--policy", policy)
    assert c.predict(batch()).status_code == 503
    assert c.http.get("/readyz").json()["checks"]["serving"] is False
    run(capsys, "incident", "act", ident, "kill-switch", "--off", "--policy", policy)
    assert c.predict(batch()).status_code == 200

    # evict: rotate the key (the new secret alone on stdout), then revoke the new one
    code, out, err = run(capsys, "incident", "act", ident, "rotate", "--policy", policy)
    assert code == 0, err
    new_secret = out.strip()
    assert c.predict(batch()).status_code == 401
    assert c.predict(batch(), key=new_secret).status_code == 200
    code, _, err = run(
        capsys, "incident", "act", ident, "revoke", "--key", "alice", "--policy", policy
    )
    assert code == 0, err
    assert c.predict(batch(), key=new_secret).status_code == 401

    assert run(capsys, "incident", "resolve", ident, "--policy", policy)[0] == 0
    code, out, _ = run(capsys, "incident", "show", ident, "--json", "--policy", policy)
    shown = json.loads(out)
    assert shown["status"] == "resolved"
    actions = [(e["actor"], e["action"]) for e in shown["timeline"]]
    assert actions == [
        ("detector:prada", "alert"),
        ("ana", "acknowledge"),
        ("operator", "quarantine"),
        ("operator", "release"),
        ("operator", "kill-switch"),
        ("operator", "kill-switch"),
        ("operator", "rotate"),
        ("operator", "revoke"),
        ("operator", "resolve"),
    ]
    assert shown["timeline"][2]["detail"]["phase"] == "contain"
    assert shown["timeline"][6]["detail"]["phase"] == "evict"
    assert new_secret not in json.dumps(shown)  # never a secret on the timeline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "42"], "no incident 42"),
        (["act", "1", "explode"], "unknown action"),
        (["act", "1", "rollback"], "needs --version"),
        (["act", "1", "rollback", "--version", "7"], "no model version 7"),
        (["act", "1", "release"], "neither quarantined nor blocked"),
        (["list", "--status", "sleeping"], "status must be"),
    ],
)
def test_cli_errors_are_one_line(
    make_gateway: MakeGateway,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    gw = make_gateway(FAST_CONTROLS)
    gw.keys.create("alice")
    gw.incidents.report(_alert(key_id=gw.keys.find("alice").key_id))
    code, _, err = run(capsys, "incident", *args, "--db", str(gw.engine.url))
    assert code == 2, err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


# ---------------------------------------------------------------------- rollback
def _save_versions(cnn: TorchTarget, folder: Path) -> tuple[Path, Path]:
    good = folder / "good.pt"
    torch.save(cnn.model.state_dict(), good)
    broken = copy.deepcopy(cnn.model)
    with torch.no_grad():
        for p in broken.parameters():
            p.zero_()
    bad = folder / "bad.pt"
    torch.save(broken.state_dict(), bad)
    return good, bad


def test_rollback_swaps_the_running_model_and_refuses_a_tampered_file(
    cnn: TorchTarget,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    good, bad = _save_versions(cnn, tmp_path)

    def loader(path: str) -> TorchTarget:
        model = copy.deepcopy(cnn.model)
        model.load_state_dict(torch.load(path, weights_only=True))
        return TorchTarget(model, num_classes=10, bounds=(0.0, 1.0), input_shape=(1, 8, 8))

    engine = connect(f"sqlite:///{tmp_path / 'versions.db'}")
    v_good = ModelVersions(engine).register(good)
    v_bad = ModelVersions(engine).register(bad)
    policy = load_policy(FAST_CONTROLS | {"output": ["labels"]})
    gw = Gateway(loader(str(bad)), policy, engine=engine, loader=loader, version=v_bad.version)
    x = torch.from_numpy(np.random.default_rng(0).random((16, 1, 8, 8)).astype(np.float32))
    expected = cnn(x).argmax(1).tolist()
    incident = gw.incidents.report(_alert(detector="drift", check="accuracy", key_id=None))
    with BackgroundServer(gw) as server:
        c = Client(server)
        assert c.predict(x.tolist()).json()["outputs"] == [0] * 16  # the broken model
        Responder(gw.engine).rollback(incident.id, v_good.version)
        assert c.predict(x.tolist()).json()["outputs"] == expected
        assert gw.version == v_good.version

        good.write_bytes(good.read_bytes() + b"tampered")
        with pytest.raises(ConfigError, match="no longer matches its recorded hash"):
            Responder(gw.engine).rollback(incident.id, v_good.version)
        # a switch set behind the responder's back: the gateway checks the hash itself
        gw.controls.set("model-version", str(v_bad.version), reason="test")
        torch.save(torch.nn.Linear(1, 1).state_dict(), bad)
        with caplog.at_level(logging.ERROR, logger="bastion.serve"):
            assert c.predict(x.tolist()).json()["outputs"] == expected  # still the good one
        assert any(r.getMessage() == "rollback-refused" for r in caplog.records)
    events = [e.action for e in gw.incidents.get(incident.id).timeline]
    gw.close()
    assert events == ["alert", "rollback"]


def test_rescan_records_the_command_and_its_outcome(
    make_gateway: MakeGateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gw = make_gateway(FAST_CONTROLS)
    incident = gw.incidents.report(_alert(key_id=None))
    db = str(gw.engine.url)
    out = tmp_path / "rescan"
    common = ["--target", "digits-cnn", "--out", str(out), "--db", db]
    code, _, err = run(
        capsys, "incident", "act", str(incident.id), "rescan", *common, "--record-only"
    )
    assert code == 0, err
    assert not out.exists()
    scan = ["--attacks", "fgsm", "--samples", "4", "--eps", "0.1", "--format", "json"]
    code, _, err = run(
        capsys, "incident", "act", str(incident.id), "rescan", *common,
        *[f"--scan-arg={a}" for a in scan],
    )  # fmt: skip
    assert code == 0, err
    timeline = gw.incidents.get(incident.id).timeline
    assert [e.action for e in timeline] == ["alert", "rescan", "rescan", "rescan-finished"]
    assert timeline[1].detail["started"] is False
    assert "bastion scan --target digits-cnn" in timeline[2].detail["command"]
    finished = timeline[3].detail
    assert finished["exit_code"] == 0 and Path(finished["report"]).is_file()
