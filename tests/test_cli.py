"""The command line, end to end: good paths write valid reports, bad input gets one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch

from bastion.report import load_schema

from helpers import run

FAST = ["--samples", "24", "--eps", "0.1,0.3", "--steps", "5", "--max-queries", "60"]


def _valid(report: Path) -> dict[str, Any]:
    data = json.loads(report.read_text())
    jsonschema.validate(data, load_schema())
    return data


def test_scan_demo_writes_reports(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "scan", "--out", str(tmp_path), *FAST)
    assert code == 0, err
    assert "Robust accuracy" in out and "report.html" in out
    data = _valid(tmp_path / "report.json")
    assert data["target"]["access"] == "white-box"
    assert data["assessments"][0]["setting"]["attacks"] == [
        "fgsm",
        "deepfool",
        "pgd",
        "fab",
        "square",
    ]
    assert [p["epsilon"] for p in data["assessments"][0]["details"]["sweep"]] == [0.1, 0.3]
    assert (
        data["assessments"][0]["details"]["sweep"][1]["robust_accuracy"]
        < data["assessments"][0]["details"]["clean_accuracy"]["value"]
    )
    ids = {t for f in data["findings"] for t in f["techniques"]}
    assert {"AML.T0043.000", "AML.T0015"} <= ids
    html = (tmp_path / "report.html").read_text()
    assert "AML.T0043.000" in html and "AML.T0015" in html
    assert html.count("data:image/png;base64,") == 2  # the plot and the examples
    assert "<script" not in html and 'src="http' not in html  # self-contained


def test_format_and_fail_on(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, _err = run(
        capsys, "scan", "--out", str(tmp_path), "--format", "json", "--fail-on", "low", *FAST
    )
    assert code == 1
    assert (tmp_path / "report.json").exists()
    assert not (tmp_path / "report.html").exists()


def test_scan_l2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(
        capsys, "scan", "--out", str(tmp_path), "--norm", "l2", "--samples", "16", "--steps", "5"
    )
    assert code == 0, err
    data = _valid(tmp_path / "report.json")
    evasion = data["assessments"][0]
    # square is Linf only, cw L2 only
    assert evasion["setting"]["attacks"] == ["fgsm", "deepfool", "pgd", "fab", "cw"]
    assert evasion["setting"]["threat"]["norm"] == "l2"
    # the default sweep is relative: shares of the range times the root of the 64 features
    from bastion.core.threat import default_epsilons

    assert evasion["setting"]["threat"]["epsilons"] == list(default_epsilons("l2", (0, 1), 64))
    sweep = evasion["details"]["sweep"]
    assert sweep[-1]["robust_accuracy"] < evasion["details"]["clean_accuracy"]["value"] - 0.3


@pytest.fixture
def skops_file(logreg: Any, tmp_path: Path) -> Path:
    import skops.io as sio

    path = tmp_path / "logreg.skops"
    sio.dump(logreg, path)
    return path


def test_scan_sklearn_skops(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, skops_file: Path
) -> None:
    out_dir = tmp_path / "r"
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        str(skops_file),
        "--data",
        "digits",
        "--out",
        str(out_dir),
        *FAST,
    )
    assert code == 0, err
    data = _valid(out_dir / "report.json")
    assert data["target"]["access"] == "score-based"
    assert data["assessments"][0]["setting"]["attacks"] == ["square"]
    assert data["findings"][0]["techniques"][0] == "AML.T0043.001"


def test_scan_http(capsys: pytest.CaptureFixture[str], tmp_path: Path, predict_server: str) -> None:
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        predict_server,
        "--data",
        "digits",
        "--out",
        str(tmp_path),
        "--header",
        "X-Api-Key: s3cret",
        *FAST,
    )
    assert code == 0, err
    report = (tmp_path / "report.json").read_text() + (tmp_path / "report.html").read_text()
    assert "s3cret" not in report
    assert _valid(tmp_path / "report.json")["assessments"][0]["setting"]["attacks"] == ["square"]


def test_scan_torchscript_and_state_dict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, demo: Any
) -> None:
    model = demo[0].model
    scripted = tmp_path / "cnn.pt"
    torch.jit.trace(model, torch.rand(1, 1, 8, 8)).save(str(scripted))
    args = ["scan", "--target", str(scripted), "--data", "digits", "--out", str(tmp_path / "a")]
    # a TorchScript archive can carry code: like a pickle, it loads only when trusted
    code, _, err = run(capsys, *args, *FAST)
    assert code == 2 and "--trust" in err and "--arch" in err
    assert not (tmp_path / "a" / "report.json").exists()
    code, _, err = run(capsys, *args, "--trust", *FAST)
    assert code == 0, err
    weights = tmp_path / "weights.pt"
    torch.save(model.state_dict(), weights)
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        str(weights),
        "--data",
        "digits",
        "--arch",
        "bastion.zoo.models:SmallCNN",
        "--out",
        str(tmp_path / "b"),
        *FAST,
    )
    assert code == 0, err
    a = _valid(tmp_path / "a" / "report.json")
    b = _valid(tmp_path / "b" / "report.json")
    details = [r["assessments"][0]["details"] for r in (a, b)]
    assert details[0]["clean_accuracy"] == details[1]["clean_accuracy"]
    code, _, err = run(capsys, "scan", "--target", str(weights), "--data", "digits")
    assert code != 0 and "--arch" in err


def test_trusted_pickle(capsys: pytest.CaptureFixture[str], tmp_path: Path, logreg: Any) -> None:
    import joblib

    path = tmp_path / "model.joblib"
    joblib.dump(logreg, path)
    code, _, err = run(
        capsys, "scan", "--target", str(path), "--data", "digits", "--out", str(tmp_path / "r")
    )
    assert code != 0 and "pickle" in err and "--trust" in err
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        str(path),
        "--data",
        "digits",
        "--trust",
        "--out",
        str(tmp_path / "r"),
        *FAST,
    )
    assert code == 0, err


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return str(path)


@pytest.fixture
def bad_inputs(tmp_path: Path, demo: Any) -> dict[str, list[str]]:
    rng = np.random.default_rng(0)
    scripted = tmp_path / "cnn.pt"
    torch.jit.trace(demo[0].model, torch.rand(1, 1, 8, 8)).save(str(scripted))
    wrong_shape = _npz(
        tmp_path / "shape.npz", rng.random((10, 3, 5), dtype=np.float32), np.arange(10) % 10
    )
    big = _npz(tmp_path / "big.npz", rng.random((10, 1, 8, 8)) * 255, np.arange(10) % 10)
    labels = _npz(
        tmp_path / "labels.npz", rng.random((12, 1, 8, 8), dtype=np.float32), np.arange(12)
    )
    return {
        "missing file": ["--target", str(tmp_path / "nope.onnx"), "--data", "digits"],
        "missing data": ["--target", str(scripted), "--data", str(tmp_path / "nope.npz")],
        "shape the model rejects": ["--target", str(scripted), "--trust", "--data", wrong_shape],
        "shape the target expects": ["--data", wrong_shape],
        "outside bounds": ["--data", big],
        "labels out of range": ["--data", labels],
        "unreachable url": ["--target", "http://127.0.0.1:9/predict", "--data", "digits"],
        "negative epsilon": ["--eps", "-0.1"],
        "epsilon beyond range": ["--eps", "1.5"],
        "epsilon not a number": ["--eps", "abc"],
        "unknown norm": ["--norm", "l7"],
        "unknown format": ["--format", "pdf"],
        "unknown attack": ["--attacks", "deepfool9"],
        "white-box attack on a black box": ["--target", "digits-logreg", "--attacks", "pgd"],
        "no data for a user model": ["--target", str(scripted)],
        "unknown model format": ["--target", str(Path(__file__)), "--data", "digits"],
        "bad output kind": [
            "--target",
            str(scripted),
            "--trust",
            "--data",
            "digits",
            "--output-kind",
            "x",
        ],
        "zero samples": ["--samples", "0"],
        "torchscript without trust": ["--target", str(scripted), "--data", "digits"],
        "a folder as the target": ["--target", str(tmp_path), "--data", "digits"],
        "inverted bounds": ["--bounds", "1,0"],
        "bounds with a built-in set": ["--data", "digits", "--bounds", "0,2"],
        "no attack runs this norm": ["--norm", "l0"],
        "out is a file": ["--out", str(Path(__file__))],
        "unknown setting": ["--set", "pgd.stepz=3"],
        "setting of the wrong type": ["--set", "pgd.steps=many"],
        "unknown defence": ["--defence", "tinfoil"],
        "bad defence parameter": ["--defence", "squeeze:bits=99"],
        "resume with nothing to resume": ["--resume"],
    }


CASES = [
    "missing file",
    "missing data",
    "shape the model rejects",
    "shape the target expects",
    "outside bounds",
    "labels out of range",
    "unreachable url",
    "negative epsilon",
    "epsilon beyond range",
    "epsilon not a number",
    "unknown norm",
    "unknown format",
    "unknown attack",
    "white-box attack on a black box",
    "no data for a user model",
    "unknown model format",
    "bad output kind",
    "zero samples",
    "torchscript without trust",
    "a folder as the target",
    "inverted bounds",
    "bounds with a built-in set",
    "no attack runs this norm",
    "out is a file",
    "unknown setting",
    "setting of the wrong type",
    "unknown defence",
    "bad defence parameter",
    "resume with nothing to resume",
]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(
    case: str, bad_inputs: dict[str, list[str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys, "scan", "--out", str(tmp_path / "r"), "--samples", "10", *bad_inputs[case]
    )
    assert code != 0
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error:"), err
    assert "Traceback" not in out + err
    assert not (tmp_path / "r" / "report.json").exists()


def test_entry_point_subprocess(tmp_path: Path) -> None:
    """The installed command renders errors the same way (no traceback, exit 2)."""
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "scan", "--eps", "-1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error:")
    assert "Traceback" not in proc.stderr


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import bastion

    code, out, _ = run(capsys, "version")
    assert code == 0 and out.strip() == f"bastion {bastion.__version__}"


def test_sarif_and_markdown_formats_defence_and_settings(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, _, err = run(
        capsys,
        "scan",
        "--out",
        str(tmp_path),
        "--format",
        "sarif,md",
        "--samples",
        "16",
        "--eps",
        "0.2",
        "--defence",
        "squeeze:bits=4",
        "--set",
        "pgd.restarts=2",
        "--steps",
        "4",
        "--max-queries",
        "30",
    )
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == [
        "report.md",
        "report.sarif",
    ]
    sarif = json.loads((tmp_path / "report.sarif").read_text())
    assert sarif["version"] == "2.1.0" and sarif["runs"][0]["results"]
    assert "squeeze:bits=4" in sarif["runs"][0]["properties"]["target"]
    md = (tmp_path / "report.md").read_text()
    assert "| severity | finding | MITRE ATLAS | summary |" in md
    assert "pgd: steps: 4; restarts: 2" in md


def test_defences_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.core.registry import DEFENCES

    code, out, _ = run(capsys, "defences")
    assert code == 0
    for entry in DEFENCES:
        assert entry.name in out
        for m in entry.mitigations:
            assert m in out


def test_scan_exported_program(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, demo: Any
) -> None:
    path = tmp_path / "cnn.pt2"
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(
        demo[0].model, (torch.rand(2, 1, 8, 8),), dynamic_shapes={"x": {0: batch}}
    )
    torch.export.save(program, str(path))
    args = ["scan", "--target", str(path), "--data", "digits", "--out", str(tmp_path / "r")]
    code, _, err = run(capsys, *args, *FAST)
    assert code == 2 and "torch.export" in err and "--trust" in err
    code, _, err = run(capsys, *args, "--trust", *FAST)
    assert code == 0, err
    assert _valid(tmp_path / "r" / "report.json")["target"]["access"] == "white-box"


def test_attacks_lists_the_registry(capsys: pytest.CaptureFixture[str]) -> None:
    from bastion.core.registry import ATTACKS

    code, out, _ = run(capsys, "attacks")
    assert code == 0
    for entry in ATTACKS:
        assert entry.name in out


def test_rerun_command_hides_headers() -> None:
    from bastion.cli.scan import rerun_command

    line = rerun_command(
        ["scan", "--header", "Authorization: Bearer s3cret", "--eps", "0.1", "--header=X-Key: k3y"]
    )
    assert "s3cret" not in line
    assert "k3y" not in line
    assert line.startswith("bastion scan --header")
    assert "--eps 0.1" in line


def test_http_scan_never_writes_the_header(tmp_path: Path, predict_server: str) -> None:
    """The real entry point, argv and all: the header value stays out of every file."""
    out = tmp_path / "r"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "scan",
            "--target",
            predict_server,
            "--data",
            "digits",
            "--out",
            str(out),
            "--header",
            "X-Api-Key: s3cret",
            *FAST,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    for file in out.iterdir():
        assert "s3cret" not in file.read_text()
    assert "s3cret" not in proc.stdout + proc.stderr


def test_ids_are_never_cut_at_80_columns(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a user copies from a table (an ATLAS id) is shown whole in an 80-column terminal."""
    import re

    from rich.console import Console

    from bastion.cli import catalog as catalog_cli
    from bastion.cli import main as main_cli
    from bastion.cli import threats as threats_cli

    narrow = Console(width=80, emoji=False)
    for module in (catalog_cli, main_cli, threats_cli):
        monkeypatch.setattr(module, "console", narrow)
    system = Path(__file__).resolve().parents[1] / "examples" / "threats" / "fraud-scoring-api.yaml"
    for args in (
        ["threats", "model", str(system), "--out", str(tmp_path)],
        ["catalog", "list"],
        ["attacks"],
    ):
        code, out, err = run(capsys, *args)
        assert code == 0, err
        assert "…" not in "".join(re.findall(r"AML\.T[0-9.…]*", out))
        assert max(len(line) for line in out.splitlines()) <= 80
    shown = set(re.findall(r"AML\.T\d{4}(?:\.\d{3})?", out))
    assert {"AML.T0043.000", "AML.T0015"} <= shown
