"""The defences layer: a defended target is a target, and each shipped defence does its job."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from bastion.assess import scan
from bastion.attacks import PGD, SquareAttack
from bastion.core.errors import ConfigError
from bastion.core.threat import Access, OutputKind, Threat
from bastion.defences import DefendedTarget, create_defence, parse_defence
from bastion.defences.postprocess.output import LabelOnly, RoundScores, TopK
from bastion.defences.preprocess.squeeze import BitDepth


def test_parse_and_create() -> None:
    assert parse_defence("squeeze:bits=4") == ("squeeze", {"bits": 4})
    assert parse_defence("round") == ("round", {})
    assert create_defence("round:decimals=1").decimals == 1  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="between 1 and 16"):
        create_defence("squeeze:bits=0")
    with pytest.raises(ConfigError, match="unknown defence"):
        create_defence("tinfoil")
    with pytest.raises(ConfigError, match="param=value"):
        parse_defence("squeeze:bits")


def test_bit_depth_rounds_to_its_levels_within_any_bounds() -> None:
    x = torch.linspace(-1, 3, 101)
    out = BitDepth(bits=2).transform(x, (-1.0, 3.0))
    levels = torch.tensor([-1.0, 1 / 3, 5 / 3, 3.0])
    assert torch.isclose(out[:, None], levels[None, :], atol=1e-5).any(dim=1).all()
    assert float((out - x).abs().max()) <= 4 / 3 / 2 + 1e-5


def test_squeezed_target_keeps_gradients_through_bpda(cnn: Any, digits: Any) -> None:
    defended = DefendedTarget(cnn, [create_defence("squeeze:bits=3")])
    assert defended.access is Access.WHITE_BOX and "squeeze" in defended.name
    x, y = digits[0][:64], digits[1][:64]
    squeezed = BitDepth(bits=3).transform(x, (0.0, 1.0))
    # the forward pass is the squeezed model's
    assert torch.equal(defended.predict(x), cnn.predict(squeezed))
    inner_before, outer_before = cnn.queries, defended.queries
    result = PGD(steps=10).run(defended, x, y, eps=0.2)
    # gradients flow (BPDA), so PGD still breaks the squeezed model
    assert result.success.float().mean() > 0.5
    # queries are counted once, at the defended target
    assert defended.queries - outer_before == result.queries > 0
    assert cnn.queries == inner_before


def test_scan_runs_against_a_defended_target(cnn: Any, demo: Any) -> None:
    defended = DefendedTarget(cnn, [create_defence("squeeze:bits=4")])
    result = scan(
        defended,
        demo[1],
        Threat(epsilons=(0.1, 0.3)),
        samples=24,
        attack_params={"pgd": {"steps": 8}, "square": {"max_queries": 30}},
    )
    assert result.target["defences"] == ["squeeze:bits=4"]
    assert result.sweep[-1].robust_accuracy < result.clean_accuracy


def test_postprocessors_set_what_the_adversary_sees(cnn: Any, digits: Any) -> None:
    x = digits[0][:20]
    rounded = DefendedTarget(cnn, [RoundScores(decimals=1)])
    assert rounded.access is Access.SCORES and rounded.output_kind is OutputKind.PROBABILITIES
    probs = rounded(x)
    assert torch.allclose(probs * 10, (probs * 10).round(), atol=1e-5)
    top = DefendedTarget(cnn, [TopK(k=2)])(x)
    assert int((top > 0).sum(dim=1).max()) <= 2
    labels = DefendedTarget(cnn, [LabelOnly()])
    assert labels.access is Access.LABELS and labels(x).ndim == 1
    assert torch.equal(labels(x), cnn.predict(x))
    with pytest.raises(ConfigError, match="before its postprocessors"):
        DefendedTarget(cnn, [RoundScores(), BitDepth()])


def test_rounding_lowers_what_a_score_based_attack_can_see(sk_target: Any, digits: Any) -> None:
    """Square climbs score margins; rounded scores hide most of the small steps it takes."""
    from bastion.core.targets import SklearnTarget

    x, y = digits[0][:60], digits[1][:60]
    plain = SquareAttack(max_queries=150).run(sk_target, x, y, eps=0.1, seed=1)
    fresh = SklearnTarget(sk_target.estimator, num_classes=10, input_shape=(1, 8, 8))
    rounded = DefendedTarget(fresh, [RoundScores(decimals=1)])
    hardened = SquareAttack(max_queries=150).run(rounded, x, y, eps=0.1, seed=1)
    assert hardened.success.float().mean() < plain.success.float().mean() - 0.15


def test_label_only_defence_leaves_no_score_attack(cnn: Any, demo: Any) -> None:
    labels = DefendedTarget(cnn, [create_defence("labels")])
    result = scan(
        labels,
        demo[1],
        Threat(epsilons=(0.1,)),
        samples=8,
        attack_params={"hopskipjump": {"max_queries": 100}},
    )
    # only the label-only attacks run: the scores are gone
    assert result.attacks == ["hopskipjump"]
    assert list(result.sweep[0].group_robust) == [Access.LABELS.value]


def test_detector_threshold_follows_the_false_positive_rate(cnn: Any) -> None:
    from bastion.defences import Detector

    class Dummy(Detector):
        registry_name = "dummy"

        def score(self, x: torch.Tensor) -> torch.Tensor:
            return x.flatten(1).mean(dim=1)

    detector = Dummy().calibrate(torch.rand(200, 4), fpr=0.1)
    flagged = detector.detect(torch.rand(1000, 4))
    assert 0.03 < float(flagged.float().mean()) < 0.2
