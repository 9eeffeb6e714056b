"""Signing model files, and refusing the ones whose signature does not verify.

Signatures are made with the OpenSSF ``model-signing`` package (the ``integrity`` extra) and
a local elliptic-curve key: a Sigstore bundle holding an in-toto statement of the SHA-256 of
every file signed, signed with the key. Nothing goes online (no Fulcio certificate, no
transparency log), and the bundle verifies with OpenSSF's own tool too
(``model_signing verify key --public_key KEY --signature SIG MODEL``).
``model-signing`` takes NIST P-256, P-384 and P-521 keys; :func:`generate_signing_key`
makes a P-256 pair. (Data manifests, ``bastion data sign``, use Ed25519, which
``model-signing`` does not take.)

A signature that does not verify, a file changed since signing, a signature made by another
key, or a damaged signature file is an :class:`~bastion.core.errors.IntegrityError`: a model
whose signature does not verify should not be loaded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion._extras import require
from bastion.core.errors import ConfigError, IntegrityError
from bastion.core.files import atomic_write, write_key_pair

__all__ = [
    "SignatureCheck",
    "default_signature_path",
    "generate_signing_key",
    "sign_model_file",
    "verify_model_file",
]

_CURVES = ("secp256r1", "secp384r1", "secp521r1")


@dataclass(frozen=True)
class SignatureCheck:
    """A verified signature: the model path, the signature file and the signer's key id."""

    path: str
    signature: str
    key_id: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "signature": self.signature, "key_id": self.key_id, "ok": True}


def default_signature_path(model: str | Path) -> Path:
    """Where a model's signature goes unless told otherwise: ``MODEL.sig`` beside it."""
    p = Path(model)
    return p.with_name(p.name + ".sig")


def _key_id(public: Any) -> str:
    ser = require("cryptography.hazmat.primitives.serialization")
    der = public.public_bytes(ser.Encoding.DER, ser.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()[:16]


def _check_curve(key: Any, path: Path, what: str) -> None:
    ec = require("cryptography.hazmat.primitives.asymmetric.ec")
    ok_types = (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)
    if not isinstance(key, ok_types) or key.curve.name not in _CURVES:
        raise ConfigError(
            f"{path}: not an elliptic-curve {what} key (P-256, P-384 or P-521), which model "
            "signing needs; make one with `bastion model keygen`"
        )


def _load_private(path: str | Path) -> Any:
    ser = require("cryptography.hazmat.primitives.serialization")
    p = Path(path)
    try:
        key = ser.load_pem_private_key(p.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{p}: not a readable unencrypted PEM private key ({exc})") from None
    _check_curve(key, p, "private")
    return key


def _load_public(path: str | Path) -> Any:
    ser = require("cryptography.hazmat.primitives.serialization")
    p = Path(path)
    try:
        key = ser.load_pem_public_key(p.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"{p}: not a readable PEM public key ({exc})") from None
    _check_curve(key, p, "public")
    return key


def generate_signing_key(private_path: str | Path, public_path: str | Path) -> str:
    """Write a new P-256 key pair as PEM files, the private one readable by its owner only
    (never overwritten). Returns the key id: 16 hex digits of the public key's SHA-256."""
    ser = require("cryptography.hazmat.primitives.serialization")
    ec = require("cryptography.hazmat.primitives.asymmetric.ec")
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    public = key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    write_key_pair(private_path, public_path, private, public)
    return _key_id(key.public_key())


def _model_path(model: str | Path) -> Path:
    p = Path(model)
    if not p.exists():
        raise ConfigError(f"{p}: no such model file or folder")
    return p


def sign_model_file(
    model: str | Path, private_key: str | Path, signature: str | Path | None = None
) -> Path:
    """Sign ``model`` (a file, or a folder: every file in it) with ``private_key``.

    The signature goes to ``signature`` (default ``MODEL.sig``). Returns its path.

    Example::

        generate_signing_key("team.pem", "team.pub")
        sign_model_file("model.safetensors", "team.pem")
        verify_model_file("model.safetensors", "team.pub")
    """
    p = _model_path(model)
    _load_private(private_key)
    out = Path(signature) if signature is not None else default_signature_path(p)
    signing = require("model_signing.signing")
    tmp = out.with_name(f".{out.name}.part")
    try:
        signing.Config().use_elliptic_key_signer(private_key=Path(private_key)).sign(p, tmp)
        atomic_write(out, tmp.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{p}: cannot sign ({exc})") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def verify_model_file(
    model: str | Path, public_key: str | Path, signature: str | Path | None = None
) -> SignatureCheck:
    """Check that ``model`` is exactly what the holder of ``public_key`` signed.

    Raises :class:`~bastion.core.errors.IntegrityError` when the signature is missing,
    damaged, made by another key, or when any byte of the model changed since signing.
    """
    p = _model_path(model)
    public = _load_public(public_key)
    sig = Path(signature) if signature is not None else default_signature_path(p)
    if not sig.is_file():
        raise IntegrityError(f"{p}: no signature at {sig}")
    verifying = require("model_signing.verifying")
    try:
        verifying.Config().use_elliptic_key_verifier(public_key=Path(public_key)).verify(p, sig)
    # model-signing reports a changed file, another key and a bad signature as ValueError,
    # a damaged bundle as a JSON or protobuf decoding error (ValueError subclasses) or a
    # KeyError/TypeError on a missing field
    except (ValueError, KeyError, TypeError, OSError) as exc:
        raise IntegrityError(f"{p}: the signature does not verify: {_reason(exc)}") from None
    return SignatureCheck(path=str(p), signature=str(sig), key_id=_key_id(public))


def _reason(exc: Exception) -> str:
    text = str(exc)
    if "Key mismatch" in text:
        return "it was signed by another key"
    if "Hash mismatch" in text or "Signature mismatch" in text:
        return "the model changed since it was signed"
    if "Missing" in text or "Extra" in text:
        return "files were added or removed since signing"
    first = text.splitlines()[0] if text else type(exc).__name__
    return f"a damaged or foreign signature ({first[:120]})"
