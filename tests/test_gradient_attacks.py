"""The gradient attacks' own behaviour: APGD, MI-FGSM, L1 steps, the losses, early stopping."""

from __future__ import annotations

from typing import Any

import torch

from bastion import Threat, TorchTarget
from bastion.attacks._losses import objective
from bastion.attacks._ops import distances, project, random_in_ball
from bastion.attacks.evasion import APGD, APGDT, MIFGSM, PGD
from bastion.attacks.evasion.apgd import checkpoints
from bastion.core.threat import Norm, default_epsilons


def test_l1_projection_is_the_nearest_point_of_the_ball() -> None:
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(40, 1, 8, 8, generator=gen)
    proj = project(delta, Norm.L1, 3.0)
    assert bool((distances(proj, Norm.L1) <= 3.0 + 1e-4).all())
    assert bool((distances(delta, Norm.L1) > 3.0).all())
    # no point of the ball is nearer (checked against random points of it)
    others = random_in_ball(delta, Norm.L1, 3.0, gen)
    assert bool(
        ((proj - delta).flatten(1).norm(dim=1) <= (others - delta).flatten(1).norm(dim=1)).all()
    )
    inside = delta * 0.01
    assert torch.equal(project(inside, Norm.L1, 3.0), inside)


def test_l1_epsilons_scale_with_the_dimension() -> None:
    assert default_epsilons("l1", (0.0, 1.0), 100) == (1.0, 2.0, 5.0, 10.0)
    assert Norm.parse("L1") is Norm.L1


def test_apgd_checkpoints_follow_the_paper() -> None:
    # p = 0, 0.22, 0.41, 0.57, 0.7, 0.8, 0.87, 0.93, 0.99 of 100 steps
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_dlr_ignores_the_scale_of_the_logits() -> None:
    scores = torch.tensor([[3.0, 1.0, 0.5, -1.0], [0.2, 2.0, 1.0, 0.0]])
    y = torch.tensor([0, 2])
    threat = Threat()
    for loss in ("dlr", "dlr-targeted"):
        towards = torch.tensor([1, 1])
        a = objective(scores, y, threat, loss, towards)
        b = objective(scores * 7.0, y, threat, loss, towards)
        assert torch.allclose(a, b, atol=1e-5)
    # larger when the true class is further behind
    assert objective(scores, y, threat, "dlr")[1] > objective(scores, y, threat, "dlr")[0]


def test_apgd_is_at_least_as_strong_as_pgd_for_the_same_steps(
    cnn: TorchTarget, digits: Any
) -> None:
    x, y = digits[0][:150], digits[1][:150]
    pgd = PGD(steps=20).run(cnn, x, y, eps=0.08)
    apgd = APGD(steps=20).run(cnn, x, y, eps=0.08)
    assert float(apgd.success.float().mean()) >= float(pgd.success.float().mean()) - 0.01
    apgdt = APGDT(steps=20, target_classes=3).run(cnn, x, y, eps=0.08)
    assert float(apgdt.success.float().mean()) >= float(apgd.success.float().mean()) - 0.01


def test_apgdt_reaches_a_targeted_goal(cnn: TorchTarget, digits: Any) -> None:
    x = digits[0][:40]
    goal = (digits[1][:40] + 1) % 10
    threat = Threat(norm="linf", epsilons=(0.3,), targeted=True)
    result = APGDT(steps=30).run(cnn, x, goal, threat)
    assert float((result.predictions == goal).float().mean()) > 0.8


def test_early_stopping_spends_fewer_passes_for_the_same_success(
    cnn: TorchTarget, digits: Any
) -> None:
    x, y = digits[0][:100], digits[1][:100]
    full = APGD(steps=40, early_stop=False).run(cnn, x, y, eps=0.1)
    early = APGD(steps=40).run(cnn, x, y, eps=0.1)
    assert early.queries < 0.8 * full.queries
    assert float(early.success.float().mean()) >= float(full.success.float().mean()) - 0.02


def test_l1_attacks_concentrate_on_few_features(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:60], digits[1][:60]
    for attack in (PGD(steps=30), APGD(steps=30)):
        result = attack.run(cnn, x, y, eps=4.0, norm="l1")
        assert float(result.success.float().mean()) > 0.5
        assert bool((result.distances <= 4.0 + 1e-4).all())
        # the perturbation's mass sits on a few features, as L1 steps put it
        mass = (result.x_adv - x).abs().flatten(1)
        top = mass.topk(8, dim=1).values.sum(dim=1) / mass.sum(dim=1).clamp_min(1e-12)
        assert float(top.median()) > 0.5


def test_momentum_attack_lowers_accuracy_in_few_steps(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:100], digits[1][:100]
    result = MIFGSM(steps=5).run(cnn, x, y, eps=0.15)
    assert float(result.success.float().mean()) > 0.5
    assert result.queries <= 5 * len(x) + len(x)
