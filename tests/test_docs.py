"""The README's Python example runs and does what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_readme_python_example(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, "the README has no Python example"
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"fooled (9\d|100)% with \d+ queries", out)
    assert "AML.T0043.000" in out
    assert (tmp_path / "report.html").exists()


def test_ci_runs_the_readme_test_command() -> None:
    """CI does not keep a copy of the README's command: it reads and runs the README's own."""
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text()
    commands = re.findall(r"```bash\n#[^\n]*\n(python3 -m venv[^\n]*)\n```", readme)
    assert len(commands) == 2 and commands[0].endswith("bastion scan")
    extracted = subprocess.run(
        [sys.executable, str(REPO / ".ci" / "readme_command.py"), "2"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert extracted == commands[1]
    assert "readme_command.py 2" in (REPO / ".ci" / "run").read_text()


def test_architecture_worked_example_is_the_whole_job(
    cnn: object, digits: object, demo: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """The doc's one-file attack is listed, scanned first, linked in the catalog, settable."""
    import torch

    from bastion.assess import scan
    from bastion.catalog import get_technique
    from bastion.core.registry import ATTACKS
    from bastion.core.threat import Threat

    from helpers import run

    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    namespace: dict[str, object] = {}
    try:
        exec(compile(block, "architecture.md", "exec"), namespace)
        entry = ATTACKS.get("random-corners")
        x, y = digits  # type: ignore[misc]
        result = ATTACKS.create("random-corners", **entry.fast).run(cnn, x[:50], y[:50], eps=0.3)
        assert entry.access.value == "label-only"
        assert float(result.distances.max()) <= 0.3 + 1e-6
        assert result.success.any()
        assert isinstance(result.x_adv, torch.Tensor)
        assert "random-corners" in get_technique("AML.T0043.001").attacks
        code, out, _ = run(capsys, "attacks")
        assert code == 0 and "random-corners" in out
        from bastion.defences import DefendedTarget, create_defence

        target, data = demo  # type: ignore[misc]
        labels_only = DefendedTarget(target, [create_defence("labels")])
        sweep = scan(
            labels_only,
            data,
            Threat(epsilons=(0.3,)),
            samples=12,
            attack_params={
                "hopskipjump": {"max_queries": 20},
                "random-corners": {"tries": "2"},
            },
        )
        assert sweep.attacks[0] == "random-corners"
        assert sweep.attack_params["random-corners"] == {"tries": 2}
    finally:
        ATTACKS.unregister("random-corners")


def _console_commands(path: Path) -> list[str]:
    """The ``$ bastion ...`` lines of a page's console blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```console\n(.*?)```", path.read_text(), flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            if line.startswith("$ bastion "):
                commands.append(line[2:].split("  #")[0].strip())
    return commands


def _shell_commands(text: str) -> list[str]:
    """The ``bastion ...`` lines of a page's bash blocks, continuations joined."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        commands += [
            line.split("  #")[0].split("#")[0].strip()
            for line in joined.splitlines()
            if line.startswith("bastion ")
        ]
    return commands


@pytest.fixture
def docs_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Path:
    """A working folder with the examples and a small scan report, as a reader would have."""
    from helpers import run

    (tmp_path / "examples").symlink_to(REPO / "examples")
    monkeypatch.chdir(tmp_path)
    code, _, err = run(
        capsys,
        "scan",
        "--samples",
        "10",
        "--eps",
        "0.1",
        "--steps",
        "3",
        "--max-queries",
        "20",
        "--out",
        ".",
        "--format",
        "json",
    )
    assert code == 0, err
    return tmp_path


def _frameworks() -> Path:
    import os

    return Path(os.environ.get("BASTION_FRAMEWORKS_DIR", REPO.parent / "shared" / "frameworks"))


@pytest.mark.parametrize("page", ["docs/threat-modeling.md", "docs/catalog.md", "docs/evasion.md"])
def test_docs_commands_run(page: str, docs_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import os
    import shlex

    from helpers import run

    commands = _console_commands(REPO / page)
    assert commands
    frameworks = _frameworks()
    for command in commands:
        if "path/to/" in command:
            if not (frameworks / "ATLAS.yaml").exists():
                if os.environ.get("CI"):
                    pytest.fail(f"CI needs the frameworks at {frameworks} for: {command}")
                pytest.skip(f"the ATLAS and AIDEFEND files are not at {frameworks}")
            command = command.replace("path/to/ATLAS.yaml", str(frameworks / "ATLAS.yaml"))
            command = command.replace("path/to/data.json", str(frameworks / "aidefend.json"))
        code, _, err = run(capsys, *shlex.split(command)[1:])
        assert code == 0, f"{command}: {err}"


def test_readme_threat_commands_run(docs_cwd: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's threat-modeling walk-through, in order: model, scan the plan, gaps."""
    import shlex

    from helpers import run

    text = (REPO / "README.md").read_text()
    section = text[text.index("## Threat modeling") : text.index("## From Python")]
    commands = _shell_commands(section)
    assert len(commands) >= 4
    for command in commands:
        code, _, err = run(capsys, *shlex.split(command)[1:])
        assert code == 0, f"{command}: {err}"


def test_evasion_python_example(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The evaluation example of docs/evasion.md runs as written, and says what it found."""
    import contextlib
    import io

    text = (REPO / "docs" / "evasion.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/evasion.md", "exec"), {})
    robust = float(out.getvalue().split()[0])
    assert 0.0 <= robust < 0.9


def test_privacy_python_example(capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "docs" / "privacy.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "privacy.md", "exec"), {})
    out = capsys.readouterr().out
    assert "probabilities 10" in out and "65 queries, fidelity 100.0%" in out
    assert "estimated torch.Size([3, 1, 8, 8]) True" in out and "watermark: " in out
