"""docs/gate.md as written: its scans end with the statuses it says, its Python runs, its test
file passes under the plugin, and the failure it shows is the one the plugin prints."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from helpers import plugin_args, run, settle_imports

pytest_plugins = ["pytester"]


@pytest.fixture(autouse=True)
def _settled() -> None:
    settle_imports()


PAGE = Path(__file__).resolve().parents[1] / "docs" / "gate.md"


def _commands(text: str) -> list[tuple[str, int]]:
    """The ``$ bastion ...`` lines of the console blocks, each with the status its comment
    promises (``# status 1``; 0 without one)."""
    out = []
    for block in re.findall(r"```console\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            if line.startswith("$ bastion "):
                command, _, comment = line[2:].partition("  #")
                status = re.search(r"status (\d+)", comment)
                out.append((command.strip(), int(status.group(1)) if status else 0))
    return out


def test_the_gate_page_runs_as_written(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str], demo: Any
) -> None:
    text = PAGE.read_text()
    commands = _commands(text)
    assert [status for _, status in commands] == [0, 0, 1]
    for command, status in commands:
        code, _, err = run(capsys, *shlex.split(command)[1:])
        assert code == status, f"{command}: {err}"
    assert (pytester.path / "dropped" / "comparison.md").is_file()

    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scripts = [b for b in blocks if "def test_" not in b]
    suites = [b for b in blocks if "def test_" in b]
    assert len(scripts) == 1 and len(suites) == 1
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(scripts[0], str(PAGE), "exec"), {})
    printed = out.getvalue()
    assert printed.startswith("2 regressed, 0 improved")
    assert "robust accuracy at linf eps=0.1: " in printed and "excludes 0" in printed
    assert printed.strip().endswith("fails the gate")

    pytester.makepyfile(test_robustness=suites[0])
    result = pytester.runpytest("--strict-markers", "-m", "robustness", *plugin_args())
    result.assert_outcomes(passed=2)


def test_the_failure_shown_is_the_one_printed(demo: Any) -> None:
    from bastion.testing import robustness

    shown = re.search(r"E       assert (robust accuracy .*) is below 0\.6\n", PAGE.read_text())
    assert shown is not None
    r = robustness("digits-cnn", eps=0.1, attacks=["fgsm"], samples=60)
    assert shown.group(1) == r.robust_accuracy.describe()
