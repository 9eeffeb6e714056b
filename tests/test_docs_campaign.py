"""docs/campaigns.md and the CI recipe say what is true."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "campaigns.md"
WORKFLOW = REPO / "examples" / "ci" / "robustness.yml"


def test_the_python_example_runs_and_prints_what_the_doc_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = DOC.read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "campaigns.md", "exec"), {})
    out = capsys.readouterr().out
    promised = re.findall(r"It prints `([^`]+)` and then `([^`]+)`", text)[0]
    assert out.splitlines() == list(promised)


def test_the_documented_campaign_file_is_valid() -> None:
    from bastion.campaign.spec import CampaignSpec

    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        spec = CampaignSpec.model_validate(yaml.safe_load(block))
        kinds = {a.kind for a in spec.assessments}
        assert kinds == {"evasion", "membership", "extraction", "poisoning", "hardening"}


def _options(path: list[str]) -> set[str]:
    """The options of ``bastion <path>``, as click knows them."""
    import typer

    from bastion.cli.main import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {opt for p in command.params for opt in getattr(p, "opts", [])}


def test_the_ci_recipe_runs_real_commands_and_uploads_what_they_write() -> None:
    workflow = yaml.safe_load(WORKFLOW.read_text())
    steps = workflow["jobs"]["campaign"]["steps"]
    perms = workflow["permissions"]
    assert perms["security-events"] == "write" and perms["pull-requests"] == "write"
    lines = [
        ln.strip()
        for s in steps
        for ln in str(s.get("run", "")).splitlines()
        if ln.strip().startswith(("bastion ", "if bastion "))
    ]
    assert any(ln.startswith("bastion campaign run") for ln in lines)
    assert any("bastion campaign diff" in ln for ln in lines)
    for line in lines:
        words = shlex.split(line.removeprefix("if ").split(";")[0].split(">")[0])
        assert words[0] == "bastion"
        sub = words[1:3]
        known = _options(sub)
        for word in words[3:]:
            if word.startswith("--"):
                assert word in known, f"{line}: bastion {' '.join(sub)} has no {word}"
    (upload,) = [s for s in steps if "upload-sarif" in str(s.get("uses", ""))]
    run_line = next(ln for ln in lines if ln.startswith("bastion campaign run"))
    out = run_line.split("--out", 1)[1].split()[0]
    assert upload["with"]["sarif_file"] == f"{out}/report.sarif"
