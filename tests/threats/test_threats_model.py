"""Threat models of the example systems: validation, ranking, paths, mitigations, plan."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from bastion.catalog import load_catalog
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.threats import (
    AssessmentPlan,
    SystemDescription,
    ThreatModel,
    build_threat_model,
    load_plan,
    load_system,
    save_plan,
)
from bastion.threats.render import (
    navigator_layer,
    render_threat_model_html,
    render_threat_model_markdown,
    write_threat_model,
)
from bastion.threats.schemas import SCHEMAS, generate_schema, shipped_schema
from bastion.threats.scoring import band

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "threats"
SYSTEMS = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.stem.endswith("controls"))
HIGH = ("high", "critical")


def _rank(tm: ThreatModel, technique: str) -> int:
    return [t.technique for t in tm.techniques].index(technique)


# --- schemas and validation -----------------------------------------------------------------


def test_there_are_five_example_systems() -> None:
    assert {p.stem for p in SYSTEMS} == {
        "fraud-scoring-api",
        "medical-imaging",
        "face-access-control",
        "vehicle-perception",
        "voice-commands",
    }


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_shipped_schemas_match_the_models(name: str) -> None:
    assert shipped_schema(name) == generate_schema(name)
    jsonschema.Draft202012Validator.check_schema(shipped_schema(name))


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.stem)
def test_examples_validate_against_the_published_schema(path: Path) -> None:
    data = yaml.safe_load(path.read_text("utf-8"))
    jsonschema.validate(data, shipped_schema("system"))
    assert load_system(path).name


def test_schema_rejects_what_the_model_rejects() -> None:
    data = yaml.safe_load((EXAMPLES / "fraud-scoring-api.yaml").read_text("utf-8"))
    data["assets"]["endpoints"][0]["exposure"] = "carrier-pigeon"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, shipped_schema("system"))
    with pytest.raises(ValueError, match="exposure"):
        SystemDescription.model_validate(data)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "system.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d["assets"]["models"][0].update(trained_on=["ghost"]), "unknown dataset"),
        (lambda d: d["assets"]["endpoints"][0].update(model="ghost"), "unknown model"),
        (lambda d: d["assets"]["datasets"][0].update(id="fraud-model"), "unique"),
        (lambda d: d["assets"]["models"][0].update(colour="red"), "colour"),
        (lambda d: d["impact"].update(integrity="apocalyptic"), "integrity"),
        (lambda d: d["assets"].update(models=[]), "models"),
    ],
)
def test_invalid_systems_raise_one_line_config_errors(
    tmp_path: Path, mutate: object, message: str
) -> None:
    data = yaml.safe_load((EXAMPLES / "fraud-scoring-api.yaml").read_text("utf-8"))
    mutate(data)  # type: ignore[operator]
    path = _write(tmp_path, yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as info:
        load_system(path)
    assert "\n" not in str(info.value)


def test_unreadable_system_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_system(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_system(_write(tmp_path, "name: [unclosed\n"))
    with pytest.raises(ConfigError, match="mapping"):
        load_system(_write(tmp_path, "- just\n- a list\n"))


# --- ranking of the example systems ---------------------------------------------------------


def test_public_fraud_api_ranks_extraction_and_evasion_high(models: dict[str, ThreatModel]) -> None:
    tm = models["fraud-scoring-api"]
    evasion = tm.technique("AML.T0015")
    extraction = tm.technique("AML.T0024.002")
    assert evasion is not None
    assert evasion.band == "critical"
    assert extraction is not None
    assert extraction.band in HIGH
    assert _rank(tm, "AML.T0015") == 0
    assert _rank(tm, "AML.T0024.002") < len(tm.techniques) // 4
    assert tm.technique("AML.T0041") is None  # no physical-world inputs
    assert tm.technique("AML.T0088") is None  # not biometric
    paths = {p.path: p for p in tm.paths}
    assert paths["extraction-transfer"].band in HIGH
    assert paths["query-evasion"].band in HIGH


def test_on_device_vehicle_ranks_physical_evasion_high_and_api_extraction_low(
    models: dict[str, ThreatModel],
) -> None:
    tm = models["vehicle-perception"]
    for technique in ("AML.T0041", "AML.T0043.003", "AML.T0015"):
        scored = tm.technique(technique)
        assert scored is not None, technique
        assert scored.band in HIGH, technique
    extraction = tm.technique("AML.T0024.002")
    assert extraction is not None
    assert extraction.band == "low"
    assert tm.paths[0].path == "physical-evasion"
    assert "extraction-transfer" not in {p.path for p in tm.paths if p.band in HIGH}
    # Weights ship in the car: white-box evasion is a real path.
    assert "white-box-evasion" in {p.path for p in tm.paths if p.band in HIGH}


def test_face_recognition_ranks_impersonation_high(models: dict[str, ThreatModel]) -> None:
    tm = models["face-access-control"]
    deepfakes = tm.technique("AML.T0088")
    assert deepfakes is not None
    assert deepfakes.band in HIGH
    assert tm.technique("AML.T0041").band in HIGH  # type: ignore[union-attr]
    assert tm.technique("AML.T0024.002").band == "low"  # type: ignore[union-attr]
    assert "deepfake-impersonation" in {p.path for p in tm.paths}


def test_internal_medical_model_ranks_supply_chain_and_poisoning_above_extraction(
    models: dict[str, ThreatModel],
) -> None:
    tm = models["medical-imaging"]
    poisoning = tm.technique("AML.T0020")
    assert poisoning is not None
    assert poisoning.band in HIGH
    assert tm.technique("AML.T0010.003").band in HIGH  # type: ignore[union-attr]
    assert tm.technique("AML.T0024.002").band == "low"  # type: ignore[union-attr]
    assert _rank(tm, "AML.T0020") < _rank(tm, "AML.T0024.002")


def test_voice_model_with_user_feedback_ranks_poisoning_and_physical_high(
    models: dict[str, ThreatModel],
) -> None:
    tm = models["voice-commands"]
    assert tm.technique("AML.T0041").band in HIGH  # type: ignore[union-attr]
    assert tm.technique("AML.T0020").band in HIGH  # type: ignore[union-attr]
    assert tm.technique("AML.T0031").band in HIGH  # type: ignore[union-attr]


def test_scores_are_consistent(models: dict[str, ThreatModel]) -> None:
    for tm in models.values():
        assert tm.techniques
        for t in tm.findings:
            assert 1 <= t.likelihood <= 5
            assert 1 <= t.impact <= 5
            assert t.risk == t.likelihood * t.impact
            assert t.band == band(t.likelihood, t.impact)
            assert t.reasons
        risks = [t.risk for t in tm.techniques]
        assert risks == sorted(risks, reverse=True)


def test_exposure_changes_move_likelihood_the_right_way(fraud_system: SystemDescription) -> None:
    base = build_threat_model(fraud_system).technique("AML.T0024.002")
    assert base is not None

    def with_endpoint(**changes: object) -> int:
        data = fraud_system.model_dump(mode="json")
        data["assets"]["endpoints"][0].update(changes)
        system = SystemDescription.model_validate(data)
        scored = build_threat_model(system).technique("AML.T0024.002")
        return 0 if scored is None else scored.likelihood

    assert with_endpoint(exposure="internal", callers=["employees"]) < base.likelihood
    assert with_endpoint(queries_per_caller_per_day=50) < base.likelihood
    assert with_endpoint(outputs="labels") < base.likelihood


def test_physical_techniques_need_a_physical_data_kind(fraud_system: SystemDescription) -> None:
    data = fraud_system.model_dump(mode="json")
    data["assets"]["models"][0]["physical_inputs"] = True
    tabular = build_threat_model(SystemDescription.model_validate(data))
    assert tabular.technique("AML.T0041") is None
    data["assets"]["models"][0]["data_kind"] = "timeseries"
    sensors = build_threat_model(SystemDescription.model_validate(data))
    assert sensors.technique("AML.T0041") is not None


def test_business_impact_drives_impact(fraud_system: SystemDescription) -> None:
    data = fraud_system.model_dump(mode="json")
    data["impact"]["integrity"] = "low"
    calm = SystemDescription.model_validate(data)
    before = build_threat_model(fraud_system).technique("AML.T0015")
    after = build_threat_model(calm).technique("AML.T0015")
    assert before is not None
    assert after is not None
    assert after.impact < before.impact
    assert after.likelihood == before.likelihood


def test_paths_chain_tactics_from_access_to_impact(models: dict[str, ThreatModel]) -> None:
    catalog = load_catalog()
    tm = models["fraud-scoring-api"]
    path = next(p for p in tm.paths if p.path == "extraction-transfer")
    assert [s[0] for s in path.steps] == list(catalog.paths["extraction-transfer"].steps)
    assert path.steps[0][2] == "AI Model Access"
    assert path.steps[-1][2] == "Impact"
    assert path.likelihood == min(tm.technique(s[0]).likelihood for s in path.steps)  # type: ignore[union-attr]
    assert "->" in path.chain


def test_mitigations_are_prioritized(models: dict[str, ThreatModel]) -> None:
    tm = models["fraud-scoring-api"]
    ids = [m.id for m in tm.mitigations]
    assert ids.index("AML.M0004") < len(ids) // 3  # query limits matter for a public API
    order = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    keys = [(order[m.top_band], -m.score) for m in tm.mitigations]
    assert keys == sorted(keys)


# --- assessment plan ------------------------------------------------------------------------


def test_plan_names_registered_attacks_and_sensible_threats(models: dict[str, ThreatModel]) -> None:
    for name, tm in models.items():
        assert tm.plan.items, name
        for item in tm.plan.items:
            assert set(item.attacks) <= set(ATTACKS.names())
            assert item.query_budget
            assert item.samples >= 100
    vehicle = models["vehicle-perception"].plan.items[0]
    assert vehicle.access.value == "white-box"
    assert vehicle.epsilons == pytest.approx((2 / 255, 4 / 255, 8 / 255))
    fraud = models["fraud-scoring-api"].plan.items[0]
    assert fraud.access.value == "score-based"
    assert "square" in fraud.attacks
    voice = models["voice-commands"].plan.items[0]
    assert voice.query_budget == 5000


@pytest.mark.parametrize("suffix", [".json", ".yaml"])
def test_plan_round_trips(models: dict[str, ThreatModel], tmp_path: Path, suffix: str) -> None:
    plan = models["fraud-scoring-api"].plan
    path = save_plan(plan, tmp_path / f"plan{suffix}")
    assert load_plan(path) == plan
    jsonschema.validate(plan.model_dump(mode="json"), shipped_schema("plan"))


def test_load_plan_rejects_unknown_attacks_and_bad_files(tmp_path: Path) -> None:
    plan = AssessmentPlan.model_validate(
        {
            "system": "x",
            "items": [
                {
                    "asset": "m",
                    "techniques": ["AML.T0015"],
                    "attacks": ["teleport"],
                    "access": "white-box",
                    "epsilons": [0.1],
                }
            ],
        }
    )
    path = save_plan(plan, tmp_path / "plan.json")
    with pytest.raises(ConfigError, match="teleport"):
        load_plan(path)
    assert load_plan(path, check_attacks=False).items[0].attacks == ("teleport",)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"system": "x", "items": [{"asset": "m"}]}))
    with pytest.raises(ConfigError, match="assessment plan"):
        load_plan(bad)


# --- renderers ------------------------------------------------------------------------------


def test_navigator_layer_structure(models: dict[str, ThreatModel]) -> None:
    tm = models["vehicle-perception"]
    layer = navigator_layer(tm)
    assert layer["domain"] == "atlas-atlas"
    assert layer["versions"]["layer"] == "4.5"
    assert {"name", "description", "techniques", "gradient", "legendItems"} <= set(layer)
    scored = {t.technique: t for t in tm.techniques}
    assert len(layer["techniques"]) == len(scored)
    for entry in layer["techniques"]:
        t = scored[entry["techniqueID"]]
        assert entry["score"] == t.risk
        assert entry["color"].startswith("#")
        assert len(entry["color"]) == 7
        assert layer["gradient"]["minValue"] <= entry["score"] <= layer["gradient"]["maxValue"]
    assert {e["techniqueID"] for e in layer["techniques"]} <= set(load_catalog().techniques)
    by_id = {e["techniqueID"]: e for e in layer["techniques"]}
    assert by_id["AML.T0043"]["showSubtechniques"] is True
    json.dumps(layer)


def test_renderers_write_readable_outputs(models: dict[str, ThreatModel], tmp_path: Path) -> None:
    tm = models["fraud-scoring-api"]
    md = render_threat_model_markdown(tm)
    assert md.startswith("# Threat model: Card fraud scoring API")
    for heading in ("## Techniques", "## Attack paths", "## Mitigations", "## Assessment plan"):
        assert heading in md
    html = render_threat_model_html(tm)
    assert html.startswith("<!DOCTYPE html>")
    assert "</html>" in html
    assert "<script" not in html
    assert "http" not in html.split("<body>")[0]
    assert "Extraction, then transfer evasion" in html
    written = write_threat_model(tm, tmp_path / "out")
    assert {p.name for p in written.values()} == {
        "threat-model.md",
        "threat-model.html",
        "threat-model.json",
        "navigator-layer.json",
        "assessment-plan.json",
    }
    data = json.loads(written["json"].read_text())
    assert data["techniques"][0]["technique"] == "AML.T0015"
    assert load_plan(written["plan"]) == tm.plan


def test_html_escapes_user_text(fraud_system: SystemDescription) -> None:
    evil = fraud_system.model_copy(update={"name": "<script>alert(1)</script>"})
    html = render_threat_model_html(build_threat_model(evil))
    assert "<script>alert" not in html
    assert "&lt;script&gt;" in html


# --- calibration: a critical band small enough to act on; harms as impact -------------------

MAX_CRITICAL_PER_ASSET = 5
MAX_CRITICAL_PER_SYSTEM = 8


def _harm_ids() -> set[str]:
    catalog = load_catalog()
    return {t.id for t in catalog.techniques.values() if "outcome" in t.surfaces}


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.stem)
def test_critical_band_holds_a_handful(models: dict[str, ThreatModel], path: Path) -> None:
    tm = models[path.stem]
    for model in tm.system.assets.models:
        critical = [f.technique for f in tm.for_asset(model.id) if f.band == "critical"]
        assert len(critical) <= MAX_CRITICAL_PER_ASSET, (model.id, critical)
    system_critical = [t.technique for t in tm.techniques if t.band == "critical"]
    assert len(system_critical) <= MAX_CRITICAL_PER_SYSTEM, system_critical
    # Critical means "an adversary can act at will, with serious harm".
    for f in tm.findings:
        assert (f.band == "critical") == (f.likelihood == 5 and f.impact >= 4)


def test_critical_band_is_not_empty_where_the_exposure_is_open(
    models: dict[str, ThreatModel],
) -> None:
    # A public scoring API and sensor-fed, biometric or on-device models do have something to
    # fix this week; an internal model with no open surface does not.
    for name in ("fraud-scoring-api", "face-access-control", "vehicle-perception"):
        assert any(t.band == "critical" for t in models[name].techniques), name
    assert not any(t.band == "critical" for t in models["medical-imaging"].techniques)


@pytest.mark.parametrize("path", SYSTEMS, ids=lambda p: p.stem)
def test_harms_are_impact_not_ranked_techniques(models: dict[str, ThreatModel], path: Path) -> None:
    tm = models[path.stem]
    harms = _harm_ids()
    assert not harms & {f.technique for f in tm.findings}
    assert not harms & {t.technique for t in tm.techniques}
    assert not harms & {t for item in tm.plan.items for t in item.techniques}
    assert not harms & {t for m in tm.mitigations for t in m.counters}
    assert not harms & {e["techniqueID"] for e in navigator_layer(tm)["techniques"]}
    # ... but they are reported as the impact of the system, with the techniques they follow from.
    assert tm.impacts
    applicable = {f.technique for f in tm.findings}
    for i in tm.impacts:
        assert i.harm in harms
        assert i.harm != "AML.T0048"  # the umbrella: its sub-harms say more
        assert i.via
        assert set(i.via) <= applicable
        assert i.level.value in i.reason
        assert 1 <= i.likelihood <= 5
    data = tm.as_dict()
    assert {i["harm"] for i in data["impacts"]} == {i.harm for i in tm.impacts}
    assert not harms & {t["technique"] for t in data["techniques"]}
    md = render_threat_model_markdown(tm)
    html = render_threat_model_html(tm)
    assert "## Impact: harms that would follow" in md
    assert "<h2>Impact: harms that would follow</h2>" in html
    for i in tm.impacts:
        assert f"| {i.harm} | {i.name} |" in md
        assert i.harm in html
    techniques_md = md.split("## Techniques", 1)[1].split("## Attack paths", 1)[0]
    assert "AML.T0048" not in techniques_md


def test_harm_level_follows_the_business_impact(fraud_system: SystemDescription) -> None:
    data = fraud_system.model_dump(mode="json")
    data["impact"]["confidentiality"] = "low"
    calm = build_threat_model(SystemDescription.model_validate(data))
    ip_theft = next(i for i in calm.impacts if i.harm == "AML.T0048.004")
    assert ip_theft.properties == ("confidentiality",)
    assert ip_theft.level.value == "low"
    assert "AML.T0024.002" in ip_theft.via  # model extraction takes the IP


def test_paths_may_end_in_a_harm(models: dict[str, ThreatModel]) -> None:
    tm = models["face-access-control"]
    path = next(p for p in tm.paths if p.path == "deepfake-impersonation")
    assert path.steps[-1][0] == "AML.T0048.003"
    assert path.steps[-1][2] == "Impact"
    assert path.band == "critical"
