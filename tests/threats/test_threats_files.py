"""Files the threats package writes: only inside the output folder, atomically, one mode."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bastion.core.errors import ConfigError
from bastion.core.files import file_mode
from bastion.threats import AssessmentPlan, ThreatModel, load_plan, save_plan
from bastion.threats.gaps import ControlSet, analyse_gaps
from bastion.threats.render import write_gaps, write_threat_model
from bastion.threats.schemas import write_schemas


def _plan_data(asset: str) -> dict[str, object]:
    return {
        "system": "x",
        "items": [
            {
                "asset": asset,
                "techniques": ["AML.T0015"],
                "attacks": ["pgd"],
                "access": "white-box",
                "epsilons": [0.1],
            }
        ],
    }


@pytest.mark.parametrize(
    "asset", ["../escaped", "/tmp/absolute", "a/b", "..", ".hidden", "a\\b", "", "x\n"]
)
def test_load_plan_refuses_assets_that_are_not_plain_ids(tmp_path: Path, asset: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_plan_data(asset)))
    with pytest.raises(ConfigError, match=r"items\.0\.asset") as info:
        load_plan(path, check_attacks=False)
    assert "\n" not in str(info.value)


def test_load_plan_accepts_the_ids_a_system_description_accepts(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(_plan_data("fraud-model_v2.1")))
    assert load_plan(path, check_attacks=False).items[0].asset == "fraud-model_v2.1"


def test_outputs_land_inside_out_with_the_bastion_file_mode(
    models: dict[str, ThreatModel], tmp_path: Path
) -> None:
    tm = models["fraud-scoring-api"]
    out = tmp_path / "tm"
    written = {
        **write_threat_model(tm, out),
        **{f"gaps-{k}": v for k, v in write_gaps(analyse_gaps(tm, ControlSet()), out).items()},
    }
    written.update({p.name: p for p in write_schemas(out / "schema")})
    for path in written.values():
        assert out.resolve() in path.resolve().parents
        assert os.stat(path).st_mode & 0o777 == file_mode()
    # Atomic writes leave no temporary files behind.
    assert not [p for p in out.rglob("*") if p.name.endswith(".part")]


def test_a_symlink_in_out_cannot_carry_a_write_elsewhere(
    models: dict[str, ThreatModel], tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "threat-model.md").symlink_to(victim)
    with pytest.raises(ConfigError, match="outside the output folder"):
        write_threat_model(models["fraud-scoring-api"], out)
    assert victim.read_text() == "precious"
    (out / "gaps.html").symlink_to(victim)
    with pytest.raises(ConfigError, match="outside the output folder"):
        write_gaps(analyse_gaps(models["fraud-scoring-api"], ControlSet()), out)
    assert victim.read_text() == "precious"


def test_save_plan_within_refuses_paths_outside_the_folder(tmp_path: Path) -> None:
    plan = AssessmentPlan.model_validate(_plan_data("m"))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="outside the output folder"):
        save_plan(plan, out / ".." / "plan.json", within=out)
    assert not (tmp_path / "plan.json").exists()
    saved = save_plan(plan, out / "plan.json", within=out)
    assert load_plan(saved, check_attacks=False) == plan
    assert os.stat(saved).st_mode & 0o777 == file_mode()
