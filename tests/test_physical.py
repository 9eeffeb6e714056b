"""Input-agnostic attacks: the adversarial patch and the universal perturbation, fitted on some
inputs and measured on others."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from bastion.assess import default_attacks
from bastion.assess.physical import patch_assessment, uap_assessment
from bastion.attacks.evasion import AdversarialPatch, UniversalPerturbation, place_patch
from bastion.core.assessment import Report
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import ATTACKS
from bastion.core.targets import TorchTarget
from bastion.core.threat import Norm, Threat
from bastion.data import Dataset, load_dataset
from bastion.report.html import render_html
from bastion.report.json import load_schema

from helpers import run


@pytest.fixture(scope="module")
def split(demo: tuple[TorchTarget, Dataset]) -> dict[str, torch.Tensor]:
    _, data = demo
    return {
        "x_fit": torch.from_numpy(data.x_train[:400]),
        "y_fit": torch.from_numpy(data.y_train[:400]),
        "x_out": torch.from_numpy(data.x_test[:200]),
        "y_out": torch.from_numpy(data.y_test[:200]),
    }


def _random_patch(like: torch.Tensor, seed: int = 1) -> torch.Tensor:
    return torch.rand(like.shape, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------- the patch
@pytest.mark.parametrize(("size", "target_class"), [(0.1, None), (0.25, 3)])
def test_a_trained_patch_beats_a_random_patch_where_it_lands(
    size: float, target_class: int | None, cnn: TorchTarget, split: dict[str, torch.Tensor]
) -> None:
    attack = AdversarialPatch(size=size, target_class=target_class, steps=100, lr=0.1)
    assert attack.fit(cnn, split["x_fit"], split["y_fit"]) is attack
    side = round(math.sqrt(size * 64))
    assert attack.patch_.shape == (1, side, side)
    assert float(attack.patch_.min()) >= 0 and float(attack.patch_.max()) <= 1
    trained = attack.evaluate(cnn, split["x_out"], split["y_out"], placements=8, seed=5)
    control = attack.evaluate(
        cnn,
        split["x_out"],
        split["y_out"],
        placements=8,
        seed=5,
        patch=_random_patch(attack.patch_),
    )
    assert trained.count[1] == control.count[1] > 0
    assert trained.success_rate > control.success_rate + 0.1, (trained, control)
    assert trained.clean_accuracy > 0.9 and trained.patched_accuracy < trained.clean_accuracy


def test_place_patch_nearest_replaces_exactly_the_patch_and_warps_stay_in_bounds() -> None:
    x = torch.full((3, 1, 8, 8), 0.5)
    patch = torch.tensor([[[0.0, 1.0, 0.25], [0.75, 0.0, 1.0]]])
    centre = torch.tensor([[1.0, 1.5], [4.0, 4.5], [7.0, 6.5]])  # (row, col) of 2 x 3 spots
    out, mask = place_patch(x, patch, centre, mode="nearest")
    assert torch.equal(out[0, 0, 0:2, 0:3], patch[0])
    assert torch.equal(out[1, 0, 3:5, 3:6], patch[0])
    assert torch.equal(out[2, 0, 6:8, 5:8], patch[0])
    assert bool(((out != 0.5).flatten(1).sum(dim=1) <= 6).all())
    assert bool((mask.flatten(1).sum(dim=1) == 6).all())
    turned, cover = place_patch(
        x, patch, centre, scale=torch.full((3,), 1.3), angle=torch.full((3,), 0.6)
    )
    assert float(turned.min()) >= 0 and float(turned.max()) <= 1
    assert float(cover.max()) <= 1 + 1e-6 and float(cover.sum()) > 0


def test_patch_run_replaces_at_most_epsilon_values(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:40], digits[1][:40]
    attack = AdversarialPatch(steps=60, placements=16)
    result = attack.run(cnn, x, y, eps=9, norm="l0")
    changed = (result.x_adv != x).flatten(1).sum(dim=1)
    assert int(changed.max()) <= 9
    assert attack.patch_.shape == (1, 3, 3)
    assert float(result.success.float().mean()) > 0.4


def test_the_patch_refuses_tabular_data_and_bad_settings(cnn: TorchTarget) -> None:
    fraud = load_dataset("fraud")
    target = TorchTarget(torch.nn.Linear(20, 2), num_classes=2, input_shape=(20,))
    x, y = torch.from_numpy(fraud.x_test[:8]), torch.from_numpy(fraud.y_test[:8])
    with pytest.raises(DataError, match="images"):
        AdversarialPatch().fit(target, x, y)
    with pytest.raises(DataError, match="images"):
        AdversarialPatch(steps=2).run(target, x, y, eps=4, norm="l0")
    with pytest.raises(DataError, match="needs images"):
        patch_assessment(target, fraud)
    assert ATTACKS.get("patch").data_kinds == ("image",)
    digits_x = torch.zeros((2, 1, 8, 8))
    with pytest.raises(ConfigError, match="size"):
        AdversarialPatch(size=1.5).fit(cnn, digits_x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="target_class"):
        AdversarialPatch(target_class=12).fit(cnn, digits_x, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ConfigError, match="fit"):
        AdversarialPatch().evaluate(cnn, digits_x, torch.zeros(2, dtype=torch.long))


def test_patch_assessment_shows_the_patch_and_measures_held_out_images(
    cnn: TorchTarget, demo: tuple[TorchTarget, Dataset]
) -> None:
    _, data = demo
    assessment = patch_assessment(
        cnn, data, size=0.1, train_samples=300, test_samples=150, attack_params={"steps": 80}
    )
    rate = assessment.metric("patch_success_rate")
    control = assessment.metric("random_patch_success_rate")
    assert rate.count is not None and rate.count[1] == control.count[1] > 0  # type: ignore[union-attr]
    assert rate.value > control.value + 0.1
    assert assessment.metric("patch_share").value == pytest.approx(9 / 64)
    images = next(a for a in assessment.artifacts if a.kind == "images")
    patch_image = images.data["rows"][0]["images"][0]
    assert patch_image.shape == (1, 3, 3) and 0 <= patch_image.min() <= patch_image.max() <= 1
    finding = assessment.findings[0]
    assert "AML.T0041" in finding.techniques and finding.severity.value in ("medium", "high")
    html = render_html(Report([assessment]))
    assert images.title in html and html.count("data:image/png;base64,") == 1
    assert "random patch" in html  # the control, named in the setting and the finding


# ---------------------------------------------------------------------- the UAP
@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.2), ("l2", 1.5)])
def test_a_universal_perturbation_fools_more_than_noise_of_the_same_size(
    norm: str, eps: float, cnn: TorchTarget, split: dict[str, torch.Tensor]
) -> None:
    uap = UniversalPerturbation(steps=100).fit(
        cnn, split["x_fit"], split["y_fit"], eps=eps, norm=norm
    )
    v = uap.perturbation_
    assert v.shape == (1, 8, 8)
    size = float(v.abs().max()) if norm == "linf" else float(v.norm())
    assert size <= eps * (1 + 1e-5)
    fooled, total = uap.fooling_rate(cnn, split["x_out"])
    noise = torch.randn(v.shape, generator=torch.Generator().manual_seed(0))
    noise = noise.sign() * eps if norm == "linf" else noise / noise.norm() * eps
    by_noise, _ = uap.fooling_rate(cnn, split["x_out"], perturbation=noise)
    assert total == 200
    assert fooled / total > by_noise / total + 0.2, (fooled, by_noise)


def test_uap_assessment_reports_the_fooling_rate_and_the_perturbation(
    cnn: TorchTarget, demo: tuple[TorchTarget, Dataset]
) -> None:
    _, data = demo
    assessment = uap_assessment(
        cnn,
        data,
        Threat(epsilons=(0.1, 0.2)),
        train_samples=300,
        test_samples=150,
        attack_params={"steps": 80},
    )
    low = assessment.metric("fooling_rate", epsilon=0.1).value
    high = assessment.metric("fooling_rate", epsilon=0.2).value
    assert high > assessment.metric("noise_fooling_rate", epsilon=0.2).value + 0.2
    assert high >= low
    assert {a.kind for a in assessment.artifacts} == {"curve", "images"}
    assert assessment.findings[0].severity.value in ("medium", "high")
    html = render_html(Report([assessment]))
    assert html.count("data:image/png;base64,") == 2


def test_input_agnostic_attacks_run_only_when_named(cnn: TorchTarget) -> None:
    for norm in (Norm.LINF, Norm.L2, Norm.L0):
        names = {e.name for e in default_attacks(cnn, norm)}
        assert not names & {"uap", "patch", "transfer", "constrained-pgd"}
    assert ATTACKS.get("uap").family == ATTACKS.get("patch").family == "universal"


def test_patch_command_writes_a_report_with_the_patch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["patch", "--out", str(tmp_path), "--steps", "60", "--samples", "80"]
    code, out, err = run(capsys, *args, "--train-samples", "200", "--size", "0.25")
    assert code == 0, err
    assert "random patch" in out and "AML.T0041" in out
    data = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(data, load_schema())
    (assessment,) = data["assessments"]
    assert assessment["family"] == "physical"
    assert len(assessment["details"]["patch"][0]) == 4  # a 4 x 4 patch, one channel
    html = (tmp_path / "report.html").read_text()
    assert "The adversarial patch" in html and "data:image/png;base64," in html


def test_patch_command_errors_are_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cases = [
        (["--target", "fraud-mlp"], "needs images"),
        (["--size", "1.5"], "--size"),
        (["--target-class", "10"], "not a class"),
        (["--placements", "0"], "--placements"),
    ]
    for args, message in cases:
        code, _, err = run(capsys, "patch", *args, "--out", str(tmp_path / "r"), "--steps", "2")
        assert code == 2, err
        assert message in err and "Traceback" not in err
        assert len([line for line in err.splitlines() if line.strip()]) == 1, err


def test_scan_runs_the_patch_under_l0_when_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    args = ["scan", "--attacks", "patch", "--norm", "l0", "--eps", "4,9", "--out", str(tmp_path)]
    code, _, err = run(capsys, *args, "--samples", "30", "--steps", "40")
    assert code == 0, err
    sweep = json.loads((tmp_path / "report.json").read_text())["assessments"][0]["details"]
    accuracy = [p["robust_accuracy"] for p in sweep["sweep"]]
    assert accuracy[-1] < sweep["clean_accuracy"]["value"] - 0.3
    code, _, err = run(capsys, "scan", "--norm", "l0", "--out", str(tmp_path / "b"))
    assert code == 2 and "no registered attack runs under l0" in err
