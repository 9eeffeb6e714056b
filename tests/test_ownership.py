"""Ownership verification: the watermark is deterministic, keyed and recorded; a copy stolen
through it is identified (p < 0.01) and independently trained models are not."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import ATTACKS
from bastion.core.targets import TorchTarget
from bastion.defences import DefendedTarget, create_defence
from bastion.defences.ownership import WatermarkedTarget, verify_ownership
from bastion.defences.ownership.watermark import _binomial_tail, _upper_bound
from bastion.zoo.fit import FitSettings, build_model, fit_model


def test_watermark_answers_are_keyed_deterministic_and_recorded(
    cnn: TorchTarget, demo: Any
) -> None:
    x = torch.from_numpy(demo[1].x_test)
    served = WatermarkedTarget(cnn, rate=0.1, key="secret")
    truth = cnn.outputs(x).softmax(dim=1)
    first, second = served.outputs(x), served.outputs(x)
    assert torch.equal(first, second) and served.queries == 2 * len(x)
    moved = first.argmax(dim=1) != truth.argmax(dim=1)
    assert 0.04 < float(moved.float().mean()) < 0.18  # about 10% of 360
    rx, ry, own = served.records()
    assert len(ry) == int(moved.sum())  # asked twice, recorded once
    assert set(ry.tolist()) <= set(range(10))
    assert torch.equal(served.outputs(rx).argmax(dim=1), ry)
    assert torch.equal(cnn.predict(rx), own) and (own != ry).all()
    other = WatermarkedTarget(cnn, rate=0.1, key="another")
    assert not torch.equal(other.outputs(x).argmax(dim=1), first.argmax(dim=1))
    labels = DefendedTarget(
        WatermarkedTarget(cnn, rate=0.1, key="secret"), [create_defence("labels")]
    )
    assert torch.equal(labels.outputs(x), first.argmax(dim=1))


def _independent(arch: str, x: torch.Tensor, y: torch.Tensor, seed: int) -> TorchTarget:
    settings = FitSettings(arch=arch, hidden=128, epochs=10)
    model = build_model((1, 8, 8), 10, settings, seed=seed)
    fit_model(model, x, y, settings, seed=seed)
    return TorchTarget(model, num_classes=10, input_shape=(1, 8, 8), name=f"{arch}-{seed}")


def test_a_stolen_copy_is_identified_and_independent_models_are_not(
    cnn: TorchTarget, demo: Any
) -> None:
    data = demo[1]
    served = WatermarkedTarget(cnn, rate=0.05, key="owner")
    stolen = ATTACKS.create("knockoff", max_queries=600, soft_labels=False).run(
        DefendedTarget(served, [create_defence("labels")]),
        torch.from_numpy(data.x_test),
        seed=0,
    )
    claim = verify_ownership(stolen.as_target(), served)
    assert claim.method == "conditional" and claim.null_rate == pytest.approx(1 / 9)
    assert claim.records >= 15 and claim.queries == claim.records >= claim.trials
    assert claim.p_value < 0.01 and claim.copied
    xtr, ytr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    for arch, seed in (("cnn", 11), ("mlp", 12)):
        check = verify_ownership(_independent(arch, xtr, ytr, seed), served)
        assert check.p_value > 0.01 and not check.copied
    # with references every record counts, at the null rate measured on them
    refs = [_independent("mlp", xtr, ytr, 13)]
    measured = verify_ownership(stolen.as_target(), served, references=refs)
    assert measured.method == "references" and measured.trials == measured.records
    assert 0 < measured.null_rate < 0.2 and measured.copied


def test_binomial_helpers_agree_with_their_definitions() -> None:
    assert _binomial_tail(0, 5, 0.3) == 1.0
    assert _binomial_tail(5, 5, 0.5) == pytest.approx(1 / 32)
    assert _binomial_tail(2, 3, 0.5) == pytest.approx(0.5)
    upper = _upper_bound(0, 100)
    assert 0.03 < upper < 0.04  # the rule of three, about 3 / 100
    assert _binomial_tail(1, 100, upper) == pytest.approx(1 - 0.025, abs=1e-6)


def test_ownership_errors_are_one_line(cnn: TorchTarget) -> None:
    with pytest.raises(ConfigError, match="rate"):
        WatermarkedTarget(cnn, rate=0.7)
    with pytest.raises(DataError, match="no records"):
        verify_ownership(cnn, WatermarkedTarget(cnn))
    binary = TorchTarget(torch.nn.Linear(4, 2), num_classes=2, input_shape=(4,))
    with pytest.raises(ConfigError, match="two classes"):
        verify_ownership(binary, (torch.rand(3, 4), torch.tensor([0, 1, 0])))
