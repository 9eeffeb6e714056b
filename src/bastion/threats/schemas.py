"""The published JSON Schemas of bastion's threat-modeling files.

The shipped files under ``threats/schema/`` are generated from the pydantic models; a test
keeps them identical, and ``python -m bastion.threats.schemas DIR`` regenerates them.
"""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bastion.core.errors import ConfigError
from bastion.threats._io import write_inside
from bastion.threats.gaps import ControlSet
from bastion.threats.plan import AssessmentPlan
from bastion.threats.system import SystemDescription

__all__ = ["SCHEMAS", "generate_schema", "shipped_schema", "write_schemas"]

SCHEMAS: dict[str, type[BaseModel]] = {
    "system": SystemDescription,
    "controls": ControlSet,
    "plan": AssessmentPlan,
}
_TITLES = {
    "system": "bastion system description",
    "controls": "bastion controls declaration",
    "plan": "bastion assessment plan",
}


def generate_schema(name: str) -> dict[str, Any]:
    """The JSON Schema of file kind ``name`` (system, controls or plan)."""
    if name not in SCHEMAS:
        raise ConfigError(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    schema = SCHEMAS[name].model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"https://bastion-ml.github.io/schemas/{name}.schema.json",
        **schema,
        "title": _TITLES[name],
    }


def shipped_schema(name: str) -> dict[str, Any]:
    """The schema file shipped in the package for ``name``."""
    if name not in SCHEMAS:
        raise ConfigError(f"unknown schema {name!r}; known: {', '.join(SCHEMAS)}")
    text = resources.files("bastion.threats").joinpath(f"schema/{name}.schema.json").read_text()
    data: dict[str, Any] = json.loads(text)
    return data


def write_schemas(out_dir: str | Path) -> list[Path]:
    """Write every schema into ``out_dir`` (atomically, inside it) and return the paths."""
    out = Path(out_dir)
    return [
        write_inside(out, f"{name}.schema.json", json.dumps(generate_schema(name), indent=2) + "\n")
        for name in SCHEMAS
    ]


if __name__ == "__main__":
    write_schemas(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "schema")
