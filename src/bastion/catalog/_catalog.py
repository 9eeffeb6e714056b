"""The catalog as one object, loaded from package data and checked for internal consistency."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml
from pydantic import ValidationError

from bastion.catalog._models import (
    AttackPath,
    Mitigation,
    Playbook,
    Signal,
    Surface,
    Tactic,
    Technique,
)
from bastion.core.errors import ConfigError

__all__ = ["Catalog", "load_catalog"]

# A sub-technique takes these from its parent unless it sets them itself.
_INHERITED = (
    "tactics",
    "harms",
    "enabler",
    "prerequisites",
    "surfaces",
    "signals",
    "executable",
    "playbook",
)


@dataclass(frozen=True)
class Catalog:
    """Tactics, techniques, mitigations, signals, playbooks and attack paths, keyed by id."""

    tactics: Mapping[str, Tactic]
    techniques: Mapping[str, Technique]
    mitigations: Mapping[str, Mitigation]
    signals: Mapping[str, Signal]
    playbooks: Mapping[str, Playbook]
    paths: Mapping[str, AttackPath]
    excluded: Mapping[str, tuple[str, ...]]

    # --- look-ups ---------------------------------------------------------------------------
    def technique(self, technique_id: str) -> Technique:
        try:
            return self.techniques[technique_id]
        except KeyError:
            raise ConfigError(f"no technique {technique_id!r} in the catalog") from None

    def mitigation(self, mitigation_id: str) -> Mitigation:
        try:
            return self.mitigations[mitigation_id]
        except KeyError:
            raise ConfigError(f"no mitigation {mitigation_id!r} in the catalog") from None

    def get(self, any_id: str) -> Tactic | Technique | Mitigation | Signal | Playbook | AttackPath:
        """The entry with ``any_id``, whatever its kind."""
        for table in (
            self.techniques,
            self.mitigations,
            self.tactics,
            self.signals,
            self.playbooks,
            self.paths,
        ):
            if any_id in table:
                return table[any_id]
        raise ConfigError(f"no entry {any_id!r} in the catalog")

    def children(self, technique_id: str) -> list[Technique]:
        return [t for t in self.techniques.values() if t.parent == technique_id]

    def lineage(self, technique_id: str) -> tuple[str, ...]:
        """The technique and its parent, most specific first."""
        tech = self.technique(technique_id)
        return (tech.id, tech.parent) if tech.parent else (tech.id,)

    def mitigations_for(self, technique_id: str) -> list[Mitigation]:
        """Mitigations that counter the technique or its parent technique."""
        ids = set(self.lineage(technique_id))
        return [m for m in self.mitigations.values() if ids & set(m.techniques)]

    def techniques_for_signal(self, signal_id: str) -> list[Technique]:
        return [t for t in self.techniques.values() if signal_id in t.signals]

    def excluded_ids(self) -> dict[str, str]:
        """ATLAS technique id -> the reason group it is out of scope for."""
        return {tid: group for group, ids in self.excluded.items() for tid in ids}

    def search(self, text: str) -> list[Tactic | Technique | Mitigation | Signal]:
        """Entries whose id, name or description contain every word of ``text``, each word
        cut to its stem so that "extraction" finds "Extract AI Model"."""
        words = [_stem(w.lower()) for w in text.split() if w.strip()]
        if not words:
            raise ConfigError("search needs at least one word")
        found: list[Tactic | Technique | Mitigation | Signal] = []
        tables: Iterable[Mapping[str, Any]] = (
            self.techniques,
            self.mitigations,
            self.tactics,
            self.signals,
        )
        for table in tables:
            for entry in table.values():
                hay = f"{entry.id} {entry.name} {entry.description}".lower()
                if all(w in hay for w in words):
                    found.append(entry)
        return found

    # --- consistency ------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Broken cross-references inside the catalog (empty when consistent)."""
        out: list[str] = []
        for tech in self.techniques.values():
            if tech.parent is not None:
                if tech.parent not in self.techniques:
                    out.append(f"{tech.id}: parent {tech.parent} is not in the catalog")
                elif not tech.id.startswith(tech.parent + "."):
                    out.append(f"{tech.id}: id does not extend its parent {tech.parent}")
            elif not tech.tactics:
                out.append(f"{tech.id}: a top-level technique needs at least one tactic")
            out += [f"{tech.id}: unknown tactic {t}" for t in tech.tactics if t not in self.tactics]
            out += [f"{tech.id}: unknown signal {s}" for s in tech.signals if s not in self.signals]
            if tech.playbook is None or tech.playbook not in self.playbooks:
                out.append(f"{tech.id}: unknown playbook {tech.playbook}")
            if tech.attacks and not tech.executable:
                out.append(f"{tech.id}: links attacks but is not marked executable")
            if not tech.enabler and not tech.harms:
                out.append(f"{tech.id}: harms nothing and is not marked as an enabler")
            for surface in tech.surfaces:
                for alt in surface.split("|"):
                    if alt not in _SURFACES:
                        out.append(f"{tech.id}: unknown surface {alt}")
        for mit in self.mitigations.values():
            out += [
                f"{mit.id}: unknown technique {t}"
                for t in mit.techniques
                if t not in self.techniques
            ]
            out += [
                f"{mit.id}: unknown related entry {r}"
                for r in mit.related
                if r not in self.mitigations
            ]
            if (mit.framework == "atlas") != mit.id.startswith("AML."):
                out.append(f"{mit.id}: framework {mit.framework} does not match the id")
        for book in self.playbooks.values():
            for step in (*book.contain, *book.evict, *book.restore):
                out += [
                    f"playbook {book.id}: unknown control {c}"
                    for c in step.controls
                    if c not in self.mitigations
                ]
        for path in self.paths.values():
            out += [
                f"path {path.id}: unknown technique {s}"
                for s in path.steps
                if s not in self.techniques
            ]
        overlap = set(self.excluded_ids()) & set(self.techniques)
        out += [f"{tid}: both in the catalog and excluded from scope" for tid in sorted(overlap)]
        return out


_SURFACES = {s.value for s in Surface}


def _read(name: str) -> Any:
    text = resources.files("bastion.catalog").joinpath(f"data/{name}").read_text("utf-8")
    return yaml.safe_load(text)


def _resolve_inheritance(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    by_id = {item["id"]: item for item in raw}
    out = []
    for item in raw:
        merged = dict(item)
        parent = by_id.get(item.get("parent") or "")
        if parent is not None:
            for key in _INHERITED:
                if key not in merged and key in parent:
                    merged[key] = parent[key]
            # The tactics belong to the parent technique in ATLAS; the copy is for look-ups.
        out.append(merged)
    return out


def build_catalog(
    tactics: list[dict[str, Any]],
    techniques: list[dict[str, Any]],
    mitigations: list[dict[str, Any]],
    signals: list[dict[str, Any]],
    playbooks: list[dict[str, Any]],
    paths: list[dict[str, Any]],
    excluded: Mapping[str, list[str]],
) -> Catalog:
    """A :class:`Catalog` from raw mappings, validated; ``ConfigError`` on any problem."""
    try:
        catalog = Catalog(
            tactics={t["id"]: Tactic.model_validate(t) for t in tactics},
            techniques={
                t["id"]: Technique.model_validate(t) for t in _resolve_inheritance(techniques)
            },
            mitigations={m["id"]: Mitigation.model_validate(m) for m in mitigations},
            signals={s["id"]: Signal.model_validate(s) for s in signals},
            playbooks={p["id"]: Playbook.model_validate(p) for p in playbooks},
            paths={p["id"]: AttackPath.model_validate(p) for p in paths},
            excluded={k: tuple(v) for k, v in excluded.items()},
        )
    except (ValidationError, KeyError, TypeError) as exc:
        raise ConfigError(f"the threat catalog is malformed: {exc}") from exc
    problems = catalog.problems()
    if problems:
        raise ConfigError("the threat catalog is inconsistent: " + "; ".join(problems))
    return catalog


def load_catalog(*, links: bool = True) -> Catalog:
    """The catalog shipped with bastion, with each technique's ``attacks`` and each
    mitigation's ``defences`` derived from the plugin registries (never kept by hand).

    ``links=False`` skips the plugins (and their imports) for callers that need only the
    catalog's own text: signal names for a command's help, say.
    """
    if not links:
        return _shipped()
    from bastion.core.plugins import load_plugins
    from bastion.core.registry import ATTACKS, DEFENCES

    load_plugins()
    return _linked(ATTACKS.version, DEFENCES.version)


@lru_cache(maxsize=4)
def _linked(attacks_version: int, defences_version: int) -> Catalog:
    from bastion.core.registry import ATTACKS, DEFENCES

    base = _shipped()
    techniques = {
        tid: t.model_copy(update={"attacks": tuple(e.name for e in ATTACKS if tid in e.techniques)})
        for tid, t in base.techniques.items()
    }
    mitigations = {
        mid: m.model_copy(
            update={"defences": tuple(e.name for e in DEFENCES if mid in e.mitigations)}
        )
        for mid, m in base.mitigations.items()
    }
    return dataclasses.replace(base, techniques=techniques, mitigations=mitigations)


@lru_cache(maxsize=1)
def _shipped() -> Catalog:
    """The catalog as its YAML files say, without links to plugins."""
    return build_catalog(
        tactics=_read("tactics.yaml")["tactics"],
        techniques=_read("techniques.yaml")["techniques"],
        mitigations=_read("mitigations.yaml")["mitigations"],
        signals=_read("signals.yaml")["signals"],
        playbooks=_read("playbooks.yaml")["playbooks"],
        paths=_read("paths.yaml")["paths"],
        excluded=_read("scope.yaml")["excluded"],
    )


_SUFFIXES = ("ation", "ions", "ion", "ing", "ers", "er", "ed", "es", "s")


def _stem(word: str) -> str:
    """A crude English stem: drop one common suffix, keeping at least four letters."""
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 4:
            return word[: -len(suffix)]
    return word
