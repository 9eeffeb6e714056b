"""Campaigns: the file, the store, the runner, resuming, retries, engines, sharding, the CLI."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml

from bastion.campaign import Store, expand, load_campaign, make_engine, run_campaign
from bastion.campaign.engines import Engine, LocalEngine
from bastion.campaign.runner import block_key, plan_tasks
from bastion.campaign.spec import CampaignSpec, content_hash, generated_schema, schema
from bastion.core.errors import ConfigError

from helpers import PredictHandler, postgres_ok, postgres_schema, run, serve_http

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "campaign" / "campaign.yaml"


def write(tmp: Path, spec: dict[str, Any], name: str = "campaign.yaml") -> Path:
    path = tmp / name
    path.write_text(yaml.safe_dump(spec))
    return path


def small(name: str = "small", *, samples: int = 30, shards: int = 1) -> dict[str, Any]:
    """Two demo models x fgsm at two settings x a loss-threshold membership attack."""
    return {
        "name": name,
        "retries": 1,
        "targets": [
            {"name": "cnn", "target": "digits-cnn"},
            {"name": "mlp", "target": "digits-mlp"},
        ],
        "assessments": [
            {
                "name": "evasion",
                "kind": "evasion",
                "attacks": ["fgsm"],
                "samples": samples,
                "shards": shards,
                "matrix": {"eps": [[0.05], [0.1, 0.2]]},
            },
            {"name": "membership", "kind": "membership", "attacks": ["loss-threshold"]},
        ],
    }


def robust(payload: dict[str, Any]) -> dict[float, tuple[int, int]]:
    """``{eps: (robust, inputs)}`` of a stored evasion cell (its overall robust accuracy)."""
    (a,) = payload["assessments"]
    return {
        m["at"]["epsilon"]: tuple(m["count"])
        for m in a["metrics"]
        if m["name"] == "robust_accuracy" and "access" not in m["at"]
    }


# ------------------------------------------------------------------------------ the file
def test_the_published_schema_is_the_models_schema() -> None:
    assert schema() == generated_schema()


def test_the_example_campaign_is_valid_and_expands_to_its_matrix() -> None:
    spec, root = load_campaign(EXAMPLE)
    cells = expand(spec, root)
    settings = 1
    per_target = sum(
        math.prod(len(v) for v in a.matrix.values()) if a.matrix else settings
        for a in spec.assessments
    )
    assert len(cells) == len(spec.targets) * per_target >= 12
    assert len({c.key for c in cells}) == len(cells)
    # the same file gives the same keys: a rerun finds its cells
    assert [c.key for c in expand(*load_campaign(EXAMPLE))] == [c.key for c in cells]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"assessments": [{"name": "e", "kind": "evasion", "sampels": 10}]}, "sampels"),
        ({"assessments": [{"name": "e", "kind": "evashun"}]}, "kind"),
        ({"targets": []}, "targets"),
        (
            {"targets": [{"name": "a", "target": "x"}, {"name": "a", "target": "y"}]},
            "two targets are called a",
        ),
        (
            {"assessments": [{"name": "e", "kind": "evasion", "matrix": {"steps": [1]}}]},
            "does not have",
        ),
        ({"assessments": [{"name": "e", "kind": "evasion", "samples": 0}]}, "samples"),
        ({"retries": -1}, "retries"),
    ],
)
def test_a_wrong_campaign_file_is_one_clear_error(
    tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, {**small(), **change})
    with pytest.raises(ConfigError, match=message):
        expand(*load_campaign(path))


def test_an_invalid_matrix_value_is_refused_naming_the_setting(tmp_path: Path) -> None:
    spec = small()
    spec["assessments"][0]["matrix"] = {"samples": [10, -5]}
    spec_obj, root = load_campaign(write(tmp_path, spec))
    with pytest.raises(ConfigError, match=r"matrix setting \{'samples': -5\}"):
        expand(spec_obj, root)


def test_not_yaml_and_missing_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_campaign(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError, match="no such file"):
        load_campaign(tmp_path / "none.yaml")


def test_keys_follow_the_model_bytes_the_data_and_the_settings(tmp_path: Path) -> None:
    model = tmp_path / "model.onnx"
    model.write_bytes(b"version one")
    spec = {
        "name": "keys",
        "targets": [{"name": "m", "target": "model.onnx", "data": "digits"}],
        "assessments": [{"name": "e", "kind": "evasion", "matrix": {"samples": [10, 20]}}],
    }
    path = write(tmp_path, spec)
    first = [c.key for c in expand(*load_campaign(path))]
    assert len(set(first)) == 2  # two settings, two cells
    assert [c.key for c in expand(*load_campaign(path))] == first
    model.write_bytes(b"version two")  # the model retrained: every cell is new
    second = [c.key for c in expand(*load_campaign(path))]
    assert not set(first) & set(second)
    spec["targets"][0]["data"] = "iris"
    third = [c.key for c in expand(*load_campaign(write(tmp_path, spec)))]
    assert not set(third) & set(second)
    # a file's name does not matter, its bytes do
    assert content_hash(str(model)) != content_hash(str(tmp_path / "campaign.yaml"))
    (tmp_path / "copy.onnx").write_bytes(model.read_bytes())
    assert content_hash(str(model)) == content_hash(str(tmp_path / "copy.onnx"))


# ------------------------------------------------------------------------------ the store
def test_the_migrations_make_exactly_the_tables_the_store_uses(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from bastion.campaign.store import METADATA

    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    with store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), METADATA)
        version = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    assert diff == []
    assert version == "0001"
    # opening again finds it current and changes nothing
    Store.open(f"sqlite:///{tmp_path / 'c.db'}").close()


def test_runs_are_named_by_campaign_id_and_age(tmp_path: Path) -> None:
    spec, root = load_campaign(write(tmp_path, small()))
    cells = expand(spec, root)
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    with pytest.raises(ConfigError, match="the store is empty"):
        store.run()
    ids = [store.new_run("small", {}, cells, engine="local") for _ in range(3)]
    other = store.new_run("other", {}, cells[:1], engine="local")
    assert store.run("small").id == ids[2]
    assert store.run("small~1").id == ids[1]
    assert store.run(f"#{ids[0]}").id == ids[0]
    assert store.run().id == other
    assert len(store.cells(ids[0])) == len(cells)
    with pytest.raises(ConfigError, match="campaigns here: other, small"):
        store.run("smal")
    with pytest.raises(ConfigError, match="#N takes"):
        store.run("#x")


def test_bad_store_urls_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give sqlite"):
        Store.open("mysql://u:secret@host/db")
    with pytest.raises(ConfigError, match="does not exist"):
        Store.open(f"sqlite:///{tmp_path / 'no' / 'c.db'}")
    with pytest.raises(ConfigError) as exc:
        Store.open("postgresql://user:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(exc.value)


@pytest.fixture
def pg_url() -> Iterator[str]:
    if not postgres_ok():
        pytest.skip("no PostgreSQL database 'test' on 127.0.0.1:5432 (user postgres)")
    with postgres_schema("bastion_campaign") as url:
        yield url


@pytest.mark.postgres
def test_a_campaign_runs_and_resumes_on_postgresql(tmp_path: Path, pg_url: str) -> None:
    spec, root = load_campaign(write(tmp_path, small()))
    store = Store.open(pg_url)
    first = run_campaign(spec, root, store, LocalEngine())
    assert first.done == first.cells == 6 and first.computed == 6
    again = run_campaign(spec, root, Store.open(pg_url), LocalEngine())
    assert again.computed == 0 and again.skipped == 6 and again.done == 6


# ------------------------------------------------------------------------------ running
def test_a_campaign_runs_every_cell_and_a_rerun_computes_none(tmp_path: Path) -> None:
    spec, root = load_campaign(write(tmp_path, small()))
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    first = run_campaign(spec, root, store, LocalEngine())
    assert (first.cells, first.done, first.computed, first.failed) == (6, 6, 6, {})
    results = store.results(c.key for c in expand(spec, root))
    assert all(r.status == "done" and r.attempts == 1 for r in results.values())
    # fgsm fools more inputs at a larger epsilon, and the stored figures say so
    cnn = expand(spec, root)[1]
    figures = robust(results[cnn.key].payload or {})
    assert figures[0.2][0] <= figures[0.1][0] < figures[0.1][1]
    again = run_campaign(spec, root, store, LocalEngine())
    assert (again.computed, again.skipped, again.done) == (0, 6, 6)
    # another campaign asking for the same cells finds them too
    spec2 = CampaignSpec.model_validate({**spec.model_dump(), "name": "other"})
    assert run_campaign(spec2, root, store, LocalEngine()).computed == 0


def test_a_crashing_cell_is_retried_then_failed_and_the_others_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.campaign import tasks

    calls: dict[str, int] = {}
    real = tasks._run

    def flaky(task: tasks.Task) -> dict[str, Any]:
        calls[task.label] = calls.get(task.label, 0) + 1
        if task.label == "mlp/membership":
            raise RuntimeError("out of luck")
        if task.label == "cnn/membership" and calls[task.label] == 1:
            raise OSError("a passing glitch")
        return real(task)

    monkeypatch.setattr(tasks, "_run", flaky)
    spec, root = load_campaign(write(tmp_path, {**small(), "retries": 2}))
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    summary = run_campaign(spec, root, store, LocalEngine())
    assert calls["mlp/membership"] == 3  # the first try and two retries
    assert calls["cnn/membership"] == 2  # the glitch passed on the retry
    assert summary.done == 5
    assert list(summary.failed) == ["mlp/membership"]
    assert "RuntimeError: out of luck" in summary.failed["mlp/membership"]
    # a refused setting (a bastion error) is not retried: retrying cannot change it
    calls.clear()
    bad = small("bad")
    bad["assessments"][0]["attacks"] = ["square"]
    bad["assessments"][0]["settings"] = {"square": {"max_queries": -1}}
    spec, root = load_campaign(write(tmp_path, bad, "bad.yaml"))
    failed = run_campaign(spec, root, store, LocalEngine()).failed
    refused = {k: v for k, v in failed.items() if "evasion" in k}
    assert len(refused) == 4
    assert all("max_queries must be at least 1" in v for v in refused.values())
    assert all(n == 1 for label, n in calls.items() if "evasion" in label)


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.add(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_campaign_killed_mid_run_repeats_no_finished_cell(tmp_path: Path) -> None:
    """SIGKILL the command while it runs on a process pool: its workers go with it, and the
    rerun computes exactly the cells not done."""
    import sqlite3

    spec = small("killed", samples=200)
    spec["assessments"][0]["attacks"] = ["pgd"]
    spec["assessments"][0]["settings"] = {"pgd": {"steps": 100, "early_stop": False}}
    path = write(tmp_path, spec)
    db = tmp_path / "c.db"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "campaign",
            "run",
            str(path),
            "--store",
            f"sqlite:///{db}",
            "--out",
            str(tmp_path / "r"),
            "--engine",
            "processes",
            "--workers",
            "2",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if db.exists():
                try:
                    with sqlite3.connect(db, timeout=1) as conn:
                        (n,) = conn.execute(
                            "SELECT count(*) FROM results WHERE status = 'done'"
                        ).fetchone()
                except sqlite3.OperationalError:  # the tables are not made yet
                    n = 0
                if n >= 2:
                    break
            time.sleep(0.02)
        assert proc.poll() is None, "the campaign ended before it could be killed"
        workers = _children(proc.pid)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert workers, "the pool had no worker processes"
    deadline = time.monotonic() + 10
    while any(_alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(w) for w in workers), "a pool worker outlived the killed campaign"
    store = Store.open(f"sqlite:///{db}")
    cells = expand(*load_campaign(path))
    done_at_kill = store.done(c.key for c in cells)
    assert 2 <= len(done_at_kill) < len(cells)
    before = {k: r.updated for k, r in store.results(done_at_kill).items()}
    summary = run_campaign(*load_campaign(path), store, LocalEngine())
    assert summary.skipped == len(done_at_kill)
    assert summary.computed == len(cells) - len(done_at_kill)
    assert summary.done == len(cells)
    after = store.results(done_at_kill)
    assert {k: r.updated for k, r in after.items()} == before
    assert all(r.attempts == 1 for r in after.values())


# ------------------------------------------------------------------------------ sharding
def test_a_sharded_cell_is_blocks_and_a_merge_equal_to_a_sharded_scan(tmp_path: Path) -> None:
    from bastion.assess.sharded import sharded_scan
    from bastion.assess.specs import load_target_and_data
    from bastion.core.threat import Threat

    spec, root = load_campaign(write(tmp_path, small("sharded", samples=45, shards=3)))
    cells = [c for c in expand(spec, root) if c.kind == "evasion"][:2]
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    tasks, _ = plan_tasks(cells, store)
    assert [t.step for t in tasks] == ["block"] * 6
    summary = run_campaign(spec, root, store, LocalEngine(), cells=cells)
    assert summary.computed == 8  # three blocks and a merge per cell
    assert store.done(block_key(cells[0].key, b, 3) for b in range(3)) == {
        block_key(cells[0].key, b, 3) for b in range(3)
    }
    target, data = load_target_and_data("digits-cnn")
    for cell in cells:
        eps = tuple(cell.assessment.eps)
        direct = sharded_scan(
            target,
            data,
            Threat(epsilons=eps, knowledge=target.access),
            samples=45,
            seed=0,
            block=15,
            attacks=["fgsm"],
        )
        stored = robust(store.results([cell.key])[cell.key].payload or {})
        assert stored == {p.epsilon: (p.robust, p.total) for p in direct.sweep}


# ------------------------------------------------------------------------------ engines
def _figures(store: Store, cells: list[Any]) -> dict[str, Any]:
    found = store.results(c.key for c in cells)
    out = {}
    for c in cells:
        payload = found[c.key].payload or {}
        (a,) = payload["assessments"]
        out[c.label] = [(m["name"], m["at"], m["value"]) for m in a["metrics"]]
    return out


def _engine_figures(tmp_path: Path, engine: Engine, name: str) -> dict[str, Any]:
    spec, root = load_campaign(write(tmp_path, small(samples=40, shards=2), f"{name}.yaml"))
    store = Store.open(f"sqlite:///{tmp_path / (name + '.db')}")
    try:
        summary = run_campaign(spec, root, store, engine)
    finally:
        engine.close()
    assert summary.done == summary.cells == 6, summary.failed
    return _figures(store, expand(spec, root))


def test_a_process_pool_gives_the_figures_of_one_process(tmp_path: Path) -> None:
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers run one thread each: the same arithmetic
    try:
        local = _engine_figures(tmp_path, LocalEngine(), "local")
    finally:
        torch.set_num_threads(threads)
    pool = _engine_figures(tmp_path, make_engine("processes", workers=2), "pool")
    assert pool == local


@pytest.fixture(scope="module")
def ray_engine() -> Iterator[Engine]:
    pytest.importorskip(
        "ray", reason="Ray is not installed (pip install 'bastion-ml[distributed]')"
    )
    try:
        engine = make_engine("ray", workers=2)
    except ConfigError as exc:
        pytest.skip(f"a local Ray cluster could not start here: {exc}")
    yield engine
    engine.close()


def test_a_local_ray_cluster_runs_the_campaign_with_the_same_figures(
    tmp_path: Path, ray_engine: Engine
) -> None:
    import torch

    assert ray_engine.workers == 2
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = _engine_figures(tmp_path, LocalEngine(), "local")
    finally:
        torch.set_num_threads(threads)
    spec, root = load_campaign(write(tmp_path, small(samples=40, shards=2), "ray.yaml"))
    store = Store.open(f"sqlite:///{tmp_path / 'ray.db'}")
    summary = run_campaign(spec, root, store, ray_engine)
    # four evasion cells of two blocks and a merge each, and two membership cells
    assert summary.done == 6 and summary.computed == 4 * 3 + 2
    assert _figures(store, expand(spec, root)) == local


def test_shadow_models_are_ray_tasks_of_their_own(
    tmp_path: Path, ray_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A membership cell with shadow models: each shadow goes through the task map, and
    under Ray that map is Ray's."""
    import ray

    from bastion.campaign import engines

    spec = {
        "name": "shadows",
        "targets": [{"name": "mlp", "target": "digits-mlp"}],
        "assessments": [
            {
                "name": "membership",
                "kind": "membership",
                "attacks": ["shadow"],
                "settings": {"shadow": {"shadows": 3, "epochs": 3}},
            }
        ],
    }
    spec_obj, root = load_campaign(write(tmp_path, spec))
    (cell,) = expand(spec_obj, root)
    from bastion.campaign.runner import _task

    task = _task(cell, "run", False)

    @ray.remote(num_cpus=1)
    def count_inner(task: Any) -> tuple[Any, int]:
        from bastion.campaign import engines as inner_engines
        from bastion.core.parallel import use_map

        seen: list[Any] = []

        def counting(fn: Any, items: Any) -> list[Any]:
            items = list(items)
            seen.extend(items)
            return inner_engines._ray_map(fn, items)

        with use_map(counting):
            outcome = inner_engines.execute(task)
        return outcome, len(seen)

    outcome, inner = ray.get(count_inner.remote(task))
    assert outcome.error is None
    assert inner == 3
    local = engines.execute(task)
    assert local.payload == outcome.payload or _same_metrics(local.payload, outcome.payload)


def _same_metrics(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    def metrics(p: dict[str, Any] | None) -> list[Any]:
        return [(m["name"], m["at"], m["value"]) for m in (p or {})["assessments"][0]["metrics"]]

    return metrics(a) == metrics(b)


def test_tasks_ask_for_a_gpu_only_where_one_is_present_and_the_model_can_use_it(
    tmp_path: Path,
) -> None:
    spec = small()
    spec["targets"][1]["device"] = "cpu"
    spec_obj, root = load_campaign(write(tmp_path, spec))
    cells = expand(spec_obj, root)
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    with_gpu, _ = plan_tasks(cells, store, gpus=1)
    assert {t.label.split("/")[0]: t.gpu for t in with_gpu} == {"cnn": True, "mlp": False}
    without, _ = plan_tasks(cells, store, gpus=0)
    assert not any(t.gpu for t in without)


def test_bad_engine_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="--engine takes"):
        make_engine("threads")
    with pytest.raises(ConfigError, match="--workers"):
        make_engine("processes", workers=0)
    with pytest.raises(ConfigError, match="--address names a Ray cluster"):
        make_engine("processes", address="ray://x:10001")


# ------------------------------------------------------------------------------ the CLI
def test_plan_prints_every_cell_and_an_estimate_running_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path, small())
    code, out, err = run(capsys, "campaign", "plan", str(path))
    assert code == 0, err
    assert "6 cells" in out
    assert out.count("│ to run │") == 6
    assert "estimate:" in out
    assert not (tmp_path / "campaign.db").exists()


def test_run_status_report_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = small("cli")
    spec["assessments"].append(
        {"name": "bad", "kind": "evasion", "attacks": ["hopskipjump"], "norm": "l0"}
    )
    path = write(tmp_path, spec)
    code, out, err = run(capsys, "campaign", "run", str(path), "--out", "rep")
    assert code == 1  # a cell failed: the run says so with its exit status
    assert "6 of 8 cells done" in out
    assert "2 cells failed" in err
    assert {p.name for p in (tmp_path / "rep").iterdir()} >= {
        "report.html",
        "campaign.json",
        "report.md",
        "report.sarif",
    }
    code, out, _ = run(capsys, "campaign", "status", "cli")
    assert code == 0
    assert "6 done, 2 failed" in out
    assert "failed: cnn/bad" in out and "hopskipjump" in out
    code, out, _ = run(capsys, "campaign", "report", "cli", "--out", "again", "--format", "md")
    assert code == 0
    assert (tmp_path / "again" / "report.md").is_file()
    assert not (tmp_path / "again" / "report.html").exists()
    report = json.loads((tmp_path / "rep" / "campaign.json").read_text())
    assert len(report["matrix"]["targets"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["campaign", "run", "missing.yaml"], "no such file"),
        (["campaign", "run", "c.yaml", "--engine", "spark"], "--engine takes"),
        (["campaign", "run", "c.yaml", "--store", "mysql://x"], "give sqlite"),
        (["campaign", "run", "c.yaml", "--format", "pdf"], "--format takes"),
        (["campaign", "status"], "no campaign store"),
        (["campaign", "status", "--store", "sqlite:///none.db"], "no campaign store"),
        (["campaign", "plan", "c.yaml", "--engine", "spark"], "--engine takes"),
    ],
)
def test_cli_mistakes_are_one_line_errors(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path, small(), "c.yaml")
    code, _, err = run(capsys, *args)
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err


def test_a_dry_run_stores_a_thousand_cell_plan(tmp_path: Path) -> None:
    spec = {
        "name": "big",
        "targets": [{"name": f"t{i}", "target": "digits-cnn"} for i in range(10)],
        "assessments": [
            {
                "name": f"e{j}",
                "kind": "evasion",
                "matrix": {"samples": list(range(10, 110, 10)), "seed": [0]},
            }
            for j in range(10)
        ],
    }
    spec_obj, root = load_campaign(write(tmp_path, spec))
    cells = expand(spec_obj, root)
    assert len(cells) == 1000
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    run_id = store.new_run("big", spec_obj.model_dump(mode="json"), cells, engine=None)
    assert [r.key for r in store.cells(run_id)] == [c.key for c in cells]


# ------------------------------------------------------------------------------ diff
def test_diff_fails_on_a_significant_regression_of_a_retrained_model_never_on_noise(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two runs of one campaign file: the model file replaced by a worse one is a
    regression (exit 1); the same model run again is no change (exit 0)."""
    import torch

    import bastion

    monkeypatch.chdir(tmp_path)
    good, _ = bastion.load_demo("digits-cnn", device="cpu")
    torch.save(good.model.state_dict(), tmp_path / "model.pt")
    spec = {
        "name": "versions",
        "targets": [
            {
                "name": "m",
                "target": "model.pt",
                "data": "digits",
                "arch": "bastion.zoo.models:SmallCNN",
            }
        ],
        "assessments": [
            {
                "name": "evasion",
                "kind": "evasion",
                "attacks": ["fgsm"],
                "eps": [0.05],
                "samples": 300,
            }
        ],
    }
    path = write(tmp_path, spec)
    assert run(capsys, "campaign", "run", str(path))[0] == 0
    # the retrained model: its weights damaged, it is fooled far more often
    torch.manual_seed(0)
    state = {k: v + 1.5 * v.std() * torch.randn_like(v) for k, v in good.model.state_dict().items()}
    torch.save(state, tmp_path / "model.pt")
    code, out, _ = run(capsys, "campaign", "run", str(path))
    assert code == 0 and "1 tasks computed now" in out
    code, out, err = run(capsys, "campaign", "diff", "versions~1", "versions", "--out", "d")
    figures = [
        robust(r.payload or {})
        for r in Store.open("sqlite:///campaign.db")
        .results(
            c.key for run_id in (1, 2) for c in Store.open("sqlite:///campaign.db").cells(run_id)
        )
        .values()
    ]
    assert code == 1, (out + err, figures)
    assert "regressed" in out and "robust accuracy" in out
    assert "significant regressions" in err
    diff = json.loads((tmp_path / "d" / "diff.json").read_text())
    assert diff["regressions"] and diff["regressions"][0]["cell"] == "m/evasion"
    assert "regressions**" in (tmp_path / "d" / "diff.md").read_text()
    # the same model again: the cell is found done, and nothing changed
    code, out, _ = run(capsys, "campaign", "run", str(path))
    assert code == 0 and "0 tasks computed now" in out
    code, out, _ = run(capsys, "campaign", "diff", "versions~1", "versions")
    assert code == 0
    assert "no significant change" in out


def test_poisoning_hardening_and_inversion_cells_run_their_assessments(tmp_path: Path) -> None:
    spec = {
        "name": "kinds",
        "targets": [{"name": "mlp", "target": "digits-mlp"}],
        "assessments": [
            {
                "name": "trojan",
                "kind": "poisoning",
                "attack": "badnets",
                "params": {"rate": 0.05},
                "counts": [5, 40],
                "epochs": 3,
            },
            {
                "name": "fast-at",
                "kind": "hardening",
                "method": "fast-at:epochs=2",
                "eps": [0.1],
                "samples": 40,
            },
            {
                "name": "inversion",
                "kind": "inversion",
                "attacks": ["mi-face"],
                "settings": {"mi-face": {"steps": 20}},
            },
        ],
    }
    spec_obj, root = load_campaign(write(tmp_path, spec))
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    summary = run_campaign(spec_obj, root, store, LocalEngine())
    assert summary.done == 3, summary.failed
    cells = expand(spec_obj, root)
    found = {c.assessment.name: store.results([c.key])[c.key].payload for c in cells}
    (poison,) = found["trojan"]["assessments"]  # type: ignore[index]
    assert poison["family"] == "poisoning"
    names = {m["name"] for m in poison["metrics"]}
    assert {"attack_success_rate", "clean_accuracy"} <= names
    (curve,) = [x for x in poison["artifacts"] if x["name"] == "susceptibility"]
    assert curve["data"]["series"][0]["x"] == [5, 40]  # one retrained model per point
    (hardened,) = found["fast-at"]["assessments"]  # type: ignore[index]
    assert hardened["family"] == "hardening"
    assert {"before", "after"} <= set(hardened["details"])
    (inverted,) = found["inversion"]["assessments"]  # type: ignore[index]
    assert inverted["family"] == "inversion"
    assert inverted["metrics"]


def test_status_watch_returns_once_every_cell_is_finished(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    spec = small("watched")
    spec["assessments"] = spec["assessments"][1:]
    path = write(tmp_path, spec)
    assert run(capsys, "campaign", "run", str(path))[0] == 0
    code, out, _ = run(capsys, "campaign", "status", "watched", "--watch", "--interval", "0.1")
    assert code == 0
    assert "2 done, 0 failed, 0 running, 0 pending of 2 cells" in " ".join(out.split())


# ------------------------------------------------------------------------------ endpoints
@pytest.fixture
def token_server(logreg: Any) -> Iterator[str]:
    """A predict endpoint on loopback that answers only a bearer token."""

    class Guarded(PredictHandler):
        model = logreg

        def do_POST(self) -> None:
            if self.headers.get("Authorization") != "Bearer s3cret-t0ken":
                self.send_response(401)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super().do_POST()

    with serve_http(Guarded) as url:
        yield url


def test_an_endpoint_with_a_credential_from_the_environment(
    tmp_path: Path, token_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = {
        "name": "remote",
        "retries": 0,
        "targets": [
            {
                "name": "api",
                "target": token_server,
                "data": "digits",
                "headers": {"Authorization": "Bearer ${BASTION_TEST_TOKEN}"},
                "query_budget": 20000,
            }
        ],
        "assessments": [
            {
                "name": "evasion",
                "kind": "evasion",
                "attacks": ["square"],
                "settings": {"square": {"max_queries": 50}},
                "eps": [0.2],
                "samples": 20,
            }
        ],
    }
    path = write(tmp_path, spec)
    db = tmp_path / "c.db"
    # the variable unset: the cell fails naming it, and nothing is retried
    monkeypatch.delenv("BASTION_TEST_TOKEN", raising=False)
    store = Store.open(f"sqlite:///{db}")
    failed = run_campaign(*load_campaign(path), store, LocalEngine()).failed
    assert "BASTION_TEST_TOKEN" in failed["api/evasion"]
    monkeypatch.setenv("BASTION_TEST_TOKEN", "s3cret-t0ken")
    summary = run_campaign(*load_campaign(path), store, LocalEngine())
    assert summary.done == 1, summary.failed
    (cell,) = expand(*load_campaign(path))
    payload = store.results([cell.key])[cell.key].payload or {}
    assert robust(payload)[0.2][1] > 0
    # the secret is in no row of the store, and not in the file
    with sqlite3_rows(db) as rows:
        assert not any("s3cret-t0ken" in str(row) for row in rows)
    # a credential written into the file itself is refused, without echoing it
    spec["targets"][0]["headers"] = {"Authorization": "Bearer hunter2"}
    with pytest.raises(ConfigError, match=r"\$\{VARIABLE\}") as exc:
        load_campaign(write(tmp_path, spec, "literal.yaml"))
    assert "hunter2" not in str(exc.value)


@contextlib.contextmanager
def sqlite3_rows(db: Path) -> Iterator[list[Any]]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        yield [row for t in tables for row in conn.execute(f"SELECT * FROM {t}")]


def test_more_shards_than_the_data_fills_still_merge_to_every_input(tmp_path: Path) -> None:
    """breast-cancer has 114 test inputs: 200 samples in 4 shards of 50 leave the last block
    empty; the cell still covers every input once."""
    spec = {
        "name": "short",
        "targets": [{"name": "cancer", "target": "breast-cancer-mlp"}],
        "assessments": [
            {
                "name": "evasion",
                "kind": "evasion",
                "attacks": ["fgsm"],
                "eps": [0.1],
                "samples": 200,
                "shards": 4,
            }
        ],
    }
    spec_obj, root = load_campaign(write(tmp_path, spec))
    store = Store.open(f"sqlite:///{tmp_path / 'c.db'}")
    summary = run_campaign(spec_obj, root, store, LocalEngine())
    assert summary.done == 1, summary.failed
    (cell,) = expand(spec_obj, root)
    assert robust(store.results([cell.key])[cell.key].payload or {})[0.1][1] == 114
