"""Import optional dependencies with a message that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

from bastion.core.errors import MissingExtraError

# module -> the extra of bastion that installs it
_EXTRA_OF = {
    "onnxruntime": "onnx",
    "onnx": "onnx",
    "mlxtend": "datasets",
    "fastapi": "serve",
    "uvicorn": "serve",
    "httpx": "serve",
    "sqlalchemy": "serve",
    "psycopg": "postgres",
    "limits": "serve",
    "prometheus_client": "serve",
    "opacus": "privacy",
    "ray": "distributed",
    "art": "peers",
    "cleanlab": "poisoning",
    "cryptography": "poisoning",
    "fickling": "integrity",
    "model_signing": "integrity",
    "OpenSSL": "integrity",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra that provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = _EXTRA_OF.get(module.split(".")[0])
        hint = f"pip install 'bastion-ml[{extra}]'" if extra else f"pip install {module}"
        raise MissingExtraError(
            f"this feature needs the optional package {module!r}: {hint}"
        ) from exc
