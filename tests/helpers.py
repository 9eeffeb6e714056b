"""Small helpers shared by test modules."""

from __future__ import annotations

import pytest
import torch

import bastion
from bastion.cli.main import main


def accuracy(target: bastion.Target, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((target.predict(x) == y).float().mean())


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the ``bastion`` command in-process: exit status, stdout, stderr."""
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def one_line_error(result: object) -> str:
    """The single ``error:`` line a CliRunner result printed on stderr (asserted)."""
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in stderr
    return lines[0]
