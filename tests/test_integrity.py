"""Model-file integrity: ``bastion model inspect`` finds what loading would run, without
loading anything; ``bastion model sign|verify`` catch any change and any other key."""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.cli.main import main
from bastion.core.errors import ConfigError, DataError, IntegrityError
from bastion.integrity import (
    generate_signing_key,
    inspect_model_file,
    sign_model_file,
    verify_model_file,
)

pytest.importorskip("fickling")


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return int(code or 0), out, err


class _RunsACommand:
    """Unpickling this runs ``touch MARKER``: what a malicious model file does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _evil_bytes(marker: Path) -> bytes:
    return pickle.dumps({"weight": [1.0, 2.0], "payload": _RunsACommand(marker)})


def _state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)
    ).state_dict()


def test_a_pickle_that_runs_a_command_is_flagged_and_never_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "PWNED"
    path = tmp_path / "model.pkl"
    path.write_bytes(_evil_bytes(marker))
    report = inspect_model_file(path)
    assert report.format == "pickle"
    assert report.level == "danger"
    assert any(f.kind == "pickle-call" and "system" in f.detail for f in report.findings)
    code, out, _ = _run(capsys, "model", "inspect", str(path), "--format", "json")
    assert code == 1
    assert json.loads(out)["level"] == "danger"
    code, out, _ = _run(capsys, "model", "inspect", str(path), "--fail-on", "danger")
    assert code == 1 and "DANGEROUS" in out
    assert not marker.exists()


def test_the_payload_inside_a_torch_checkpoint_is_flagged(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    buffer = io.BytesIO()
    torch.save(_state_dict(), buffer)
    # a real checkpoint with its data.pkl swapped for the payload, as a tampered download
    src = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    path = tmp_path / "model.pt"
    with zipfile.ZipFile(path, "w") as out:
        for name in src.namelist():
            data = src.read(name)
            out.writestr(name, _evil_bytes(marker) if name.endswith("data.pkl") else data)
    report = inspect_model_file(path)
    assert report.format == "pytorch"
    assert report.level == "danger"
    assert any(f.where.endswith("data.pkl") and f.kind == "pickle-call" for f in report.findings)
    assert not marker.exists()


def test_a_state_dict_passes_in_both_torch_formats(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    zipped, legacy = tmp_path / "sd.pt", tmp_path / "legacy.pt"
    torch.save(_state_dict(), zipped)
    torch.save(_state_dict(), legacy, _use_new_zipfile_serialization=False)
    for path, fmt in ((zipped, "pytorch"), (legacy, "pickle")):
        report = inspect_model_file(path)
        assert (report.format, report.level, report.findings) == (fmt, "safe", []), report
    code, out, _ = _run(capsys, "model", "inspect", str(zipped))
    assert code == 0 and "safe to load" in out


def test_a_whole_module_pickle_runs_code_but_is_not_dangerous(tmp_path: Path) -> None:
    path = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(3, 2), path)
    report = inspect_model_file(path)
    assert report.level == "code"
    assert any("torch.nn.modules.linear.Linear" in f.detail for f in report.findings)
    assert report.fails("code") and not report.fails("danger")


def test_torchscript_and_torch_export_archives_run_code(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Linear(3, 2))
    scripted = tmp_path / "scripted.pt"
    torch.jit.script(module).save(str(scripted))
    report = inspect_model_file(scripted)
    assert (report.format, report.level) == ("torchscript", "code")
    assert any(f.kind == "torchscript" for f in report.findings)
    exported = tmp_path / "program.pt2"
    torch.export.save(torch.export.export(module, (torch.randn(1, 3),)), exported)
    report = inspect_model_file(exported)
    assert (report.format, report.level) == ("torch-export", "code")


def _onnx_with_external(tmp_path: Path, location: str) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2, 2], np.ones(4, np.float32))
    weight.data_location = TensorProto.EXTERNAL
    del weight.float_data[:]
    entry = weight.external_data.add()
    entry.key, entry.value = "location", location
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])],
        initializer=[weight],
    )
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph).SerializeToString())
    _ = onnx
    return path


def test_onnx_external_data_outside_the_folder_is_flagged(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = _onnx_with_external(tmp_path, "../../etc/passwd")
    report = inspect_model_file(path)
    assert report.format == "onnx" and report.level == "danger"
    assert any(f.kind == "external-data" and "passwd" in f.detail for f in report.findings)
    assert _run(capsys, "model", "inspect", str(path), "--fail-on", "danger")[0] == 1
    absolute = _onnx_with_external(tmp_path, "/etc/passwd")
    assert inspect_model_file(absolute).level == "danger"


def test_onnx_external_data_beside_the_model_is_fine(tmp_path: Path) -> None:
    path = _onnx_with_external(tmp_path, "weights.bin")
    (tmp_path / "weights.bin").write_bytes(np.ones(4, np.float32).tobytes())
    assert inspect_model_file(path).level == "safe"


def test_skops_types_outside_the_trusted_list_are_reported(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    plain = tmp_path / "lr.skops"
    sio.dump(fitted, plain)
    assert inspect_model_file(plain).format == "skops"
    assert inspect_model_file(plain).level == "safe"
    odd = tmp_path / "odd.skops"
    sio.dump({"model": fitted, "when": np.datetime64("2024-01-01"), "f": _RunsACommand}, odd)
    report = inspect_model_file(odd)
    assert report.level in ("code", "danger")
    assert any(f.kind == "skops-untrusted-type" for f in report.findings)


def test_safetensors_and_plain_numpy_are_safe_and_object_arrays_are_not(tmp_path: Path) -> None:
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    st = tmp_path / "m.safetensors"
    st.write_bytes(struct.pack("<Q", len(header)) + header + np.ones(2, np.float32).tobytes())
    report = inspect_model_file(st)
    assert (report.format, report.level) == ("safetensors", "safe")
    plain, objects = tmp_path / "w.npy", tmp_path / "o.npy"
    np.save(plain, np.ones(3))
    np.save(objects, np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    assert inspect_model_file(plain).level == "safe"
    assert inspect_model_file(objects).level == "code"


def test_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    for args in (
        ("model", "inspect", str(tmp_path / "missing.pt")),
        ("model", "inspect", str(text)),
        ("model", "inspect", str(text), "--format", "xml"),
    ):
        code, _, err = _run(capsys, *args)
        assert code == 2, args
        assert err.startswith("error:") and "Traceback" not in err
    with pytest.raises(DataError):
        inspect_model_file(text)


def test_sign_then_verify_then_tamper(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("model_signing")
    model = tmp_path / "model.pt"
    torch.save(_state_dict(), model)
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    other, other_pub = tmp_path / "o.pem", tmp_path / "o.pub"
    assert _run(capsys, "model", "keygen", "--private", str(key), "--public", str(pub))[0] == 0
    assert (key.stat().st_mode & 0o777) == 0o600
    generate_signing_key(other, other_pub)
    code, out, err = _run(capsys, "model", "sign", str(model), "--key", str(key))
    assert code == 0, err
    assert (tmp_path / "model.pt.sig").is_file()
    code, out, _ = _run(capsys, "model", "verify", str(model), "--key", str(pub), "--json")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = _run(capsys, "model", "inspect", str(model), "--key", str(pub))
    assert code == 0 and "signature ok" in out

    code, _, err = _run(capsys, "model", "verify", str(model), "--key", str(other_pub))
    assert code == 2 and "another key" in err and "Traceback" not in err
    with pytest.raises(IntegrityError, match="another key"):
        verify_model_file(model, other_pub)

    data = bytearray(model.read_bytes())
    data[-40] ^= 1
    model.write_bytes(bytes(data))
    code, _, err = _run(capsys, "model", "verify", str(model), "--key", str(pub))
    assert code == 2 and "changed since it was signed" in err
    assert _run(capsys, "model", "inspect", str(model), "--key", str(pub))[0] == 2


def test_signing_refuses_wrong_keys_and_damaged_signatures(tmp_path: Path) -> None:
    pytest.importorskip("model_signing")
    from bastion.data.manifest import generate_keypair

    model = tmp_path / "w.safetensors"
    model.write_bytes(b"\x02\x00\x00\x00\x00\x00\x00\x00{}")
    ed, ed_pub = tmp_path / "ed.pem", tmp_path / "ed.pub"
    generate_keypair(ed, ed_pub)
    with pytest.raises(ConfigError, match="bastion model keygen"):
        sign_model_file(model, ed)
    key, pub = tmp_path / "k.pem", tmp_path / "k.pub"
    generate_signing_key(key, pub)
    with pytest.raises(ConfigError, match="not overwriting"):
        generate_signing_key(key, pub)
    with pytest.raises(ConfigError, match="public key"):
        verify_model_file(model, key)
    with pytest.raises(IntegrityError, match="no signature"):
        verify_model_file(model, pub)
    sig = sign_model_file(model, key)
    sig.write_text("{not json")
    with pytest.raises(IntegrityError, match="damaged"):
        verify_model_file(model, pub)


def test_the_docs_commands_run(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """docs/poisoning.md's model-file walk-through runs as written, each command exiting 0."""
    import re
    import shlex

    pytest.importorskip("model_signing")
    text = (Path(__file__).resolve().parents[1] / "docs" / "poisoning.md").read_text()
    section = text[text.index("## Model files") : text.index("## What to expect")]
    (block,) = re.findall(r"```console\n(.*?)```", section, flags=re.S)
    lines = [line[2:] for line in block.splitlines() if line.startswith("$ ")]
    assert lines[0].startswith("python -c")
    monkeypatch.chdir(tmp_path)
    torch.save(torch.nn.Linear(4, 2).state_dict(), "model.pt")
    commands = [shlex.split(line)[1:] for line in lines[1:]]
    assert len(commands) >= 5
    for command in commands:
        code, out, err = _run(capsys, *command)
        assert code == 0, f"{command}: {err}"
    assert json.loads(out)["signature"]["ok"] is True


def test_undecodable_opcodes_are_refused_and_archived_pickles_are_read(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(b"\x80\x04\xff\xfe garbage")
    report = inspect_model_file(broken)
    assert report.level == "danger"
    assert [f.kind for f in report.findings] == ["pickle-invalid"]
    marker = tmp_path / "PWNED"
    bundle = tmp_path / "bundle.npz"
    np.savez(bundle, w=np.ones(3), o=np.array([_RunsACommand(marker)], dtype=object))
    report = inspect_model_file(bundle)
    assert report.format == "zip" and report.level == "danger"
    assert any(f.where.endswith("o.npy") and f.kind == "pickle-call" for f in report.findings)
    assert not marker.exists()


def test_without_the_extra_the_message_names_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from bastion.core.errors import MissingExtraError

    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"w": [1.0]}))
    # a None entry in sys.modules makes the import fail, as if the package were absent
    monkeypatch.setitem(sys.modules, "fickling", None)
    with pytest.raises(MissingExtraError, match=r"bastion-ml\[integrity\]"):
        inspect_model_file(path)
    code, _, err = _run(capsys, "model", "inspect", str(path))
    assert code == 2 and "bastion-ml[integrity]" in err
    # the library edge loads neither torch nor fickling until a file is inspected
    probe = "import sys, bastion.integrity; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", probe], check=False).returncode == 0
