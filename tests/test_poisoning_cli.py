"""``bastion data`` and ``bastion model backdoor-scan`` end to end, on small data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return int(code or 0), out, err


def _npz(path: Path, x: np.ndarray, y: np.ndarray) -> str:
    np.savez(path, x=x, y=y)
    return str(path)


def test_sign_then_verify_then_tamper(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, y = rng.random((30, 6)).astype(np.float32), rng.integers(0, 2, 30)
    data = _npz(tmp_path / "d.npz", x, y)
    key, pub, man = tmp_path / "k.pem", tmp_path / "k.pub", tmp_path / "m.json"
    assert _run(capsys, "data", "keygen", "--private", str(key), "--public", str(pub))[0] == 0
    code, _, err = _run(
        capsys, "data", "sign", "--data", data, "--key", str(key), "--out", str(man)
    )
    assert code == 0, err
    assert (
        _run(capsys, "data", "verify", "--data", data, "--manifest", str(man), "--key", str(pub))[0]
        == 0
    )
    y2 = y.copy()
    y2[4] = 1 - y2[4]
    bad = _npz(tmp_path / "bad.npz", x, y2)
    code, out, err = _run(
        capsys, "data", "verify", "--data", bad, "--manifest", str(man), "--key", str(pub), "--json"
    )
    assert code != 0
    assert "relabelled 4" in err
    assert json.loads(out)["relabeled"] == [[4, int(y[4]), int(y2[4])]]


def test_data_scan_writes_a_filtered_copy(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import bastion
    from bastion.attacks.poisoning import LabelFlip

    data = bastion.load_dataset("breast-cancer")
    p = LabelFlip(rate=0.1).poison(data, seed=0)
    path = _npz(tmp_path / "p.npz", p.x, p.y)
    code, _, err = _run(capsys, "data", "scan", "--data", path, "--out", str(tmp_path / "r"))
    assert code == 0, err
    kept = np.load(tmp_path / "r" / "filtered.npz")
    assert len(kept["y"]) < len(p.y)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["assessments"][0]["family"] == "poisoning"


def test_backdoor_scan_reports_a_verdict(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    out = tmp_path / "nc"
    code, _, err = _run(
        capsys,
        "model",
        "backdoor-scan",
        "--target",
        "digits-cnn",
        "--data",
        "digits",
        "--steps",
        "20",
        "--samples",
        "40",
        "--out",
        str(out),
        "--format",
        "json,html",
    )
    assert code in (0, 1), err
    report = json.loads((out / "report.json").read_text())
    details = report["assessments"][0]["details"]
    assert len(details["anomaly_index"]) == 10
    assert (code == 1) == details["backdoored"]
    assert "Reversed triggers" in (out / "report.html").read_text()
