"""Provenance of training data: a signed manifest of every sample, and its verifier.

A manifest records, for each training sample, a SHA-256 of its content, its label, and where
it came from (source, labeler); a root hash over all of them; and an Ed25519 signature (the
``cryptography`` package) over the whole. :func:`verify_manifest` checks the signature against
a public key the caller trusts, then compares the manifest with the data as it is now and
lists the samples added, removed, modified and relabelled. A bad signature, a manifest signed
by another key, or any change is an :class:`~bastion.core.errors.IntegrityError`, never a
warning: data whose provenance does not verify should not be trained on.

Manifests are plain JSON; nothing here unpickles anything.
"""

from __future__ import annotations

import base64
import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion._extras import require
from bastion.core.errors import ConfigError, IntegrityError
from bastion.core.files import atomic_write, write_key_pair

__all__ = [
    "FORMAT",
    "Verification",
    "generate_keypair",
    "make_manifest",
    "read_manifest",
    "sample_hash",
    "sign_manifest",
    "verify_manifest",
    "write_manifest",
]

FORMAT = "bastion-data-manifest/1"


def sample_hash(x: np.ndarray) -> str:
    """SHA-256 of one sample's content: its dtype, shape and bytes (labels are kept apart, so
    a relabelled sample keeps its hash)."""
    a = np.ascontiguousarray(x)
    h = hashlib.sha256()
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def _root(samples: list[dict[str, Any]]) -> str:
    h = hashlib.sha256()
    for s in samples:
        line = f"{s['index']}\t{s['sha256']}\t{s['label']}\t{s['source']}\t{s['labeler']}\n"
        h.update(line.encode())
    return h.hexdigest()


def _per_sample(value: str | Sequence[str] | None, n: int, what: str) -> list[str]:
    if value is None or isinstance(value, str):
        return [value or ""] * n
    if len(value) != n:
        raise ConfigError(f"{len(value)} {what} values for {n} samples")
    return [str(v) for v in value]


def make_manifest(
    x: np.ndarray,
    y: np.ndarray,
    *,
    name: str = "dataset",
    source: str | Sequence[str] | None = None,
    labeler: str | Sequence[str] | None = None,
) -> dict[str, Any]:
    """An unsigned manifest of samples ``x`` with labels ``y``.

    ``source`` and ``labeler`` are one value for every sample or one per sample.
    """
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} samples but {len(y)} labels")
    sources = _per_sample(source, len(x), "source")
    labelers = _per_sample(labeler, len(x), "labeler")
    samples = [
        {
            "index": i,
            "sha256": sample_hash(x[i]),
            "label": int(y[i]),
            "source": sources[i],
            "labeler": labelers[i],
        }
        for i in range(len(x))
    ]
    return {
        "format": FORMAT,
        "dataset": {"name": name, "samples": len(x), "input_shape": list(x.shape[1:])},
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "root": _root(samples),
        "samples": samples,
    }


def _body(manifest: dict[str, Any]) -> bytes:
    """The signed bytes: the manifest without its signature, as canonical JSON."""
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    return json.dumps(unsigned, sort_keys=True, separators=(",", ":")).encode()


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _load_private(path: str | Path) -> Any:
    ser = require("cryptography.hazmat.primitives.serialization")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    try:
        key = ser.load_pem_private_key(Path(path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable unencrypted PEM private key ({exc})") from None
    if not isinstance(key, ed.Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 private key")
    return key


def _load_public(path: str | Path) -> Any:
    ser = require("cryptography.hazmat.primitives.serialization")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    try:
        key = ser.load_pem_public_key(Path(path).read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable PEM public key ({exc})") from None
    if not isinstance(key, ed.Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


def _raw(public: Any) -> bytes:
    ser = require("cryptography.hazmat.primitives.serialization")
    return bytes(public.public_bytes(ser.Encoding.Raw, ser.PublicFormat.Raw))


def generate_keypair(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new Ed25519 key pair as PEM files; the private one readable by its owner only.
    Returns the key id (the first 16 hex digits of the public key's SHA-256)."""
    ser = require("cryptography.hazmat.primitives.serialization")
    ed = require("cryptography.hazmat.primitives.asymmetric.ed25519")
    key = ed.Ed25519PrivateKey.generate()
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    write_key_pair(private_path, public_path, private, public)
    return _key_id(_raw(key.public_key()))


def sign_manifest(manifest: dict[str, Any], private_key: str | Path) -> dict[str, Any]:
    """``manifest`` with an Ed25519 signature over its canonical JSON."""
    key = _load_private(private_key)
    signed = {k: v for k, v in manifest.items() if k != "signature"}
    signed["signature"] = {
        "algorithm": "ed25519",
        "key_id": _key_id(_raw(key.public_key())),
        "value": base64.b64encode(key.sign(_body(signed))).decode(),
    }
    return signed


def write_manifest(manifest: dict[str, Any], path: str | Path) -> Path:
    return atomic_write(path, json.dumps(manifest, indent=1) + "\n")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """A manifest read as plain JSON, with its shape checked."""
    try:
        manifest = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise IntegrityError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise IntegrityError(f"{path}: not a {FORMAT} manifest")
    samples = manifest.get("samples")
    if not isinstance(samples, list) or not all(
        isinstance(s, dict) and {"index", "sha256", "label", "source", "labeler"} <= set(s)
        for s in samples
    ):
        raise IntegrityError(f"{path}: the manifest's samples are malformed")
    return manifest


@dataclass
class Verification:
    """What changed between a manifest and the data (positions as described per list).

    Attributes:
        added: positions in the data of samples the manifest does not list.
        removed: positions in the manifest of samples the data no longer has.
        modified: positions (the same in both) whose content changed.
        relabeled: ``(data position, old label, new label)`` of samples whose content is
            unchanged but whose label is not.
        key_id: the id of the key that signed the manifest.
    """

    added: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    modified: list[int] = field(default_factory=list)
    relabeled: list[tuple[int, int, int]] = field(default_factory=list)
    key_id: str = ""
    samples: int = 0

    @property
    def ok(self) -> bool:
        return not (self.added or self.removed or self.modified or self.relabeled)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.removed)} removed, {len(self.modified)} "
            f"modified, {len(self.relabeled)} relabelled"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "key_id": self.key_id,
            "samples": self.samples,
            "added": self.added,
            "removed": self.removed,
            "modified": self.modified,
            "relabeled": [list(r) for r in self.relabeled],
        }

    def raise_for_changes(self) -> None:
        """Raise :class:`IntegrityError` naming the changed samples, unless nothing changed."""
        if self.ok:
            return

        def few(items: Sequence[Any]) -> str:
            shown = ", ".join(str(i) for i in items[:10])
            return shown + (f" and {len(items) - 10} more" if len(items) > 10 else "")

        parts = [
            f"{name} {few(items)}"
            for name, items in (
                ("added", self.added),
                ("removed", self.removed),
                ("modified", self.modified),
                ("relabelled", [r[0] for r in self.relabeled]),
            )
            if items
        ]
        raise IntegrityError(f"the data does not match its manifest: {'; '.join(parts)}")


def check_signature(manifest: dict[str, Any], public_key: str | Path) -> str:
    """The signing key's id if ``manifest`` was signed by ``public_key``; IntegrityError if not."""
    exceptions = require("cryptography.exceptions")
    key = _load_public(public_key)
    sig = manifest.get("signature")
    if not isinstance(sig, dict) or sig.get("algorithm") != "ed25519" or "value" not in sig:
        raise IntegrityError("the manifest is not signed (no Ed25519 signature)")
    expected = _key_id(_raw(key))
    if sig.get("key_id") != expected:
        raise IntegrityError(
            f"the manifest was signed by key {sig.get('key_id')}, not by the trusted key {expected}"
        )
    try:
        key.verify(base64.b64decode(sig["value"], validate=True), _body(manifest))
    except (exceptions.InvalidSignature, ValueError):
        raise IntegrityError("the manifest's signature does not verify: it was altered") from None
    if _root(manifest["samples"]) != manifest.get("root"):
        raise IntegrityError("the manifest's root hash does not match its samples")
    return expected


def verify_manifest(
    manifest: dict[str, Any], public_key: str | Path, x: np.ndarray, y: np.ndarray
) -> Verification:
    """Check ``manifest``'s signature with ``public_key`` and compare it with ``x``, ``y``.

    Raises :class:`IntegrityError` for a bad or foreign signature; returns the differences
    otherwise (call :meth:`Verification.raise_for_changes` to make any difference an error).
    Samples are matched by content first (so an insertion does not make every later sample
    look modified), then by position.
    """
    key_id = check_signature(manifest, public_key)
    if len(x) != len(y):
        raise ConfigError(f"{len(x)} samples but {len(y)} labels")
    listed = manifest["samples"]
    by_hash: dict[str, list[int]] = {}
    for m, s in enumerate(listed):
        by_hash.setdefault(s["sha256"], []).append(m)
    hashes = [sample_hash(x[i]) for i in range(len(x))]
    used = np.zeros(len(listed), dtype=bool)
    matched = np.full(len(x), -1)
    result = Verification(key_id=key_id, samples=len(x))
    # first the samples still at their place, then content that moved
    for exact in (True, False):
        for i, h in enumerate(hashes):
            if matched[i] >= 0:
                continue
            for m in by_hash.get(h, []):
                if not used[m] and (not exact or m == i):
                    used[m], matched[i] = True, m
                    break
    for i, m in enumerate(matched.tolist()):
        if m >= 0 and int(listed[m]["label"]) != int(y[i]):
            result.relabeled.append((i, int(listed[m]["label"]), int(y[i])))
    left = {int(m) for m in np.flatnonzero(~used)}
    for pos in np.flatnonzero(matched < 0).tolist():
        if pos in left:
            result.modified.append(pos)
            left.discard(pos)
        else:
            result.added.append(pos)
    result.removed = sorted(left)
    return result
