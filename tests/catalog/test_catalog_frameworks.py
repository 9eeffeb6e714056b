"""The catalog against the real frameworks: ids exist, names match, coverage, own words."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from bastion.catalog import (
    AidefendFramework,
    AtlasFramework,
    coverage,
    load_aidefend,
    load_atlas,
    load_catalog,
    verify,
)
from bastion.catalog.frameworks import AtlasTechnique
from bastion.core.errors import DataError

CATALOG = load_catalog()


def test_every_atlas_id_exists_and_every_name_matches(atlas_path: Path) -> None:
    # Read ATLAS.yaml directly, independently of bastion's loader.
    matrix = yaml.safe_load(atlas_path.read_text("utf-8"))["matrices"][0]
    techniques = {t["id"]: t for t in matrix["techniques"]}
    tactics = {t["id"]: t["name"] for t in matrix["tactics"]}
    mitigations = {m["id"]: m["name"] for m in matrix["mitigations"]}
    for tech in CATALOG.techniques.values():
        assert tech.id in techniques, tech.id
        assert tech.name == techniques[tech.id]["name"], tech.id
        assert tech.parent == techniques[tech.id].get("subtechnique-of"), tech.id
        if tech.parent is None:
            assert set(tech.tactics) == set(techniques[tech.id]["tactics"]), tech.id
    for tactic in CATALOG.tactics.values():
        assert tactics[tactic.id] == tactic.name
    for mit in CATALOG.mitigations.values():
        if mit.framework == "atlas":
            assert mitigations[mit.id] == mit.name, mit.id


def test_every_aidefend_id_exists_and_every_name_matches(aidefend_path: Path) -> None:
    raw = json.loads(aidefend_path.read_text("utf-8"))
    names = {}
    for tactic in raw["tactics"]:
        for tech in tactic["techniques"]:
            names[tech["id"]] = tech["name"]
            for sub in tech.get("subTechniques", []):
                names[sub["id"]] = sub["name"]
    used = [m for m in CATALOG.mitigations.values() if m.framework == "aidefend"]
    assert len(used) >= 40
    for mit in used:
        assert names.get(mit.id) == mit.name, mit.id
    for book in CATALOG.playbooks.values():
        for step in (*book.contain, *book.evict, *book.restore):
            assert step.controls, f"playbook {book.id} step without a control"
            for control in step.controls:
                assert control in names, control


def test_atlas_mitigation_links_follow_atlas(atlas: AtlasFramework) -> None:
    for mit in CATALOG.mitigations.values():
        if mit.framework == "atlas":
            assert set(mit.techniques) <= set(atlas.mitigations[mit.id].techniques), mit.id


def test_verify_reports_no_errors_and_no_gaps(
    atlas: AtlasFramework, aidefend: AidefendFramework
) -> None:
    report = verify(CATALOG, atlas, aidefend)
    assert report.errors == []
    # Every ATLAS technique is either described or deliberately out of scope.
    assert report.warnings == []
    assert report.ok
    assert report.atlas_version == "5.6.0"
    assert report.checked["atlas_techniques"] == len(CATALOG.techniques)


def test_verify_catches_a_wrong_name_and_a_missing_technique(atlas: AtlasFramework) -> None:
    techniques = dict(atlas.techniques)
    real = techniques["AML.T0015"]
    techniques["AML.T0015"] = AtlasTechnique(real.id, "Evade ML Model", real.tactics, real.parent)
    techniques["AML.T0999"] = AtlasTechnique("AML.T0999", "Brand New", ("AML.TA0011",), None)
    del techniques["AML.T0029"]
    changed = AtlasFramework("test", atlas.tactics, techniques, atlas.mitigations)
    report = verify(CATALOG, changed)
    assert not report.ok
    assert any("AML.T0015" in e and "Evade ML Model" in e for e in report.errors)
    assert any("AML.T0029" in e for e in report.errors)
    assert any("AML.T0999" in w for w in report.warnings)


def test_coverage_against_atlas(atlas: AtlasFramework) -> None:
    report = coverage(CATALOG, atlas)
    excluded = CATALOG.excluded_ids()
    assert report.applicable == len(atlas.techniques) - len(excluded)
    assert report.in_catalog == report.applicable
    assert report.missing == ()
    assert report.atlas_mitigations_total == len(atlas.mitigations)
    # The executable fraction is computed from the registry, not hard-coded.
    assert {"AML.T0043.000", "AML.T0043.001", "AML.T0015"} <= set(report.linked)
    assert report.executable_fraction == len(report.linked) / report.executable
    assert 0 < report.executable_fraction < 1
    assert report.attacks_not_in_catalog == ()


def test_coverage_without_registered_attacks_is_zero(atlas: AtlasFramework) -> None:
    report = coverage(CATALOG, atlas, attacks=[], defences=[])
    assert report.linked == {}
    assert report.executable_fraction == 0.0
    assert set(report.unlinked_executable) == {
        t.id for t in CATALOG.techniques.values() if t.executable
    }


def _shingles(text: str, n: int = 8) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def test_descriptions_are_our_own_words(atlas_path: Path, aidefend_path: Path) -> None:
    theirs: set[tuple[str, ...]] = set()
    matrix = yaml.safe_load(atlas_path.read_text("utf-8"))["matrices"][0]
    for group in ("tactics", "techniques", "mitigations"):
        for item in matrix[group]:
            theirs |= _shingles(str(item.get("description", "")))
    raw = json.loads(aidefend_path.read_text("utf-8"))
    for tactic in raw["tactics"]:
        theirs |= _shingles(str(tactic.get("description", "")))
        for tech in tactic["techniques"]:
            for entry in (tech, *tech.get("subTechniques", [])):
                theirs |= _shingles(str(entry.get("description", "")))
    entries = [
        *CATALOG.tactics.values(),
        *CATALOG.techniques.values(),
        *CATALOG.mitigations.values(),
    ]
    copied = [e.id for e in entries if _shingles(e.description) & theirs]
    assert copied == []


def test_loaders_reject_missing_and_malformed_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_atlas(tmp_path / "missing.yaml")
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("matrices: [unclosed\n")
    with pytest.raises(DataError, match="not valid YAML"):
        load_atlas(bad_yaml)
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("id: something-else\n")
    with pytest.raises(DataError, match="ATLAS distribution"):
        load_atlas(wrong)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_aidefend(bad_json)
    wrong_json = tmp_path / "wrong.json"
    wrong_json.write_text('{"tactics": [{"name": "Model"}]}')
    with pytest.raises(DataError, match="AIDEFEND"):
        load_aidefend(wrong_json)


def test_aidefend_loader_reads_version_and_atlas_mappings(aidefend: AidefendFramework) -> None:
    assert aidefend.version == "2026.06.25"
    hardening = aidefend.techniques["AID-H-001"]
    assert hardening.tactic == "harden"
    assert "AML.T0015" in hardening.atlas
    assert aidefend.techniques["AID-H-005.001"].parent == "AID-H-005"
