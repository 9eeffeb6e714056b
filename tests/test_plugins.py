"""The plugin contract: the registry drives everything, and one new module is all it takes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bastion.core.errors import ConfigError
from bastion.core.plugins import load_plugins, plugin_errors
from bastion.core.registry import ATTACKS, DEFENCES, parse_settings
from bastion.core.threat import Threat

from helpers import run

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src" / "bastion"

_MODULE = '''
from bastion.attacks.evasion.pgd import PGD
from bastion.core.registry import register_attack
from bastion.core.threat import Access, Norm


@register_attack(
    "pgd-lite",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF,),
    techniques=("AML.T0043.000", "AML.T0015"),
    cost=15,
    defaults={"steps": 7},
    fast={"steps": 4},
)
class PGDLite(PGD):
    """PGD with few steps, registered from a module bastion has never seen."""
'''


def test_importing_the_catalog_imports_no_attack() -> None:
    code = (
        "import sys, bastion.catalog; "
        "sys.exit(any(m.startswith('bastion.attacks') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


@pytest.mark.parametrize("layer", ["core", "catalog", "threats", "data", "zoo", "report"])
def test_no_layer_below_assess_imports_the_attacks(layer: str) -> None:
    pattern = re.compile(
        r"^\s*(from bastion\.attacks|import bastion\.attacks|from bastion import attacks)", re.M
    )
    offenders = [
        str(path.relative_to(SRC))
        for path in (SRC / layer).rglob("*.py")
        if pattern.search(path.read_text("utf-8"))
    ]
    assert offenders == []


@pytest.fixture
def new_attack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A module registering ``pgd-lite``, found through ``BASTION_PLUGINS`` only."""
    (tmp_path / "lite_plugin.py").write_text(_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BASTION_PLUGINS", "lite_plugin")
    load_plugins(reload=True)
    yield tmp_path
    ATTACKS.unregister("pgd-lite")
    sys.modules.pop("lite_plugin", None)
    monkeypatch.delenv("BASTION_PLUGINS")
    load_plugins(reload=True)


def test_a_new_attack_module_is_everywhere(
    new_attack: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, demo: Any
) -> None:
    from bastion.assess import scan
    from bastion.catalog import get_technique

    assert "pgd-lite" in ATTACKS
    # the CLI lists it
    code, out, _ = run(capsys, "attacks")
    assert code == 0 and "pgd-lite" in out
    # the catalog links it to its techniques, derived from the entry
    assert "pgd-lite" in get_technique("AML.T0043.000").attacks
    assert "pgd-lite" in get_technique("AML.T0015").attacks
    # the scan runs it by default, in cost order (after fgsm, before pgd; its cost ties with
    # deepfool's, and names break ties), with its defaults
    target, data = demo
    result = scan(
        target,
        data,
        Threat(epsilons=(0.1,)),
        samples=16,
        attack_params={"square": {"max_queries": 20}},
    )
    assert result.attacks == ["fgsm", "deepfool", "pgd-lite", "pgd", "fab", "square"]
    assert result.attack_params["pgd-lite"] == {"steps": 7}
    # and its parameters are settable from the command line like any attack's
    code, _, err = run(
        capsys,
        "scan",
        "--out",
        str(tmp_path / "r"),
        "--samples",
        "8",
        "--eps",
        "0.1",
        "--attacks",
        "pgd-lite",
        "--set",
        "pgd-lite.steps=3",
    )
    assert code == 0, err
    assert '"steps": 3' in (tmp_path / "r" / "report.json").read_text()


def test_a_new_attack_module_is_in_the_invariant_tests(new_attack: Path) -> None:
    env = {**os.environ, "BASTION_PLUGINS": "lite_plugin", "PYTHONPATH": str(new_attack)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-k",
            "pgd-lite",
            str(REPO / "tests" / "test_attacks_invariants.py"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:]
    passed = re.search(r"(\d+) passed", proc.stdout)
    assert passed and int(passed.group(1)) >= 6, proc.stdout[-500:]


def test_a_broken_plugin_is_reported_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_plugin.py").write_text("raise RuntimeError('half-written')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BASTION_PLUGINS", "broken_plugin")
    with pytest.warns(UserWarning, match="broken_plugin"):
        load_plugins(reload=True)
    assert "half-written" in plugin_errors()["broken_plugin"]
    assert {"fgsm", "pgd", "square"} <= set(ATTACKS.names())
    monkeypatch.delenv("BASTION_PLUGINS")
    load_plugins(reload=True)
    assert "broken_plugin" not in plugin_errors()


def test_the_example_plugin_package_installs_and_runs(tmp_path: Path) -> None:
    import shutil

    # build from a copy: setuptools writes build/ and egg-info/ beside the sources
    source = tmp_path / "plugin"
    shutil.copytree(REPO / "examples" / "plugin", source)
    site = tmp_path / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(site)}
    listed = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "attacks"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert listed.returncode == 0 and "bim" in listed.stdout, listed.stderr
    out = tmp_path / "r"
    scanned = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "scan",
            "--attacks",
            "bim",
            "--samples",
            "16",
            "--eps",
            "0.2",
            "--out",
            str(out),
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
        cwd=tmp_path,
    )
    assert scanned.returncode == 0, scanned.stderr
    import json

    report = json.loads((out / "report.json").read_text())
    sweep = report["assessments"][0]["details"]["sweep"]
    assert report["assessments"][0]["setting"]["attacks"] == ["bim"]
    assert (
        sweep[0]["robust_accuracy"]
        < report["assessments"][0]["details"]["clean_accuracy"]["value"] - 0.3
    )


def test_parameters_are_typed_by_the_entry() -> None:
    attack = ATTACKS.create("pgd", steps="12", random_start="false")
    assert attack.steps == 12 and attack.random_start is False
    with pytest.raises(ConfigError, match="steps"):
        ATTACKS.create("pgd", steps="many")
    with pytest.raises(ConfigError, match="stepz"):
        ATTACKS.create("pgd", stepz=3)
    assert parse_settings(["pgd.steps=100", "square.max_queries=5000", "pgd.loss=margin"]) == {
        "pgd": {"steps": 100, "loss": "margin"},
        "square": {"max_queries": 5000},
    }
    with pytest.raises(ConfigError, match=r"plugin\.parameter=value"):
        parse_settings(["steps=100"])


def test_selection_is_by_cost_and_access() -> None:
    from bastion.core.threat import Access

    load_plugins()
    white = [e.name for e in ATTACKS.select(access=Access.WHITE_BOX, family="evasion")]
    costs = [ATTACKS.get(n).cost for n in white]
    assert costs == sorted(costs)
    for entry in ATTACKS.select(access=Access.SCORES):
        assert entry.access is not Access.WHITE_BOX
    assert all(e.access is Access.LABELS for e in ATTACKS.select(access=Access.LABELS))


def test_defences_are_registered_with_their_mitigations() -> None:
    from bastion.catalog import get_mitigation

    load_plugins()
    assert {"squeeze", "round", "topk", "labels"} <= set(DEFENCES.names())
    for entry in DEFENCES:
        assert entry.defence_kind is not None and entry.mitigations
        for m in entry.mitigations:
            assert entry.name in get_mitigation(m).defences


def test_unregistered_attack_class_is_a_clear_error(cnn: Any, digits: Any) -> None:
    from bastion.attacks.evasion.gradient import GradientAttack

    with pytest.raises(ConfigError, match="not a registered attack"):
        GradientAttack().run(cnn, digits[0][:2], digits[1][:2], eps=0.1)
