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


def test_readme_commands_match_ci() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"```bash\n#[^\n]*\n(python3 -m venv[^\n]*)\n```", readme)
    assert len(commands) == 2
    assert commands[0].endswith("bastion scan")
    assert commands[1] in ci


def test_architecture_worked_example_runs(cnn: object, digits: object) -> None:
    import torch

    from bastion.core.registry import ATTACKS

    text = (REPO / "docs" / "architecture.md").read_text()
    block = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    namespace: dict[str, object] = {}
    try:
        exec(compile(block, "architecture.md", "exec"), namespace)
        entry = ATTACKS.get("random-corners")
        x, y = digits  # type: ignore[misc]
        result = ATTACKS.create("random-corners", tries=5).run(cnn, x[:50], y[:50], eps=0.3)
        assert entry.access.value == "label-only"
        assert float(result.distances.max()) <= 0.3 + 1e-6
        assert result.success.any()
        assert isinstance(result.x_adv, torch.Tensor)
    finally:
        ATTACKS.unregister("random-corners")
