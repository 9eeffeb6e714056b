"""Reading user files (YAML or JSON) into validated models, with one-line errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from bastion.core.errors import ConfigError

__all__ = ["load_model_file", "read_mapping", "validation_message"]

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
