"""What a model file would do when loaded, found out without loading it.

ATLAS AML.T0010 (supply-chain compromise) and AML.T0011.000 (unsafe AI artifacts): a model
file is often a program. A pickle names functions that the unpickler imports and calls; a
PyTorch checkpoint is a zip with a pickle inside; a TorchScript archive and a ``torch.export``
program carry code that runs when they load; an ONNX file can point at "external data" files
anywhere on disk; a skops file names the types it will build. :func:`inspect_model_file`
reads each of these as data and reports, per finding, one of three levels:

``info``
    nothing runs, but worth knowing (an ONNX custom operator domain, a missing external file).
``code``
    loading runs code beyond building arrays: a pickle that imports classes outside the
    weights-only list, TorchScript, ``torch.export``, skops types outside skops' trusted list.
    Such a file loads in bastion only with ``--trust``.
``danger``
    loading would run something that reads or writes files, starts processes or evaluates
    code (``os.system``, ``subprocess``, ``eval``, ``exec``, nested unpickling), a pickle
    whose opcodes do not decode, or external data that escapes the model's folder.

Pickles are decoded by fickling (Trail of Bits; the ``integrity`` extra), which turns the
opcodes into the Python they stand for without executing any of it; bastion judges the
imports it finds against a short weights-only list (what ``torch.load(weights_only=True)``
and ``numpy`` need for arrays) and fickling's own verdict for the overtly malicious ones.
Nothing in this module unpickles, imports a model's modules or runs a runtime.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from bastion._extras import require
from bastion.core.errors import ConfigError, DataError

__all__ = [
    "LEVELS",
    "FileFinding",
    "ModelFileReport",
    "inspect_model_file",
]

#: the levels of a finding, least to most serious
LEVELS = ("info", "code", "danger")

#: what an unpickler may import for a file of numbers to come back: tensors and their
#: storages, numpy arrays, ordered dicts and plain builtins (torch's weights-only list, in
#: spirit; a narrower list than fickling's ML allowlist, which admits trainer configs)
_WEIGHTS_ONLY: dict[str, frozenset[str]] = {
    "collections": frozenset({"OrderedDict"}),
    "torch._utils": frozenset({"_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_parameter"}),
    "torch._tensor": frozenset({"_rebuild_from_type_v2"}),
    "torch": frozenset(
        {
            "Size",
            "device",
            "Tensor",
            "float32",
            "float64",
            "float16",
            "bfloat16",
            "int64",
            "int32",
            "int16",
            "int8",
            "uint8",
            "bool",
        }
    ),
    "numpy": frozenset({"dtype", "ndarray"}),
    "numpy.core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "numpy._core.multiarray": frozenset({"_reconstruct", "scalar"}),
    "_codecs": frozenset({"encode"}),
    "builtins": frozenset(
        {"set", "frozenset", "slice", "complex", "bytearray", "bytes", "int", "float", "str"}
    ),
    "__builtin__": frozenset({"set", "frozenset", "slice", "complex", "bytearray"}),
}

#: at most this much of one member of an archive is read to decode it (a pickle of numbers is
#: small: the tensors themselves live in other members)
_MAX_PICKLE = 256 * 1024 * 1024
#: how deep archives inside archives are opened
_MAX_DEPTH = 3


@dataclass(frozen=True)
class FileFinding:
    """One thing a model file would do when loaded.

    ``level`` is ``info``, ``code`` or ``danger``; ``kind`` a short name (``pickle-import``,
    ``pickle-call``, ``torchscript``, ``external-data``, ...); ``where`` the member of an
    archive or the tensor it concerns; ``detail`` one line for a person.
    """

    level: str
    kind: str
    where: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"level": self.level, "kind": self.kind, "where": self.where, "detail": self.detail}


@dataclass
class ModelFileReport:
    """What :func:`inspect_model_file` found in one file.

    ``format`` is what the file is (``pickle``, ``pytorch``, ``torchscript``, ``torch-export``,
    ``onnx``, ``skops``, ``safetensors``, ``numpy``, ``zip``); ``level`` the most serious
    finding's level (``safe`` when there is none above ``info``); ``safe_to_load`` whether
    loading it runs nothing but the building of arrays.
    """

    path: str
    format: str
    sha256: str
    size: int
    findings: list[FileFinding] = field(default_factory=list)
    members: list[str] = field(default_factory=list)

    @property
    def level(self) -> str:
        worst = max((LEVELS.index(f.level) for f in self.findings), default=0)
        return "safe" if worst == 0 else LEVELS[worst]

    @property
    def safe_to_load(self) -> bool:
        return self.level == "safe"

    def fails(self, fail_on: str = "code") -> bool:
        """Whether a finding reaches ``fail_on`` (``code`` or ``danger``)."""
        if fail_on not in LEVELS[1:]:
            raise ConfigError(f"fail_on is 'code' or 'danger', got {fail_on!r}")
        return any(LEVELS.index(f.level) >= LEVELS.index(fail_on) for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "sha256": self.sha256,
            "size": self.size,
            "level": self.level,
            "safe_to_load": self.safe_to_load,
            "findings": [f.as_dict() for f in self.findings],
            "members": self.members,
        }


def inspect_model_file(path: str | Path) -> ModelFileReport:
    """Report what loading the model file at ``path`` would do, without loading it.

    The format is read from the content (a zip, a pickle, a safetensors header, a NumPy
    header), and from the suffix for ONNX, which has no magic number. A file that is none of
    these is a :class:`~bastion.core.errors.DataError`.

    Example::

        report = inspect_model_file("model.pt")
        if not report.safe_to_load:
            print([f.detail for f in report.findings])
    """
    p = Path(path)
    if not p.is_file():
        what = "not a file (inspect one model file at a time)" if p.exists() else "no such file"
        raise DataError(f"{p}: {what}")
    try:
        with p.open("rb") as handle:
            return _inspect(p, handle)
    except OSError as exc:
        raise DataError(f"{p}: cannot read it ({exc.strerror or exc})") from None


def _inspect(p: Path, handle: BinaryIO) -> ModelFileReport:
    # the file is read in pieces: a model can be larger than the memory at hand
    digest = hashlib.sha256()
    size = 0
    for chunk in iter(lambda: handle.read(1 << 20), b""):
        digest.update(chunk)
        size += len(chunk)
    handle.seek(0)
    head = handle.read(16)
    handle.seek(0)
    report = ModelFileReport(path=str(p), format="", sha256=digest.hexdigest(), size=size)
    if p.suffix.lower() == ".onnx":
        report.format = "onnx"
        report.findings += _onnx(p)
    elif _is_zip(handle):
        report.format, findings, report.members = _archive(p, handle, p.name, 0)
        report.findings += findings
    elif head[:6] == b"\x93NUMPY":
        report.format = "numpy"
        report.findings += _npy(handle, p.name)
    elif _is_safetensors(head, size):
        report.format = "safetensors"
        report.findings += _safetensors(handle, size, p.name)
    elif _looks_like_pickle(head):
        report.format = "pickle"
        report.findings += _pickles(handle, p.name)
    else:
        raise DataError(
            f"{p}: not a model format bastion can inspect (pickle, PyTorch, TorchScript, "
            "torch.export, ONNX, skops, safetensors, NumPy)"
        )
    return report


# --- pickles ------------------------------------------------------------------------------


def _looks_like_pickle(data: bytes) -> bool:
    # protocol 2+ starts with PROTO; protocols 0 and 1 start with an opcode that opens a value
    return bool(data) and (data[0] == 0x80 or data[:1] in (b"(", b"}", b"]", b"c", b"N"))


def _pickles(stream: BinaryIO, where: str) -> list[FileFinding]:
    """Findings of the pickles at the start of ``stream``: the first one (what ``pickle.load``
    reads), and those that follow it as in a legacy ``torch.save`` file (five pickles in a
    row, which ``torch.load`` all reads, then raw storage bytes)."""
    findings: list[FileFinding] = []
    for count in range(5):
        start = stream.tell()
        head = stream.read(1)
        stream.seek(start)
        if not head or (count and head != b"\x80"):
            break
        name = where if count == 0 else f"{where}#pickle{count + 1}"
        pickled, problem = _decode(stream)
        if pickled is None:
            # a first pickle that does not decode is refused; after it, raw data may follow
            if count == 0:
                findings.append(FileFinding("danger", "pickle-invalid", name, problem))
            break
        findings += _judge(pickled, name)
        if stream.tell() <= start:
            break
    return findings


def _decode(stream: BinaryIO) -> tuple[Any, str]:
    """fickling's decoding of the pickle at the stream's position, or None and why not."""
    require("fickling")
    from fickling.fickle import Pickled

    try:
        pickled = Pickled.load(stream, fail_on_decode_error=False)
    # fickling raises several kinds of error on opcodes it cannot decode; any of them means
    # the stream is not a well-formed pickle, which a loader should refuse
    except Exception as exc:
        return None, f"opcodes do not decode ({exc})"
    if pickled.has_invalid_opcode:
        return None, "invalid opcodes: a corrupted file, or one crafted to slip past scanners"
    return pickled, ""


def _judge(pickled: Any, where: str) -> list[FileFinding]:
    from fickling.analysis import Severity, check_safety

    findings: list[FileFinding] = []
    malicious: set[str] = set()
    try:
        results = check_safety(pickled).results
    # fickling's symbolic interpreter can fail on odd but decodable streams
    except Exception as exc:
        return [FileFinding("danger", "pickle-invalid", where, f"cannot be analysed ({exc})")]
    for r in results:
        if r.severity >= Severity.LIKELY_OVERTLY_MALICIOUS:
            trigger = r.trigger or r.message or ""
            if trigger in malicious:
                continue
            malicious.add(trigger)
            findings.append(
                FileFinding(
                    "danger",
                    "pickle-call",
                    where,
                    f"{trigger} (fickling: {r.severity.name.lower().replace('_', ' ')})",
                )
            )
    for module, name in _imports(pickled):
        if name in _WEIGHTS_ONLY.get(module, frozenset()) or _is_storage(module, name):
            continue
        # TorchScript's own compiled classes: no Python module of that name exists, and the
        # archive's code is reported as a whole
        if module.startswith("__torch__"):
            continue
        if any(f"{module}" in m and name in m for m in malicious):
            continue
        findings.append(
            FileFinding(
                "code",
                "pickle-import",
                where,
                f"imports and calls {module}.{name} (not needed for weights)",
            )
        )
    return findings


def _imports(pickled: Any) -> Iterator[tuple[str, str]]:
    seen: set[tuple[str, str]] = set()
    for node in pickled.properties.imports:
        module = getattr(node, "module", None)
        for alias in node.names:
            pair = (module, alias.name) if module else (alias.name, "")
            if pair not in seen:
                seen.add(pair)
                yield pair


def _is_storage(module: str, name: str) -> bool:
    return module == "torch" and name.endswith("Storage") and name.isidentifier()


# --- archives -----------------------------------------------------------------------------


def _archive(
    path: Path, source: BinaryIO, where: str, depth: int
) -> tuple[str, list[FileFinding], list[str]]:
    try:
        archive = zipfile.ZipFile(source)
        infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{path}: a damaged zip archive ({exc})") from None
    names = [i.filename for i in infos]
    findings: list[FileFinding] = []
    for name in names:
        pure = PurePosixPath(name)
        if pure.is_absolute() or ".." in pure.parts or "\\" in name:
            findings.append(
                FileFinding(
                    "danger", "archive-path", f"{where}:{name}", "member path escapes the archive"
                )
            )
    kind = _archive_kind(names)
    if kind == "skops":
        findings += _skops(path, where)
        return kind, findings, names
    if kind == "torchscript":
        code = [n for n in names if "/code/" in f"/{n}" and n.endswith(".py")]
        findings.append(
            FileFinding(
                "code",
                "torchscript",
                where,
                f"a TorchScript archive: loading compiles and runs its code ({len(code)} files, "
                f"e.g. {code[0] if code else 'none'})",
            )
        )
    elif kind == "torch-export":
        findings.append(
            FileFinding(
                "code",
                "torch-export",
                where,
                "a torch.export program: loading rebuilds and runs its graph",
            )
        )
    for info in infos:
        if info.is_dir():
            continue
        name = info.filename
        inner = f"{where}:{name}"
        # members are judged by name: a tensor's raw bytes may start like a pickle
        if name.endswith(".debug_pkl"):
            continue
        try:
            with archive.open(info) as handle:
                head = handle.read(8)
            if name.endswith((".pkl", ".pickle", ".joblib")):
                findings += _pickles(_read_member(archive, info, path), inner)
            elif head[:4] == b"PK\x03\x04" and depth < _MAX_DEPTH:
                _, sub, _ = _archive(path, _read_member(archive, info, path), inner, depth + 1)
                findings += sub
            elif head[:6] == b"\x93NUMPY":
                findings += _npy(_read_member(archive, info, path), inner)
        # an encrypted member, an unknown compression, a damaged stream
        except (RuntimeError, NotImplementedError, zipfile.BadZipFile, EOFError) as exc:
            raise DataError(f"{path}: cannot read member {name} ({exc})") from None
    return kind, findings, names


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> io.BytesIO:
    if info.file_size > _MAX_PICKLE:
        raise DataError(f"{path}: member {info.filename} is too large to inspect")
    with archive.open(info) as handle:
        return io.BytesIO(handle.read(_MAX_PICKLE + 1))


def _is_zip(handle: BinaryIO) -> bool:
    """Whether ``handle`` is a zip archive; the position is back at the start after."""
    try:
        return zipfile.is_zipfile(handle)
    finally:
        handle.seek(0)


def _archive_kind(names: list[str]) -> str:
    rel = ["/".join(PurePosixPath(n).parts[1:]) for n in names]
    if "schema.json" in names:
        return "skops"
    if any(r.startswith("code/") for r in rel) or "constants.pkl" in rel:
        return "torchscript"
    if "archive_format" in rel or any(r.startswith("models/") for r in rel):
        return "torch-export"
    if "data.pkl" in rel:
        return "pytorch"
    return "zip"


def _skops(path: Path, where: str) -> list[FileFinding]:
    require("fickling")
    from fickling.fickle import SAFE_BUILTINS, UNSAFE_IMPORTS
    from skops.io import get_untrusted_types

    try:
        untrusted = get_untrusted_types(file=path)
    # skops raises many kinds of error on a malformed schema
    except Exception as exc:
        raise DataError(f"{path}: not a readable skops file ({exc})") from None
    findings = []
    for name in untrusted:
        module, _, attr = name.rpartition(".")
        top = module.split(".")[0]
        builtin = top in ("builtins", "__builtin__", "__builtins__")
        risky = (builtin and attr not in SAFE_BUILTINS) or (
            not builtin and (top in UNSAFE_IMPORTS or module in UNSAFE_IMPORTS)
        )
        findings.append(
            FileFinding(
                "danger" if risky else "code",
                "skops-untrusted-type",
                where,
                f"{name}: outside skops' trusted types"
                + (" and able to run commands or code" if risky else ""),
            )
        )
    return findings


# --- numbers-only formats -----------------------------------------------------------------


def _npy(stream: BinaryIO, where: str) -> list[FileFinding]:
    import numpy as np

    try:
        version = np.lib.format.read_magic(stream)
        if version == (1, 0):
            _, _, dtype = np.lib.format.read_array_header_1_0(stream)
        else:
            _, _, dtype = np.lib.format.read_array_header_2_0(stream)
    except ValueError as exc:
        raise DataError(f"{where}: a damaged NumPy header ({exc})") from None
    if not dtype.hasobject:
        return []
    # an object array is stored as a pickle right after the header
    return [
        FileFinding(
            "code",
            "numpy-object",
            where,
            "an object array: np.load(allow_pickle=True) unpickles it",
        ),
        *_pickles(stream, where),
    ]


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 10:
        return False
    (n,) = struct.unpack("<Q", head[:8])
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _safetensors(stream: BinaryIO, size: int, where: str) -> list[FileFinding]:
    (n,) = struct.unpack("<Q", stream.read(8))
    if n > 100 * 1024 * 1024:
        raise DataError(f"{where}: a safetensors header of {n} bytes is not plausible")
    try:
        header = json.loads(stream.read(n))
    except ValueError as exc:
        raise DataError(f"{where}: a damaged safetensors header ({exc})") from None
    if not isinstance(header, dict):
        raise DataError(f"{where}: a damaged safetensors header (not an object)")
    body = size - 8 - n
    findings = []
    for name, spec in header.items():
        if name == "__metadata__":
            continue
        offsets = spec.get("data_offsets") if isinstance(spec, dict) else None
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) for o in offsets)
            or not 0 <= offsets[0] <= offsets[1] <= body
        ):
            findings.append(
                FileFinding(
                    "info", "safetensors-offsets", f"{where}:{name}", "tensor offsets out of range"
                )
            )
    return findings


def _onnx(path: Path) -> list[FileFinding]:
    onnx = require("onnx")
    try:
        model = onnx.load(str(path), load_external_data=False)
    # protobuf's decoding errors have no common base class
    except Exception as exc:
        raise DataError(f"{path}: not a readable ONNX model ({exc})") from None
    findings: list[FileFinding] = []
    root = path.resolve().parent
    standard = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training"}
    for opset in model.opset_import:
        if opset.domain not in standard and opset.domain != "com.microsoft":
            findings.append(
                FileFinding(
                    "info",
                    "onnx-custom-domain",
                    path.name,
                    f"operators of domain {opset.domain!r}: the runtime needs a custom "
                    "operator library (native code) registered to run them",
                )
            )
    for tensor in _onnx_tensors(onnx, model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        where = f"{path.name}:{tensor.name}"
        pure = Path(location)
        target = (root / location).resolve()
        if not location:
            findings.append(FileFinding("danger", "external-data", where, "no location"))
        elif pure.is_absolute() or ".." in pure.parts or root not in (target, *target.parents):
            findings.append(
                FileFinding(
                    "danger",
                    "external-data",
                    where,
                    f"external data at {location!r} lies outside the model's folder "
                    "(loading would read that file into the tensor)",
                )
            )
        elif not target.is_file():
            findings.append(
                FileFinding(
                    "info", "external-data", where, f"external data {location!r} is missing"
                )
            )
    return findings


def _onnx_tensors(onnx: Any, graph: Any) -> Iterator[Any]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _onnx_tensors(onnx, attr.g)
            for sub in attr.graphs:
                yield from _onnx_tensors(onnx, sub)
