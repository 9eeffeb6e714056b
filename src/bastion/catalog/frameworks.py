"""Loaders for a user's copy of MITRE ATLAS and AIDEFEND, and verification of the catalog.

bastion ships no framework text. Point these loaders at ``ATLAS.yaml`` (the ATLAS distribution
file) and AIDEFEND's ``data.json`` to check that every id and name in the catalog is real and to
measure coverage against the whole framework.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bastion.catalog._catalog import Catalog
from bastion.core.errors import DataError

__all__ = [
    "AidefendFramework",
    "AidefendTechnique",
    "AtlasFramework",
    "AtlasMitigation",
    "AtlasTechnique",
    "VerifyReport",
    "load_aidefend",
    "load_atlas",
    "verify",
]

_ATLAS_ID = re.compile(r"(AML\.T\d{4}(?:\.\d{3})?)")


@dataclass(frozen=True)
class AtlasTechnique:
    id: str
    name: str
    tactics: tuple[str, ...]
    parent: str | None
    maturity: str | None = None


@dataclass(frozen=True)
class AtlasMitigation:
    id: str
    name: str
    techniques: tuple[str, ...]


@dataclass(frozen=True)
class AtlasFramework:
    """The ids, names and links of one ATLAS release (no descriptions are kept)."""

    version: str
    tactics: dict[str, str]
    techniques: dict[str, AtlasTechnique]
    mitigations: dict[str, AtlasMitigation]


@dataclass(frozen=True)
class AidefendTechnique:
    id: str
    name: str
    tactic: str
    atlas: tuple[str, ...]
    parent: str | None


@dataclass(frozen=True)
class AidefendFramework:
    """The ids, names and ATLAS mappings of one AIDEFEND release."""

    version: str
    techniques: dict[str, AidefendTechnique]


def _read_text(path: str | Path, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise DataError(f"{what} file not found: {p}")
    try:
        return p.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read {what} file {p}: {exc}") from exc


def load_atlas(path: str | Path) -> AtlasFramework:
    """Read an ATLAS distribution file (``ATLAS.yaml``); ``DataError`` if it is not one."""
    try:
        raw = yaml.safe_load(_read_text(path, "ATLAS"))
    except yaml.YAMLError as exc:
        raise DataError(f"{path} is not valid YAML: {exc}") from exc
    try:
        matrix = raw["matrices"][0]
        tactics = {t["id"]: t["name"] for t in matrix["tactics"]}
        techniques = {
            t["id"]: AtlasTechnique(
                id=t["id"],
                name=t["name"],
                tactics=tuple(t.get("tactics", ())),
                parent=t.get("subtechnique-of"),
                maturity=t.get("maturity"),
            )
            for t in matrix["techniques"]
        }
        mitigations = {
            m["id"]: AtlasMitigation(
                id=m["id"],
                name=m["name"],
                techniques=tuple(
                    x["id"] if isinstance(x, dict) else str(x) for x in m.get("techniques", ())
                ),
            )
            for m in matrix["mitigations"]
        }
        version = str(raw.get("version", "unknown"))
    except (KeyError, IndexError, TypeError) as exc:
        raise DataError(f"{path} does not look like an ATLAS distribution file ({exc!r})") from exc
    return AtlasFramework(version, tactics, techniques, mitigations)


def load_aidefend(path: str | Path) -> AidefendFramework:
    """Read AIDEFEND's JSON export (``data.json``); ``DataError`` if it is not one."""
    try:
        raw = json.loads(_read_text(path, "AIDEFEND"))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from exc
    out: dict[str, AidefendTechnique] = {}
    try:
        for tactic in raw["tactics"]:
            for tech in tactic["techniques"]:
                for entry in (tech, *tech.get("subTechniques", ())):
                    out[entry["id"]] = AidefendTechnique(
                        id=entry["id"],
                        name=entry["name"],
                        tactic=str(tactic["name"]).lower(),
                        atlas=_atlas_items(entry),
                        parent=None if entry is tech else tech["id"],
                    )
        version = raw.get("version", "unknown")
        if isinstance(version, dict):
            version = version.get("dataVersion") or version.get("schemaVersion") or "unknown"
    except (KeyError, TypeError) as exc:
        raise DataError(f"{path} does not look like an AIDEFEND export ({exc!r})") from exc
    return AidefendFramework(str(version), out)


def _atlas_items(entry: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for block in entry.get("defendsAgainst", ()):
        if "ATLAS" not in str(block.get("framework", "")):
            continue
        for item in block.get("items", ()):
            match = _ATLAS_ID.match(str(item))
            if match:
                found.append(match.group(1))
    return tuple(found)


@dataclass
class VerifyReport:
    """What checking the catalog against the frameworks found.

    ``errors`` are wrong ids or names (the catalog must be fixed); ``warnings`` are gaps worth a
    look (an applicable ATLAS technique missing from the catalog, a scope entry ATLAS no longer
    has); ``notes`` are deliberate differences (links bastion adds beyond a framework's own).
    """

    atlas_version: str | None = None
    aidefend_version: str | None = None
    checked: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "atlas_version": self.atlas_version,
            "aidefend_version": self.aidefend_version,
            "checked": dict(self.checked),
            "errors": list(self.errors),
            "warnings": list(self.warnings),
            "notes": list(self.notes),
        }


def verify(
    catalog: Catalog,
    atlas: AtlasFramework | None = None,
    aidefend: AidefendFramework | None = None,
) -> VerifyReport:
    """Check every framework id and name in ``catalog`` against the frameworks given."""
    report = VerifyReport()
    if atlas is not None:
        _verify_atlas(catalog, atlas, report)
    if aidefend is not None:
        _verify_aidefend(catalog, aidefend, report)
    return report


def _verify_atlas(catalog: Catalog, atlas: AtlasFramework, report: VerifyReport) -> None:
    report.atlas_version = atlas.version
    err, warn, note = report.errors.append, report.warnings.append, report.notes.append
    for tactic in catalog.tactics.values():
        if tactic.id not in atlas.tactics:
            err(f"tactic {tactic.id} is not in ATLAS {atlas.version}")
        elif atlas.tactics[tactic.id] != tactic.name:
            err(f"tactic {tactic.id}: name {tactic.name!r} != ATLAS {atlas.tactics[tactic.id]!r}")
    for tech in catalog.techniques.values():
        real = atlas.techniques.get(tech.id)
        if real is None:
            err(f"technique {tech.id} is not in ATLAS {atlas.version}")
            continue
        if real.name != tech.name:
            err(f"technique {tech.id}: name {tech.name!r} != ATLAS {real.name!r}")
        if real.parent != tech.parent:
            err(f"technique {tech.id}: parent {tech.parent} != ATLAS {real.parent}")
        if real.maturity is not None and real.maturity != tech.maturity:
            err(f"technique {tech.id}: maturity {tech.maturity} != ATLAS {real.maturity}")
        if tech.parent is None and set(real.tactics) != set(tech.tactics):
            ours, theirs = sorted(tech.tactics), sorted(real.tactics)
            err(f"technique {tech.id}: tactics {ours} != ATLAS {theirs}")
    excluded = catalog.excluded_ids()
    for tid in sorted(excluded):
        if tid not in atlas.techniques:
            warn(f"scope lists {tid}, which ATLAS {atlas.version} does not have")
    for tid, real in atlas.techniques.items():
        if tid not in catalog.techniques and tid not in excluded:
            warn(f"ATLAS technique {tid} ({real.name}) is neither in the catalog nor out of scope")
    n_mit = 0
    for mit in catalog.mitigations.values():
        if mit.framework != "atlas":
            continue
        n_mit += 1
        real_m = atlas.mitigations.get(mit.id)
        if real_m is None:
            err(f"mitigation {mit.id} is not in ATLAS {atlas.version}")
            continue
        if real_m.name != mit.name:
            err(f"mitigation {mit.id}: name {mit.name!r} != ATLAS {real_m.name!r}")
        extra = sorted(set(mit.techniques) - set(real_m.techniques))
        if extra:
            note(f"mitigation {mit.id}: bastion also links {', '.join(extra)}")
    report.checked.update(
        atlas_tactics=len(catalog.tactics),
        atlas_techniques=len(catalog.techniques),
        atlas_mitigations=n_mit,
    )


def _verify_aidefend(catalog: Catalog, aidefend: AidefendFramework, report: VerifyReport) -> None:
    report.aidefend_version = aidefend.version
    n = 0
    for mit in catalog.mitigations.values():
        if mit.framework != "aidefend":
            continue
        n += 1
        real = aidefend.techniques.get(mit.id)
        if real is None:
            report.errors.append(
                f"defensive technique {mit.id} is not in AIDEFEND {aidefend.version}"
            )
            continue
        if real.name != mit.name:
            report.errors.append(
                f"defensive technique {mit.id}: name {mit.name!r} != {real.name!r}"
            )
        mapped = set(real.atlas)
        if real.parent is not None and real.parent in aidefend.techniques:
            mapped |= set(aidefend.techniques[real.parent].atlas)
        extra = sorted(set(mit.techniques) - mapped)
        if extra:
            report.notes.append(
                f"defensive technique {mit.id}: bastion also links {', '.join(extra)}"
            )
    for book in catalog.playbooks.values():
        for step in (*book.contain, *book.evict, *book.restore):
            for control in step.controls:
                if control.startswith("AID-") and control not in aidefend.techniques:
                    report.errors.append(f"playbook {book.id}: {control} is not in AIDEFEND")
    report.checked["aidefend_techniques"] = n
