"""Reading user files (YAML or JSON) into validated models, and writing outputs into a folder.

Reads give one-line errors. Writes go through :func:`bastion.core.files.atomic_write` (one
file mode, never half a file) and only ever land inside the output folder the user named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bastion.core.errors import ConfigError
from bastion.core.files import atomic_write

__all__ = ["inside", "load_model_file", "read_mapping", "validation_message", "write_inside"]

M = TypeVar("M", bound=BaseModel)


def read_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The top-level mapping of a YAML or JSON file; ``ConfigError`` when it is not one."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{what} file not found: {p}")
    try:
        text = p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {what} file {p}: {exc}") from exc
    try:
        raw = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"{what} file {p} is not valid YAML/JSON: {detail}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{what} file {p} must hold a mapping at the top level")
    return raw


def validation_message(exc: ValidationError) -> str:
    """A pydantic error as one readable line: ``field.path: problem; ...``."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{loc}: {err['msg']}")
    more = len(exc.errors()) - 5
    if more > 0:
        parts.append(f"and {more} more")
    return "; ".join(parts)


def load_model_file(path: str | Path, model: type[M], what: str) -> M:
    """Read ``path`` and validate it as ``model``; ``ConfigError`` on any problem."""
    raw = read_mapping(path, what)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"invalid {what} {path}: {validation_message(exc)}") from exc


def inside(folder: str | Path, path: str | Path) -> Path:
    """``path`` (relative to the working folder) resolved, if it lies in ``folder``.

    ``ConfigError`` otherwise. Both are resolved first, so ``..`` components and symbolic
    links (to a file or a folder elsewhere) cannot carry a write out of the folder the user
    chose for outputs.
    """
    root = Path(folder).resolve()
    resolved = Path(path).resolve()
    if root not in resolved.parents:
        raise ConfigError(f"refusing to write {path}: it resolves outside the output folder {root}")
    return resolved


def write_inside(folder: str | Path, name: str | Path, content: str) -> Path:
    """Write ``content`` atomically to ``folder/name``, refusing a path that escapes ``folder``.

    Returns the path as the caller named it (``folder/name``), so messages show what the user
    asked for rather than a resolved absolute path.
    """
    requested = Path(folder) / name
    Path(folder).mkdir(parents=True, exist_ok=True)
    atomic_write(inside(folder, requested), content)
    return requested
