"""The integrity of model files: what one would do when loaded, and whether it is signed.

:func:`inspect_model_file` reads a model file as data (pickle opcodes through fickling,
archives, ONNX external data, skops types, safetensors headers) and reports what loading it
would run; :func:`sign_model_file` and :func:`verify_model_file` sign and check model files
with the OpenSSF ``model-signing`` package and a local key. Both need the ``integrity``
extra (``pip install 'bastion-ml[integrity]'``). See ``docs/poisoning.md``.
"""

from __future__ import annotations

from bastion.integrity.inspect import LEVELS, FileFinding, ModelFileReport, inspect_model_file
from bastion.integrity.signing import (
    SignatureCheck,
    default_signature_path,
    generate_signing_key,
    sign_model_file,
    verify_model_file,
)

__all__ = [
    "LEVELS",
    "FileFinding",
    "ModelFileReport",
    "SignatureCheck",
    "default_signature_path",
    "generate_signing_key",
    "inspect_model_file",
    "sign_model_file",
    "verify_model_file",
]
