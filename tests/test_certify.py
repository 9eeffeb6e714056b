"""Randomized smoothing: the certificate's maths, its agreement with the analytic truth, and
the trainer and the assessment around it."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import beta, binom, norm
from torch import nn

from bastion.assess.certification import assess_certification
from bastion.core.errors import AccessError, ConfigError, DataError
from bastion.core.registry import DEFENCES
from bastion.core.targets import TorchTarget
from bastion.core.threat import Access, OutputKind
from bastion.defences import create_defence
from bastion.defences.certify import (
    ABSTAIN,
    GaussianAugmentation,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
    max_certifiable_radius,
)

REPO = Path(__file__).resolve().parents[1]


class Constant(nn.Module):
    """Answers class ``label`` whatever the input."""

    def __init__(self, label: int, num_classes: int = 3) -> None:
        super().__init__()
        self.label, self.num_classes = label, num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.num_classes)
        out[:, self.label] = 1.0
        return out


class HalfPlane(nn.Module):
    """Class 1 where ``w . x + b > 0``, else class 0: a linear classifier on 2-D inputs."""

    def __init__(self, w: tuple[float, float], b: float) -> None:
        super().__init__()
        self.w = torch.tensor(w)
        self.b = b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        side = (x @ self.w + self.b > 0).float()
        return torch.stack([1 - side, side], dim=1)


def _target(
    module: nn.Module, classes: int, bounds: tuple[float, float], shape: Any
) -> TorchTarget:
    return TorchTarget(module, num_classes=classes, bounds=bounds, input_shape=shape, name="m")


# ------------------------------------------------------------------------- the maths
def test_clopper_pearson_lower_bound_is_the_exact_binomial_tail() -> None:
    """The bound p solves P(Binomial(n, p) >= k) = alpha: the largest p it rules out."""
    n, alpha = 200, 0.01
    k = np.array([1, 50, 120, 199])
    p = clopper_pearson_lower(k, n, alpha)
    assert np.allclose(binom.sf(k - 1, n, p), alpha, rtol=1e-6)
    assert clopper_pearson_lower(0, n, alpha)[()] == 0.0
    # all successes: the Beta(n, 1) quantile, alpha ** (1 / n) in closed form
    assert clopper_pearson_lower(n, n, alpha)[()] == alpha ** (1 / n)
    assert math.isclose(alpha ** (1 / n), beta.ppf(alpha, n, 1), rel_tol=1e-12)


@pytest.mark.parametrize(("bounds", "sigma"), [((0.0, 1.0), 0.25), ((0.0, 255.0), 0.5)])
def test_constant_classifier_gets_exactly_the_analytic_radius(
    bounds: tuple[float, float], sigma: float
) -> None:
    """Every noise sample votes for the class: pA_lower = alpha ** (1 / n), and the radius is
    sigma * PhiInv(alpha ** (1 / n)) in input units (sigma is relative to the range)."""
    n, alpha = 500, 0.001
    smoothed = SmoothedClassifier(_target(Constant(2), 3, bounds, (4,)), sigma)
    x = torch.full((5, 4), bounds[0]) + torch.rand(5, 4) * (bounds[1] - bounds[0])
    cert = smoothed.certify(x, n0=10, n=n, alpha=alpha)
    expected = sigma * (bounds[1] - bounds[0]) * norm.ppf(alpha ** (1 / n))
    assert cert.prediction.tolist() == [2] * 5
    assert cert.radius.tolist() == [expected] * 5
    assert expected == max_certifiable_radius(sigma, n, alpha) * (bounds[1] - bounds[0])
    assert cert.counts[:, 2].tolist() == [n] * 5
    assert cert.queries == 5 * (10 + n)


def test_certified_accuracy_counts_right_answers_certified_that_far() -> None:
    radii = np.array([0.0, 0.3, 0.6, 0.9])
    correct = np.array([True, True, False, True])
    assert certified_accuracy(radii, correct, [0.0, 0.3, 0.5, 1.0]).tolist() == [
        0.75,
        0.5,
        0.25,
        0.0,
    ]
    with pytest.raises(ConfigError, match="4 radii but 3"):
        certified_accuracy(radii, correct[:3], [0.0])


# ------------------------------------------------------------------------- against the truth
W, B, SIGMA = (0.6, 0.8), -0.7, 0.25  # |w| = 1: w . x + b is the signed distance


def _points(distances: list[float]) -> torch.Tensor:
    """Points at the given signed distances from the line w . x + b = 0, inside [0, 1]^2."""
    w = torch.tensor(W)
    foot = torch.tensor([0.42, 0.56])  # on the line: 0.6 * 0.42 + 0.8 * 0.56 = 0.7
    return torch.stack([foot + d * w for d in distances])


@pytest.mark.parametrize("bounds", [(0.0, 1.0), (-1.0, 1.0)])
def test_certify_agrees_with_the_analytic_smoothed_classifier(bounds: tuple[float, float]) -> None:
    """For a linear classifier, pA = Phi(d / s) at distance d with noise s, so the smoothed
    classifier's true radius is d itself. The certificate is a lower bound on it, and close
    to it for large n; the votes match Phi(d / s) within their sampling error."""
    distances = [0.05, 0.1, 0.2, 0.3, 0.4, -0.15, -0.35]
    x = _points(distances)
    sigma = SIGMA / (bounds[1] - bounds[0])  # the same noise in input units: s = 0.25
    smoothed = SmoothedClassifier(_target(HalfPlane(W, B), 2, bounds, (2,)), sigma)
    assert smoothed.scale == pytest.approx(SIGMA)
    n, alpha = 100_000, 0.001
    cert = smoothed.certify(x, n0=100, n=n, alpha=alpha, seed=3)
    true_radius = np.abs(distances)
    true_class = [1 if d > 0 else 0 for d in distances]
    assert cert.prediction.tolist() == true_class
    assert (cert.radius.numpy() <= true_radius).all()
    assert np.allclose(cert.radius.numpy(), true_radius, atol=0.01)
    # the direct check: vote shares against Phi(d / s), within 4 standard errors
    pa = norm.cdf(true_radius / SIGMA)
    share = cert.counts.gather(1, cert.prediction[:, None]).squeeze(1).numpy() / n
    assert np.all(np.abs(share - pa) <= 4 * np.sqrt(pa * (1 - pa) / n) + 1e-9)
    assert (cert.pa_lower.numpy() <= pa).all()


def test_abstains_at_the_decision_boundary_and_not_far_from_it() -> None:
    x = _points([0.0, 0.0, 0.5])
    smoothed = SmoothedClassifier(_target(HalfPlane(W, B), 2, (0.0, 1.0), (2,)), SIGMA)
    assert smoothed.predict(x, n=2000, alpha=0.001, seed=1).tolist() == [ABSTAIN, ABSTAIN, 1]
    cert = smoothed.certify(x, n0=100, n=2000, alpha=0.001, seed=1)
    assert cert.prediction.tolist() == [ABSTAIN, ABSTAIN, 1]
    assert cert.abstained.tolist() == [True, True, False]
    assert cert.radius[:2].tolist() == [0.0, 0.0] and float(cert.radius[2]) > 0.3
    assert not cert.correct(torch.tensor([1, 0, 1]))[:2].any()


def test_same_seed_same_certificate_and_queries_counted() -> None:
    base = _target(HalfPlane(W, B), 2, (0.0, 1.0), (2,))
    smoothed = SmoothedClassifier(base, SIGMA, n=50)
    x = _points([0.02, 0.1, -0.05])
    first = smoothed.certify(x, n0=20, n=300, seed=7, batch_size=64)
    again = smoothed.certify(x, n0=20, n=300, seed=7, batch_size=64)
    assert torch.equal(first.counts, again.counts) and torch.equal(first.radius, again.radius)
    # each input counts once at the smoothed classifier, once per noise sample at the base
    assert smoothed.queries == 6 and base.queries == 2 * 3 * 320
    with pytest.raises(DataError):
        smoothed.certify(torch.zeros(2, 3), n0=5, n=5)  # the base model rejects the shape
    assert smoothed.queries == 6
    a = SmoothedClassifier(base, SIGMA, seed=4).predict(x)
    b = SmoothedClassifier(base, SIGMA, seed=4).predict(x)
    assert torch.equal(a, b)


def test_as_a_target_it_answers_vote_frequencies_or_labels() -> None:
    base = _target(HalfPlane(W, B), 2, (0.0, 1.0), (2,))
    x = _points([0.3, -0.3, 0.01])
    scores = SmoothedClassifier(base, SIGMA, n=200)
    assert scores.access is Access.SCORES and scores.output_kind is OutputKind.PROBABILITIES
    freq = scores.outputs(x)
    assert freq.shape == (3, 2) and torch.allclose(freq.sum(dim=1), torch.ones(3))
    assert torch.allclose(freq * 200, (freq * 200).round())
    assert freq[0, 1] > 0.8 and freq[1, 0] > 0.8
    assert scores.queries == 3 and base.queries == 600
    with pytest.raises(AccessError, match="no gradients"):
        scores.gradient(x, lambda out: out.sum())
    labels = SmoothedClassifier(base, SIGMA, n=200, output="labels")
    assert labels.access is Access.LABELS and labels.outputs(x)[:2].tolist() == [1, 0]
    assert labels.describe()["smoothing"]["sigma"] == SIGMA


def test_parameter_errors_are_one_line_config_errors(cnn: TorchTarget) -> None:
    base = _target(HalfPlane(W, B), 2, (0.0, 1.0), (2,))
    x = _points([0.1])
    for kwargs, message in [
        ({"sigma": 0.0}, "sigma must be a positive number"),
        ({"sigma": float("nan")}, "sigma must be a positive number"),
        ({"alpha": 1.0}, "alpha must be in"),
        ({"n": 0}, "n must be a whole number"),
        ({"batch_size": 0}, "batch_size must be"),
        ({"output": "logits"}, "output must be"),
    ]:
        with pytest.raises(ConfigError, match=message):
            SmoothedClassifier(base, **kwargs)
    smoothed = SmoothedClassifier(base, SIGMA)
    with pytest.raises(ConfigError, match="n0 must be"):
        smoothed.certify(x, n0=0)
    with pytest.raises(ConfigError, match="alpha must be in"):
        smoothed.certify(x, alpha=0.0)
    with pytest.raises(ConfigError, match="n must be"):
        smoothed.predict(x, n=-5)
    with pytest.raises(ConfigError, match="sigma must be a positive number"):
        create_defence("smoothing:sigma=-1")
    with pytest.raises(ConfigError, match="epochs and batch_size"):
        create_defence("smoothing:epochs=0")
    with pytest.raises(ConfigError, match="lr must be positive"):
        create_defence("smoothing:lr=0")
    with pytest.raises(ConfigError, match="needs a SmoothedClassifier"):
        assess_certification(cnn, x, torch.tensor([1]))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="radii must be"):
        assess_certification(smoothed, x, torch.tensor([1]), radii=(-0.5,))


# ------------------------------------------------------------------------- the trainer
def test_smoothing_is_a_registered_trainer(sk_target: Any) -> None:
    entry = DEFENCES.get("smoothing")
    assert entry.defence_kind == "trainer" and "AID-H-016" in entry.mitigations
    assert entry.parameters()["sigma"] == 0.25
    assert entry.parameters()["from_scratch"] is False
    with pytest.raises(AccessError, match="needs a PyTorch model"):
        GaussianAugmentation().fit(sk_target, (np.zeros((2, 1, 8, 8)), np.zeros(2)))


def test_noise_training_beats_the_plain_model_under_noise(demo: Any) -> None:
    target, data = demo
    before = {k: v.clone() for k, v in target.model.state_dict().items()}
    steps: list[tuple[int, int]] = []
    trainer = GaussianAugmentation(sigma=0.5, epochs=4, seed=0)
    smoothed = trainer.fit(target, data, progress=lambda i, n, record: steps.append((i, n)))
    assert isinstance(smoothed, SmoothedClassifier) and smoothed.sigma == 0.5
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    assert [r["epoch"] for r in trainer.history_] == [1, 2, 3, 4]
    assert trainer.history_[-1]["loss"] < trainer.history_[0]["loss"]
    trained = smoothed.base
    assert trained.model is not target.model and not trained.model.training
    x, y = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    noisy = x + 0.5 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    plain_acc = float((target.predict(noisy) == y).float().mean())
    trained_acc = float((trained.predict(noisy) == y).float().mean())
    assert trained_acc > plain_acc + 0.05
    # and the given model is unchanged
    after = target.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


# ------------------------------------------------------------------------- the assessment
def test_assessment_reports_certified_accuracy_and_a_curve(tmp_path: Path) -> None:
    from bastion.core.assessment import Report
    from bastion.report import load_schema, to_dict

    smoothed = SmoothedClassifier(_target(HalfPlane(W, B), 2, (0.0, 1.0), (2,)), SIGMA)
    distances = [0.0, 0.1, 0.2, 0.3, -0.2, -0.4]
    x = _points(distances)
    y = torch.tensor([1, 1, 1, 0, 0, 0])  # the 0.3 point is labelled wrongly
    result = assess_certification(smoothed, x, y, n=5000, radii=(0.0, 0.15, 0.25, 1.5), seed=0)
    assert result.family == "certification"
    acc = {r: result.metric("certified_accuracy", radius=r).value for r in (0.0, 0.15, 0.25)}
    # right and certified: 0.1, 0.2, -0.2, -0.4 (radii about 0.1 ... 0.4)
    assert acc[0.0] == pytest.approx(4 / 6)
    assert acc[0.15] == pytest.approx(3 / 6)
    assert acc[0.25] == pytest.approx(1 / 6)
    assert result.metric("certified_accuracy", radius=1.5).value == 0.0
    assert result.metric("certified_accuracy", radius=1.5).limited
    assert result.metric("certified_accuracy", radius=0.0).count == (4, 6)
    assert result.metric("abstention_rate", procedure="certify").value == pytest.approx(1 / 6)
    assert result.metric("clean_accuracy").value == pytest.approx(4 / 6)
    assert any("beyond radius" in w for w in result.warnings) and result.limits
    (curve,) = [a for a in result.artifacts if a.kind == "curve"]
    assert curve.title == "Certified accuracy against L2 radius"
    series = curve.data["series"][0]
    assert series["y"][0] == pytest.approx(4 / 6) and series["y"] == sorted(series["y"])[::-1]
    assert len(result.records) == 6 and result.records[0]["prediction"] == ABSTAIN
    # it renders as a report that validates against the schema, and in every format
    import jsonschema

    from bastion.report import write_report

    document = to_dict(Report([result]))
    jsonschema.validate(document, load_schema())
    json.dumps(document)
    written = write_report(Report([result]), tmp_path, ["json", "html", "md", "sarif"])
    assert len(written) == 4
    assert "Certified accuracy against L2 radius" in (tmp_path / "report.html").read_text()


# ------------------------------------------------------------------------- the docs
def test_certification_doc_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    text = (REPO / "docs" / "certification.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/certification.md", "exec"), {})
    out = capsys.readouterr().out
    assert re.search(r"certified L2 radii: \[(0\.\d+, ){4}0\.\d+\]", out)
    match = re.search(r"certified accuracy at radius 0\.5: (\d+\.\d)% \(95% CI", out)
    # the fine-tuned demo certifies some of its answers that far (about 40% of 30)
    assert match and 0.0 < float(match.group(1)) <= 100.0
