"""``bastion scan`` with the extraction and membership families: reports, findings, errors."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import bastion
from bastion.report.json import load_schema

from helpers import run

CHEAP = ["--set", "knockoff.max_queries=300", "--set", "knockoff.epochs=5"]


def test_scan_extraction_only(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys, "scan", "--target", "digits-logreg", "--family", "extraction",
        "--query-budget", "2000", "--out", str(tmp_path), *CHEAP,
    )  # fmt: skip
    assert code == 0, err
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(data, load_schema())
    assert [a["family"] for a in data["assessments"]] == ["extraction"]
    ids = {t for f in data["findings"] for t in f["techniques"]}
    assert "AML.T0024.002" in ids
    fid = [m for m in data["assessments"][0]["metrics"] if m["name"] == "fidelity"]
    assert {m["at"]["attack"] for m in fid} == {"equation-solving", "knockoff"}
    assert "Model extraction" in out
    assert data["assessments"][0]["setting"]["queries_in_all"] <= 2000


def test_scan_with_members_adds_membership(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    data = bastion.load_dataset("digits")
    members = tmp_path / "train.npz"
    np.savez(members, x=data.x_train[:200], y=data.y_train[:200])
    code, _, err = run(
        capsys, "scan", "--target", "digits-logreg", "--data", "digits", "--members",
        str(members), "--family", "membership", "--attacks",
        "loss-threshold,label-only-membership", "--out", str(tmp_path / "r"),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    jsonschema.validate(report, load_schema())
    (membership,) = report["assessments"]
    assert membership["family"] == "membership"
    names = {m["at"]["attack"] for m in membership["metrics"] if m["name"] == "auc"}
    assert names == {"loss-threshold", "label-only-membership"}
    tprs = [m for m in membership["metrics"] if m["name"] == "tpr"]
    assert {m["at"]["fpr"] for m in tprs} == {0.01, 0.001}
    assert all(m["ci95"] is not None for m in tprs)
    assert report["findings"][0]["techniques"][0] == "AML.T0024.000"
    assert "data:image/png;base64," in (tmp_path / "r" / "report.html").read_text()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--family", "stealing"], "--family takes evasion, extraction, membership"),
        (["--family", "membership"], "needs --members"),
        (["--members", "nope/train.npz"], "no such file"),
    ],
)
def test_privacy_flags_fail_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    code, _, err = run(capsys, "scan", "--out", str(tmp_path), *args)
    assert code != 0
    assert message in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 3
