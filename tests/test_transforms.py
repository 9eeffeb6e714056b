"""Input transformations: each does its job, and the evaluation sees through each of them.

The transforms (median, JPEG, randomized resizing and padding, with bit depth from
``test_defences``), the squeeze detector at a calibrated false-positive rate, the ensemble
target, and the naive-against-adaptive comparison that shows what plain PGD overstates.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import bastion
from bastion import Threat, TorchTarget
from bastion.assess import naive_target, naive_vs_adaptive
from bastion.attacks import PGD
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import ATTACKS, DEFENCES
from bastion.core.threat import Access, Norm, OutputKind
from bastion.data import Dataset
from bastion.defences import DefendedTarget, EnsembleTarget, create_defence
from bastion.defences.detection.squeeze import SqueezeDetector
from bastion.defences.postprocess.output import LabelOnly
from bastion.defences.preprocess.jpeg import JpegCompression, quantization_table
from bastion.defences.preprocess.median import MedianFilter
from bastion.defences.preprocess.resize_pad import ResizePad
from bastion.defences.preprocess.squeeze import BitDepth

from helpers import accuracy

# --- the transforms ---------------------------------------------------------------------


def _smooth_images(n: int, channels: int, size: int) -> torch.Tensor:
    """Images of soft gradients and blobs: what JPEG and a median filter leave nearly alone."""
    gen = torch.Generator().manual_seed(0)
    axis = torch.linspace(0, 1, size)
    out = []
    for _ in range(n):
        a, b = torch.rand(2, channels, 1, 1, generator=gen)
        out.append(0.2 + 0.3 * a * axis.view(1, 1, -1) + 0.3 * b * axis.view(1, -1, 1))
    return torch.stack([o.expand(channels, size, size) for o in out]).contiguous()


@pytest.mark.parametrize("channels", [1, 3])
def test_jpeg_at_quality_100_is_nearly_the_identity_and_low_quality_is_not(channels: int) -> None:
    gen = torch.Generator().manual_seed(1)
    # 13 x 21: not a multiple of the 8 x 8 blocks, so the padding and the crop are exercised
    x = torch.rand(4, channels, 13, 21, generator=gen) * 2 - 1
    bounds = (-1.0, 1.0)
    best = JpegCompression(quality=100).transform(x, bounds)
    assert best.shape == x.shape and best.dtype == x.dtype
    # 8-bit pixels on a range of 2: rounding alone moves a value by up to 1/255
    assert float((best - x).abs().max()) < 0.03
    worst = JpegCompression(quality=5).transform(x, bounds)
    assert float((worst - x).abs().mean()) > 0.2
    assert float(worst.min()) >= -1 and float(worst.max()) <= 1
    # quality orders the damage
    mid = JpegCompression(quality=50).transform(x, bounds)
    assert (best - x).abs().mean() < (mid - x).abs().mean() < (worst - x).abs().mean()


def test_jpeg_keeps_smooth_images_and_drops_fine_noise() -> None:
    x = _smooth_images(6, 3, 16)
    noise = 0.03 * torch.sign(torch.randn(x.shape, generator=torch.Generator().manual_seed(2)))
    out = JpegCompression(quality=50).transform((x + noise).clamp(0, 1), (0.0, 1.0))
    # compression takes the image back towards the clean one: the noise is what it quantizes
    assert float((out - x).abs().mean()) < 0.6 * float(noise.abs().mean())


def test_jpeg_tables_follow_the_standard_scaling() -> None:
    assert torch.equal(quantization_table(100), torch.ones(8, 8))
    assert quantization_table(50)[0, 0] == 16 and quantization_table(50, chroma=True)[0, 0] == 17
    assert bool((quantization_table(10) >= quantization_table(90)).all())


def test_median_removes_salt_and_pepper() -> None:
    x = _smooth_images(8, 1, 16)
    gen = torch.Generator().manual_seed(3)
    hit = torch.rand(x.shape, generator=gen) < 0.05
    salt = torch.rand(x.shape, generator=gen) < 0.5
    noisy = torch.where(hit, salt.float(), x)
    cleaned = MedianFilter(size=3).transform(noisy, (0.0, 1.0))
    assert cleaned.shape == x.shape
    # isolated pixels are voted out by their neighbours: nearly all of the noise is gone
    assert float((cleaned - x).abs().mean()) < 0.1 * float((noisy - x).abs().mean())
    # a mean filter over the same windows (its BPDA stand-in) only spreads the noise
    spread = MedianFilter(size=3).approximation(noisy, (0.0, 1.0))
    assert float((spread - x).abs().mean()) > 3 * float((cleaned - x).abs().mean())


def test_median_even_window_is_the_mean_of_the_middle_pair() -> None:
    x = torch.tensor([[0.0, 1.0], [0.2, 0.6]]).view(1, 1, 2, 2)
    # the window at the top left holds 0, 1, 0.2, 0.6: the middle pair is 0.2 and 0.6
    assert float(MedianFilter(size=2).transform(x, (0.0, 1.0))[0, 0, 0, 0]) == pytest.approx(0.4)


def test_resize_pad_is_random_keeps_the_shape_and_repeats_with_its_seed() -> None:
    x = _smooth_images(16, 3, 12)
    pad = ResizePad(max_scale=1.5, seed=0)
    first, second = pad.transform(x, (0.0, 1.0)), pad.transform(x, (0.0, 1.0))
    assert first.shape == x.shape and first.dtype == x.dtype
    # a fresh draw at every pass
    assert not torch.allclose(first, second)
    # padded with the lower bound, so within the bounds
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    again = ResizePad(max_scale=1.5, seed=0)
    assert torch.equal(again.transform(x, (0.0, 1.0)), first)
    # the padding is the lower bound, whatever the bounds (an image drawn at nearly the
    # canvas's size has only a sliver of it, blended into its edge pixels)
    shifted = ResizePad(max_scale=2.0, seed=1).transform(x * 2 - 1, (-1.0, 1.0))
    assert float(shifted.min()) >= -1 - 1e-6
    assert float((shifted.flatten(1).min(dim=1).values < -0.99).float().mean()) > 0.8


@pytest.mark.parametrize("spec", ["median", "jpeg", "resize-pad"])
def test_image_transforms_refuse_tabular_inputs_in_one_line(spec: str) -> None:
    with pytest.raises(DataError, match=r"transforms images, shape \(N, C, H, W\)"):
        create_defence(spec).transform(torch.rand(5, 30), (0.0, 1.0))  # type: ignore[attr-defined]
    assert DEFENCES.get(spec).data_kinds == ("image",)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("median:size=0", "between 1 and 15"),
        ("jpeg:quality=0", "between 1 and 100"),
        ("jpeg:quality=101", "between 1 and 100"),
        ("resize-pad:max_scale=1", r"in \(1, 4\]"),
        ("squeeze-detector:bits=0,median=0", "needs a squeezer"),
        ("squeeze-detector:median=1", "0 \\(none\\) or 2 to 15"),
    ],
)
def test_bad_parameters_are_one_line_errors(spec: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        create_defence(spec)


def test_the_transforms_are_registered_preprocessors() -> None:
    for name in ("squeeze", "median", "jpeg", "resize-pad"):
        entry = DEFENCES.get(name)
        assert entry.defence_kind == "preprocessor" and "AML.M0010" in entry.mitigations
    assert DEFENCES.get("squeeze-detector").defence_kind == "detector"


# --- naive against adaptive -------------------------------------------------------------


def test_bpda_off_keeps_the_answers_and_exposes_the_masked_gradient(
    cnn: TorchTarget, digits: Any
) -> None:
    x = digits[0][:32]
    adaptive = DefendedTarget(cnn, [JpegCompression(quality=50)])
    naive = naive_target(adaptive)
    assert isinstance(naive, DefendedTarget) and not naive.bpda and adaptive.bpda
    assert torch.allclose(naive(x), adaptive(x), atol=1e-5)
    assert naive.describe()["bpda"] is False and "bpda" not in adaptive.describe()
    point = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(naive(point).logsumexp(1).sum(), point)
    # the codec's roundings: zero gradient through the real transform
    assert float(grad.abs().max()) == 0
    point = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(adaptive(point).logsumexp(1).sum(), point)
    assert float(grad.abs().max()) > 0
    # an ensemble's defended members are turned naive too; plain targets stay as they are
    ensemble = naive_target(EnsembleTarget([cnn, adaptive]))
    assert isinstance(ensemble, EnsembleTarget) and ensemble.members[0] is cnn
    assert not ensemble.members[1].bpda  # type: ignore[attr-defined]
    assert naive_target(cnn) is cnn


def test_plain_pgd_overstates_bit_depth_and_the_evaluation_does_not(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    cnn, data = demo
    squeezed = DefendedTarget(cnn, [BitDepth(bits=2)])
    threat = Threat(norm="linf", epsilons=(0.2,))
    result = naive_vs_adaptive(squeezed, data, threat, preset="quick", samples=60)
    (row,) = result.rows()
    assert row["clean"] > 0.9
    # through the real rounding PGD finds nothing to follow: the defence looks robust
    assert row["naive"] > 0.8
    # through BPDA the defended model falls as far as the undefended one (which is ~0 here)
    assert row["undefended"] is not None and row["undefended"] < 0.1
    assert row["adaptive"] <= row["undefended"] + 0.1
    assert row["overstated"] > 0.7
    assert not any("masked" in a for a in result.adaptive.adaptations)
    assert result.naive.attacks == ["pgd"] and result.naive.attack_params["pgd"]["eot_samples"] == 1


def test_evaluation_answers_resize_pad_with_eot(demo: tuple[TorchTarget, Dataset]) -> None:
    cnn, data = demo
    padded = DefendedTarget(cnn, [ResizePad(max_scale=1.1, seed=0)])
    threat = Threat(norm="linf", epsilons=(0.2,))
    result = bastion.evaluate(padded, data, threat, preset="quick", samples=60)
    # the probe saw a different answer for the same input, and the gradient attacks averaged
    assert any("expectation over transformation" in a for a in result.adaptations)
    assert result.attack_params["apgd"]["eot_samples"] > 1
    assert not any(f.unreliable for f in result.findings)
    assert result.sweep[0].robust_accuracy < 0.15


@pytest.mark.parametrize("spec", ["median:size=2", "jpeg:quality=50"])
def test_bpda_breaks_the_other_transforms(demo: tuple[TorchTarget, Dataset], spec: str) -> None:
    cnn, data = demo
    defended = DefendedTarget(cnn, [create_defence(spec)])
    threat = Threat(norm="linf", epsilons=(0.2,))
    result = bastion.evaluate(defended, data, threat, preset="quick", samples=60)
    assert not any("masked" in a for a in result.adaptations)
    assert result.sweep[0].robust_accuracy < 0.15


# --- the squeeze detector ---------------------------------------------------------------


def test_squeeze_detector_holds_its_false_positive_rate_and_catches_pgd(
    cnn: TorchTarget, demo: tuple[TorchTarget, Dataset]
) -> None:
    _, data = demo
    x, y = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    calibration, held = x[:180], x[180:]
    # on 8x8 digits a 2x2 median already moves clean predictions: bit depth alone
    detector = DEFENCES.create("squeeze-detector", bits=4, median=0).fit(cnn)
    detector.calibrate(calibration, fpr=0.05)
    false_positive = float(detector.detect(held).float().mean())
    # 180 held-out inputs: the rate is within a few standard errors (0.016) of 0.05
    assert false_positive <= 0.12
    result = PGD(steps=20).run(cnn, held, y[180:], eps=0.1, seed=0)
    adversarial = result.x_adv[result.success & (cnn.predict(held) == y[180:])]
    assert len(adversarial) > 50
    # measured: all 81 of them flagged
    assert float(detector.detect(adversarial).float().mean()) > 0.85


def test_squeeze_detector_catches_minimal_l2_examples(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:80], digits[1][:80]
    detector = SqueezeDetector(bits=4, median=0).fit(cnn).calibrate(digits[0][80:], fpr=0.05)
    cw = ATTACKS.create("cw", **ATTACKS.get("cw").fast)
    result = cw.run(cnn, x, y, eps=3.0, norm=Norm.L2, seed=0)
    adversarial = result.x_adv[result.success & (cnn.predict(x) == y)]
    assert len(adversarial) > 40
    # C-W stops just across the boundary, where squeezing pulls an input back (measured 0.94)
    assert float(detector.detect(adversarial).float().mean()) > 0.8


def test_squeeze_detector_scores_every_squeezer_and_needs_its_model(
    cnn: TorchTarget, digits: Any
) -> None:
    x = digits[0][:40]
    joint = SqueezeDetector(bits=4, median=2).fit(cnn).score(x)
    alone = [SqueezeDetector(bits=4, median=0), SqueezeDetector(bits=0, median=2)]
    scores = [d.fit(cnn).score(x) for d in alone]
    assert torch.allclose(joint, torch.maximum(*scores))
    assert float(joint.min()) >= 0 and float(joint.max()) <= 2
    with pytest.raises(ConfigError, match="not fitted"):
        SqueezeDetector().score(x)
    with pytest.raises(ConfigError, match="needs scores"):
        SqueezeDetector().fit(DefendedTarget(cnn, [LabelOnly()]))


# --- the ensemble -----------------------------------------------------------------------


def test_ensemble_answers_the_mean_of_its_members(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:50], digits[1][:50]
    members = [
        cnn,
        DefendedTarget(cnn, [JpegCompression(quality=50)]),
        DefendedTarget(cnn, [MedianFilter(size=2)]),
    ]
    ensemble = EnsembleTarget(members, weights=[2, 1, 1])
    assert ensemble.access is Access.WHITE_BOX
    assert ensemble.output_kind is OutputKind.PROBABILITIES
    probs = [m(x).softmax(1) for m in members]
    expected = 0.5 * probs[0] + 0.25 * probs[1] + 0.25 * probs[2]
    assert torch.allclose(ensemble(x), expected, atol=1e-6)
    before = cnn.queries
    assert ensemble.queries == 50
    # an attack runs on it as on any white-box target, and the ensemble falls
    result = PGD(steps=20).run(ensemble, x, y, eps=0.2, seed=0)
    assert result.success.float().mean() > 0.8
    assert ensemble.queries - 50 == result.queries and cnn.queries == before
    assert ensemble.describe()["combine"] == "mean-prob"


def test_ensemble_vote_counts_labels_and_is_a_black_box(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:40], digits[1][:40]
    labels = DefendedTarget(cnn, [LabelOnly()])
    squeezed = DefendedTarget(cnn, [BitDepth(bits=1)])
    vote = EnsembleTarget([cnn, labels, squeezed], combine="vote")
    assert vote.access is Access.SCORES
    shares = vote(x)
    assert torch.allclose(shares.sum(1), torch.ones(40))
    agree = (cnn.predict(x) == squeezed.predict(x)).float()
    assert torch.allclose(shares.max(1).values[agree == 1], torch.ones(int(agree.sum())))
    assert accuracy(vote, x, y) >= accuracy(squeezed, x, y) - 0.05
    with pytest.raises(ConfigError, match="use combine='vote'"):
        EnsembleTarget([cnn, labels])


def test_ensemble_refuses_what_cannot_be_combined(cnn: TorchTarget, sk_target: Any) -> None:
    with pytest.raises(ConfigError, match="at least 2 members"):
        EnsembleTarget([cnn])
    with pytest.raises(ConfigError, match="combine must be one of"):
        EnsembleTarget([cnn, cnn], combine="max")
    with pytest.raises(ConfigError, match="2 members but 1 weights"):
        EnsembleTarget([cnn, cnn], weights=[1.0])
    with pytest.raises(ConfigError, match="not all zero"):
        EnsembleTarget([cnn, cnn], weights=[0, 0])
    mixed = EnsembleTarget([cnn, sk_target])
    assert mixed.access is Access.SCORES


# --- the documentation ------------------------------------------------------------------


def test_docs_transforms_examples_run_and_say_what_the_page_says(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "transforms.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 3
    namespace: dict[str, object] = {}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/transforms.md[{i}]", "exec"), namespace)
    out = capsys.readouterr().out
    naive, adaptive, undefended = (
        float(v)
        for v in re.search(r"plain PGD (\S+), adaptive (\S+), undefended (\S+)", out).groups()  # type: ignore[union-attr]
    )
    assert naive > 0.8 and adaptive <= undefended + 0.1
    clean, flagged = (
        float(v) for v in re.search(r"clean flagged (\S+), adversarial flagged (\S+)", out).groups()
    )  # type: ignore[union-attr]
    assert clean <= 0.12 and flagged > 0.85
    assert re.search(r"ensemble: clean 0\.9\d, robust 0\.\d\d", out)


def test_a_white_box_defended_target_gives_gradients(demo: Any) -> None:
    from bastion.defences import DefendedTarget, create_defence

    target, data = demo
    x = torch.from_numpy(data.x_test[:4])
    for defences in ([], [create_defence("jpeg:quality=50")]):
        defended = DefendedTarget(target, defences)
        grad = defended.gradient(x, lambda out: out[:, 0].sum())
        assert grad.shape == x.shape and grad.abs().sum() > 0
    # with no defence, the gradient is the model's own
    plain = target.gradient(x, lambda out: out[:, 0].sum())
    assert torch.allclose(DefendedTarget(target, []).gradient(x, lambda o: o[:, 0].sum()), plain)
