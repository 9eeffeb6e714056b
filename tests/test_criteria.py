"""Success criteria: one place decides what "fooled" means, for every attack and the scan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.attacks import PGD, SquareAttack
from bastion.core.criteria import (
    ConfidentMisclassification,
    Misclassification,
    TargetedMisclassification,
    TopKMisclassification,
)
from bastion.core.errors import AccessError, ConfigError
from bastion.core.threat import Threat

from helpers import run

SCORES = torch.tensor([[3.0, 2.0, 1.0, 0.0], [1.0, 3.0, 2.0, 0.0], [2.0, 2.0, 0.0, 0.0]])
Y = torch.tensor([0, 0, 0])


def test_each_criterion_on_known_scores() -> None:
    assert Misclassification().is_success(SCORES, Y).tolist() == [False, True, False]  # a tie
    assert TargetedMisclassification().is_success(SCORES, torch.tensor([1, 1, 1])).tolist() == [
        False,
        True,
        False,
    ]
    # the true label 0 is third in row 1: out of the top 2, inside the top 3
    assert TopKMisclassification(k=2).is_success(SCORES, Y).tolist() == [False, True, False]
    assert TopKMisclassification(k=3).is_success(SCORES, Y).tolist() == [False, False, False]
    probs = torch.tensor([[0.1, 0.85, 0.05], [0.05, 0.95, 0.0], [0.9, 0.1, 0.0]])
    confident = ConfidentMisclassification(threshold=0.9)
    assert confident.is_success(probs, torch.tensor([0, 0, 0])).tolist() == [False, True, False]
    # margins are at most zero exactly where the goal is reached
    for c in (Misclassification(), TopKMisclassification(k=2), confident):
        s = probs if c is confident else SCORES
        assert ((c.margin(s, Y) <= 0) == c.is_success(s, Y)).all()


def test_labels_alone_judge_only_what_they_can() -> None:
    labels = torch.tensor([0, 1, 2])
    assert Misclassification().is_success(labels, Y).tolist() == [False, True, True]
    with pytest.raises(AccessError, match="needs scores"):
        TopKMisclassification(k=2).is_success(labels, Y)


def test_threat_carries_the_criterion() -> None:
    assert Threat().goal == Misclassification()
    assert Threat(targeted=True).goal == TargetedMisclassification()
    threat = Threat(criterion={"kind": "top-k", "k": 3})
    assert threat.goal == TopKMisclassification(k=3)
    assert Threat.model_validate_json(threat.model_dump_json()) == threat
    with pytest.raises(ConfigError, match="contradicts"):
        Threat(targeted=True, criterion=TopKMisclassification())


def test_attacks_and_scan_follow_the_criterion(cnn: Any, digits: Any, sk_target: Any) -> None:
    x, y = digits[0][:64], digits[1][:64]
    top3 = Threat(epsilons=(0.15,), criterion=TopKMisclassification(k=3))
    plain = PGD(steps=10).run(cnn, x, y, Threat(epsilons=(0.15,)))
    harder = PGD(steps=10, loss="margin").run(cnn, x, y, top3)
    # pushing the true label out of the top 3 is harder than out of first place
    assert harder.success.float().mean() < plain.success.float().mean()
    # and success means exactly that, checked independently of the criterion's own code
    scores = cnn(harder.x_adv)
    ranks = (scores > scores.gather(1, y[:, None])).sum(dim=1)
    assert torch.equal(harder.success, ranks >= 3)
    confident = Threat(epsilons=(0.1,), criterion=ConfidentMisclassification(threshold=0.9))
    found = SquareAttack(max_queries=100).run(sk_target, x, y, confident, seed=0)
    probs = sk_target(found.x_adv)
    best_other = probs.scatter(1, y[:, None], 0.0).amax(dim=1)
    assert torch.equal(found.success, (probs.argmax(1) != y) & (best_other >= 0.9))


def test_cli_goal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    import json

    args = ["scan", "--samples", "20", "--eps", "0.2", "--steps", "5", "--max-queries", "30"]
    code, _, err = run(capsys, *args, "--out", str(tmp_path / "a"))
    assert code == 0, err
    code, out, err = run(capsys, *args, "--goal", "top-k:3", "--out", str(tmp_path / "b"))
    assert code == 0, err and "success criterion: top-3" in out
    plain, top = (
        json.loads((tmp_path / d / "report.json").read_text())["assessments"][0] for d in "ab"
    )
    assert top["setting"]["threat"]["criterion"] == {"kind": "top-k", "k": 3}
    robust = [a["details"]["sweep"][0]["robust_accuracy"] for a in (plain, top)]
    assert robust[1] > robust[0]
    code, _, err = run(capsys, *args, "--goal", "top-k:0", "--out", str(tmp_path / "c"))
    assert code == 2 and "greater than or equal to 1" in err
