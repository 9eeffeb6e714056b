"""The evasion attacks do their job on the demo model."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bastion import FGSM, PGD, SquareAttack
from bastion.core.errors import ConfigError
from bastion.core.targets import TorchTarget

from helpers import accuracy


def test_pgd_linf_03_breaks_the_demo_cnn(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits
    assert len(x) == 200
    assert accuracy(cnn, x, y) > 0.9
    result = PGD().run(cnn, x, y, eps=0.3, norm="linf")
    robust = float((result.predictions == y).float().mean())
    assert robust <= 0.05
    # the reported success is what the target says about the returned inputs
    assert torch.equal(result.predictions, cnn.predict(result.x_adv))


def test_fgsm_is_weaker_than_pgd(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits
    for eps in (0.1, 0.2):
        fgsm = FGSM().run(cnn, x, y, eps=eps)
        pgd = PGD().run(cnn, x, y, eps=eps)
        assert fgsm.success.float().mean() < pgd.success.float().mean()


def test_pgd_l2_lowers_accuracy(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits
    result = PGD().run(cnn, x, y, eps=2.0, norm="l2")
    assert float((result.predictions == y).float().mean()) < 0.3
    assert float(result.distances.max()) <= 2.0 + 1e-4


def test_restarts_keep_the_worst_case(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits
    one = PGD(steps=10, restarts=1).run(cnn, x, y, eps=0.1, seed=1)
    three = PGD(steps=10, restarts=3).run(cnn, x, y, eps=0.1, seed=1)
    # the first restart is the single run; later ones only add successes
    assert bool((three.success | ~one.success).all())
    assert int(three.success.sum()) > int(one.success.sum())


def test_targeted_pgd_reaches_the_target_class(cnn: TorchTarget, digits: Any) -> None:
    from bastion import Threat

    x, y = digits[0][:50], digits[1][:50]
    goal = (y + 1) % 10
    result = PGD().run(cnn, x, goal, Threat(epsilons=(0.3,), targeted=True))
    assert float((result.predictions == goal).float().mean()) > 0.8
    assert bool((result.success == (result.predictions == goal)).all())


def test_different_seeds_differ(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:20], digits[1][:20]
    a = PGD(steps=5).run(cnn, x, y, eps=0.1, seed=0)
    b = PGD(steps=5).run(cnn, x, y, eps=0.1, seed=1)
    assert not torch.equal(a.x_adv, b.x_adv)


def test_square_on_the_cnn_as_a_black_box(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:100], digits[1][:100]
    result = SquareAttack(max_queries=300).run(cnn, x, y, eps=0.2)
    assert float((result.predictions == y).float().mean()) < 0.3


@pytest.mark.parametrize(
    ("attack", "message"),
    [
        (PGD(steps=0), "steps"),
        (PGD(restarts=0), "restarts"),
        (PGD(rel_stepsize=-1.0), "rel_stepsize"),
        (PGD(loss="hinge"), "loss"),
        (SquareAttack(max_queries=0), "max_queries"),
        (SquareAttack(p_init=1.5), "p_init"),
    ],
)
def test_bad_hyperparameters(attack: Any, message: str, cnn: TorchTarget, digits: Any) -> None:
    with pytest.raises(ConfigError, match=message):
        attack.run(cnn, digits[0][:2], digits[1][:2], eps=0.1)
    assert cnn.queries == 0
