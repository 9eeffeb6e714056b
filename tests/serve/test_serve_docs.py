"""docs/serving.md runs as written, its policy validates, and the published schema is current."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from bastion.serve.policy import generate_policy_schema, load_policy, shipped_policy_schema

REPO = Path(__file__).resolve().parents[2]
DOC = (REPO / "docs" / "serving.md").read_text()


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC, flags=re.S)


def test_shipped_schema_is_the_models() -> None:
    assert shipped_policy_schema() == json.loads(json.dumps(generate_policy_schema()))


def test_the_docs_policy_validates_against_the_model_and_the_schema() -> None:
    (policy,) = _blocks("yaml")
    raw = yaml.safe_load(policy)
    jsonschema.validate(raw, shipped_policy_schema())
    loaded = load_policy(raw)
    assert loaded.output == ["round:decimals=2"]
    assert loaded.limits.budget == "10000/day"
    # and the schema refuses what the model refuses
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**raw, "limitz": {}}, shipped_policy_schema())


def test_the_docs_python_example_runs(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    demo: object,
) -> None:
    (code,) = _blocks("python")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/serving.md", "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["200", "200", "429"]
    assert lines[0].split()[1] == "None" and 1 <= int(lines[2].split()[1]) <= 3600
    assert "query budget" in lines[3]
    assert lines[4] == "3 requests in the audit log"
