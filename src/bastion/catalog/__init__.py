"""The threat catalog: ATLAS techniques and mitigations described in bastion's own words.

The catalog is the only place where MITRE ATLAS and AIDEFEND ids are spelled out with their
names; attacks, defences and findings refer to entries by id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from bastion.core.errors import ConfigError

__all__ = ["CatalogEntry", "get_mitigation", "get_technique", "mitigations", "techniques"]


@dataclass(frozen=True)
class CatalogEntry:
    id: str
    name: str
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@lru_cache(maxsize=1)
def _load() -> dict[str, dict[str, CatalogEntry]]:
    text = resources.files("bastion.catalog").joinpath("data/catalog.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    out: dict[str, dict[str, CatalogEntry]] = {}
    for section in ("techniques", "mitigations"):
        out[section] = {}
        for item in raw.get(section, []):
            rest = {k: v for k, v in item.items() if k not in ("id", "name", "description")}
            out[section][item["id"]] = CatalogEntry(
                item["id"], item["name"], item.get("description", ""), rest
            )
    return out


def techniques() -> dict[str, CatalogEntry]:
    return dict(_load()["techniques"])


def mitigations() -> dict[str, CatalogEntry]:
    return dict(_load()["mitigations"])


def get_technique(technique_id: str) -> CatalogEntry:
    try:
        return _load()["techniques"][technique_id]
    except KeyError:
        raise ConfigError(f"no technique {technique_id!r} in the catalog") from None


def get_mitigation(mitigation_id: str) -> CatalogEntry:
    try:
        return _load()["mitigations"][mitigation_id]
    except KeyError:
        raise ConfigError(f"no mitigation {mitigation_id!r} in the catalog") from None
