"""The shipped catalog: internal consistency, public look-ups and links to the registries."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

import bastion.attacks  # noqa: F401  (fills the attack registry)
from bastion import catalog as cat_api
from bastion.catalog import build_catalog, load_catalog
from bastion.catalog._catalog import _read
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS, DEFENCES

CATALOG = load_catalog()

# Ids the scan and report code emit; they must stay in the catalog.
SCAN_TECHNIQUES = ["AML.T0043.000", "AML.T0043.001", "AML.T0043", "AML.T0015"]
SCAN_MITIGATIONS = ["AML.M0002", "AML.M0003", "AML.M0004", "AML.M0010", "AML.M0015"]


def test_catalog_is_internally_consistent() -> None:
    assert CATALOG.problems() == []


def test_catalog_has_the_expected_scale() -> None:
    # Every stage of the path, the applicable ATLAS techniques, both frameworks' controls.
    assert len(CATALOG.tactics) >= 9
    assert len(CATALOG.techniques) >= 70
    frameworks = {m.framework for m in CATALOG.mitigations.values()}
    assert frameworks == {"atlas", "aidefend"}
    assert len(CATALOG.signals) >= 20


@pytest.mark.parametrize("technique_id", SCAN_TECHNIQUES)
def test_scan_techniques_resolve(technique_id: str) -> None:
    entry = cat_api.get_technique(technique_id)
    assert entry.id == technique_id
    assert entry.name
    assert len(entry.description) > 40


@pytest.mark.parametrize("mitigation_id", SCAN_MITIGATIONS)
def test_scan_mitigations_resolve(mitigation_id: str) -> None:
    entry = cat_api.get_mitigation(mitigation_id)
    assert (entry.id, entry.framework) == (mitigation_id, "atlas")
    assert entry.name
    assert entry.description


def test_public_mappings_are_copies() -> None:
    techniques = cat_api.techniques()
    techniques.clear()
    assert "AML.T0015" in cat_api.techniques()
    assert "AID-H-001" in cat_api.mitigations()


@pytest.mark.parametrize(
    ("func", "bad"), [(cat_api.get_technique, "AML.T9999"), (cat_api.get_mitigation, "AML.M9999")]
)
def test_unknown_ids_raise_config_error(func: Any, bad: str) -> None:
    with pytest.raises(ConfigError, match="AML"):
        func(bad)


def test_subtechniques_inherit_from_parent() -> None:
    parent = CATALOG.technique("AML.T0043")
    child = CATALOG.technique("AML.T0043.000")
    assert child.parent == parent.id
    assert child.tactics == parent.tactics
    assert child.harms == parent.harms
    # Links to attacks are never inherited: each sub-technique names its own, the attacks
    # whose registry entries declare it, and a sibling gets none of the parent's.
    white_box = {e.name for e in ATTACKS if "AML.T0043.000" in e.techniques}
    assert {"fgsm", "pgd"} <= white_box
    assert set(child.attacks) == white_box
    assert set(CATALOG.technique("AML.T0043.002").attacks) == {"transfer"}


def test_every_technique_has_what_a_security_team_needs() -> None:
    for tech in CATALOG.techniques.values():
        assert tech.description, tech.id
        assert tech.surfaces, f"{tech.id} has no prerequisites for scoring"
        assert tech.playbook in CATALOG.playbooks, tech.id
        if not tech.enabler:
            assert tech.harms, tech.id
            assert CATALOG.mitigations_for(tech.id), f"{tech.id} has no mitigation"


def test_every_signal_reveals_some_technique() -> None:
    for signal in CATALOG.signals:
        assert CATALOG.techniques_for_signal(signal), signal


def test_tactics_follow_the_adversary_path() -> None:
    stages = [t.stage for t in sorted(CATALOG.tactics.values(), key=lambda t: t.order)]
    for expected in (
        "reconnaissance",
        "resource-development",
        "initial-access",
        "model-access",
        "staging",
        "evasion",
        "poisoning-persistence",
        "exfiltration",
        "impact",
    ):
        assert expected in stages
    assert stages.index("reconnaissance") < stages.index("model-access") < stages.index("impact")


def test_mitigations_for_includes_parent_level_mitigations() -> None:
    ids = {m.id for m in CATALOG.mitigations_for("AML.T0043.002")}
    assert "AML.M0003" in ids  # lists the sub-technique itself
    assert "AML.M0002" in ids  # lists the parent technique AML.T0043


def test_search_finds_by_words_in_any_field() -> None:
    ids = {e.id for e in CATALOG.search("membership")}
    assert "AML.T0024.000" in ids
    assert {e.id for e in CATALOG.search("AML.M0004")} == {"AML.M0004"}
    assert CATALOG.search("zzz-not-there") == []
    with pytest.raises(ConfigError):
        CATALOG.search("   ")


def test_get_any_kind_of_entry() -> None:
    assert CATALOG.get("AML.TA0001").name == "AI Attack Staging"
    assert CATALOG.get("query-volume-spike").id == "query-volume-spike"
    assert CATALOG.get("extraction-transfer").id == "extraction-transfer"
    with pytest.raises(ConfigError):
        CATALOG.get("nope")


def test_scope_excludes_only_what_the_catalog_lacks() -> None:
    excluded = CATALOG.excluded_ids()
    assert set(excluded.values()) == {"genai", "agent", "generic-it"}
    assert not set(excluded) & set(CATALOG.techniques)


# --- links to the registries ----------------------------------------------------------------


def _links() -> list[tuple[str, str]]:
    return [(t.id, a) for t in CATALOG.techniques.values() for a in t.attacks]


@pytest.mark.parametrize(("technique_id", "attack"), _links())
def test_every_attack_link_resolves_to_a_registered_attack(technique_id: str, attack: str) -> None:
    assert attack in ATTACKS, f"{technique_id} links {attack!r}, which is not registered"
    assert CATALOG.technique(technique_id).executable


@pytest.mark.parametrize("entry", list(ATTACKS), ids=lambda e: e.name)
def test_every_registered_attack_is_in_the_catalog(entry: Any) -> None:
    assert entry.techniques, f"attack {entry.name} declares no ATLAS technique"
    for tid in entry.techniques:
        tech = CATALOG.technique(tid)  # raises if the catalog lacks it
        assert entry.name in tech.attacks, f"{tid} does not link registered attack {entry.name}"


def test_every_defence_link_resolves_to_a_registered_defence() -> None:
    links = [(m.id, d) for m in CATALOG.mitigations.values() for d in m.defences]
    unknown = [(m, d) for m, d in links if d not in DEFENCES]
    assert unknown == []


@pytest.mark.parametrize("entry", list(DEFENCES), ids=lambda e: e.name)
def test_every_registered_defence_is_in_the_catalog(entry: Any) -> None:
    linked = [m.id for m in CATALOG.mitigations.values() if entry.name in m.defences]
    assert linked, f"no catalog mitigation links registered defence {entry.name}"
    for tid in entry.techniques:
        CATALOG.technique(tid)


# --- the loader rejects broken data ---------------------------------------------------------


def _raw() -> dict[str, Any]:
    return {
        "tactics": _read("tactics.yaml")["tactics"],
        "techniques": _read("techniques.yaml")["techniques"],
        "mitigations": _read("mitigations.yaml")["mitigations"],
        "signals": _read("signals.yaml")["signals"],
        "playbooks": _read("playbooks.yaml")["playbooks"],
        "paths": _read("paths.yaml")["paths"],
        "excluded": _read("scope.yaml")["excluded"],
    }


def test_build_catalog_from_raw_data_matches_the_shipped_one() -> None:
    rebuilt = build_catalog(**_raw())
    assert set(rebuilt.techniques) == set(CATALOG.techniques)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r["techniques"][1].update(parent="AML.T0999"), "parent"),
        (lambda r: r["techniques"][0].update(signals=["no-such-signal"]), "unknown signal"),
        (lambda r: r["mitigations"][0].update(techniques=["AML.T0999"]), "unknown technique"),
        (lambda r: r["paths"][0].update(steps=["AML.T0040", "AML.T0999"]), "path"),
        (lambda r: r["techniques"][0].update(surfaces=["telepathy"]), "unknown surface"),
        (lambda r: r["techniques"][0].update(colour="red"), "malformed"),
        (lambda r: r["excluded"]["genai"].append("AML.T0015"), "excluded"),
    ],
)
def test_build_catalog_rejects_inconsistent_data(mutate: Any, message: str) -> None:
    raw = copy.deepcopy(_raw())
    mutate(raw)
    with pytest.raises(ConfigError, match=message):
        build_catalog(**raw)


def test_data_files_are_plain_yaml_mappings() -> None:
    from importlib import resources

    folder = resources.files("bastion.catalog").joinpath("data")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".yaml"))
    assert names == [
        "mitigations.yaml",
        "paths.yaml",
        "playbooks.yaml",
        "scope.yaml",
        "signals.yaml",
        "tactics.yaml",
        "techniques.yaml",
    ]
    for name in names:
        assert isinstance(yaml.safe_load(folder.joinpath(name).read_text("utf-8")), dict)
