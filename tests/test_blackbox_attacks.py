"""The black-box attacks: they use only what their access allows, and they do their job.

Score-based attacks (Square, NES) read scores and nothing else; the label-only one
(HopSkipJump) reads predicted labels and nothing else. Both are checked against targets that
refuse anything more, including a real label-only HTTP endpoint scanned end to end.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bastion import Threat
from bastion.assess import scan
from bastion.attacks import NES, HopSkipJump, SquareAttack
from bastion.core.errors import AccessError
from bastion.core.plugins import load_plugins
from bastion.core.registry import ATTACKS, Entry
from bastion.core.targets import HttpTarget, SklearnTarget, Target, TorchTarget
from bastion.core.targets.base import BlackBoxTarget
from bastion.core.threat import Access, Norm, OutputKind

from helpers import PredictHandler, accuracy, run, serve_http

load_plugins()
BLACK_BOX = [(e, n) for e in ATTACKS if e.access is not Access.WHITE_BOX for n in e.norms]
# the query-based ones among them (transfer crafts on a surrogate instead of querying)
QUERY_BASED = [(e, n) for e, n in BLACK_BOX if "max_queries" in e.parameters()]
EPS = {Norm.LINF: 0.2, Norm.L2: 1.5}


def _id(case: tuple[Entry, Norm]) -> str:
    return f"{case[0].name}-{case[1].value}"


class _NoGradients(Target):
    """The CNN behind a wall: it answers scores, refuses any input that tracks gradients and
    counts every request for a gradient (and refuses it too)."""

    access = Access.SCORES
    output_kind = OutputKind.LOGITS

    def __init__(self, inner: TorchTarget) -> None:
        super().__init__(num_classes=10, input_shape=(1, 8, 8), name="no-gradients")
        self.inner = inner
        self.asked_for_gradients = 0

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad:
            raise AssertionError("a black-box attack sent an input that tracks gradients")
        return self.inner(x)

    def gradient(self, x: torch.Tensor, loss: Any) -> torch.Tensor:
        self.asked_for_gradients += 1
        raise AssertionError("a black-box attack asked for a gradient")


class _LabelsOnly(BlackBoxTarget):
    """The CNN as a label-only endpoint: answers (N,) labels; asking for scores fails."""

    def __init__(self, inner: TorchTarget) -> None:
        super().__init__(
            output_kind=OutputKind.LABELS, num_classes=10, input_shape=(1, 8, 8), name="labels"
        )
        self.inner = inner
        self.asked_for_scores = 0

    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return self.inner.model(torch.from_numpy(x)).argmax(dim=1).numpy()

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        self.asked_for_scores += 1
        raise AssertionError("a label-only attack asked for scores")

    def gradient(self, x: torch.Tensor, loss: Any) -> torch.Tensor:
        raise AssertionError("a label-only attack asked for a gradient")


@pytest.mark.parametrize("case", BLACK_BOX, ids=[_id(c) for c in BLACK_BOX])
def test_black_box_attacks_never_use_gradients(
    case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any
) -> None:
    entry, norm = case
    x, y = digits[0][:32], digits[1][:32]
    walled = _NoGradients(cnn)
    result = ATTACKS.create(entry.name, **entry.fast).run(walled, x, y, eps=EPS[norm], norm=norm)
    assert walled.asked_for_gradients == 0
    assert result.queries == walled.queries > len(x)
    assert float((result.predictions == y).float().mean()) < accuracy(cnn, x, y) - 0.2


@pytest.mark.parametrize("case", QUERY_BASED, ids=[_id(c) for c in QUERY_BASED])
def test_black_box_attacks_fool_a_scikit_learn_model(
    case: tuple[Entry, Norm], sk_target: SklearnTarget, digits: Any
) -> None:
    entry, norm = case
    x, y = digits[0][:32], digits[1][:32]
    clean = accuracy(sk_target, x, y)
    result = ATTACKS.create(entry.name, **entry.fast).run(sk_target, x, y, eps=EPS[norm], norm=norm)
    assert float((result.predictions == y).float().mean()) < clean - 0.3
    assert result.queries_per_sample is not None
    assert int(result.queries_per_sample.max()) <= entry.fast["max_queries"]


@pytest.mark.parametrize("norm", [Norm.LINF, Norm.L2])
def test_hopskipjump_reads_labels_only(norm: Norm, cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:32], digits[1][:32]
    labels = _LabelsOnly(cnn)
    assert labels.access is Access.LABELS
    attack = HopSkipJump(max_queries=300, init_evals=20)
    result = attack.run(labels, x, y, eps=EPS[norm], norm=norm, seed=1)
    assert labels.asked_for_scores == 0
    assert float((result.predictions == y).float().mean()) < accuracy(cnn, x, y) - 0.3
    # the same model answering scores gives the same attack: only the decisions were read
    with_scores = attack.run(cnn, x, y, eps=EPS[norm], norm=norm, seed=1)
    assert torch.equal(with_scores.x_adv, result.x_adv)
    assert torch.equal(with_scores.queries_per_sample, result.queries_per_sample)


def test_score_attacks_refuse_a_label_only_target(cnn: TorchTarget, digits: Any) -> None:
    labels = _LabelsOnly(cnn)
    for attack in (SquareAttack(), NES()):
        with pytest.raises(AccessError, match="score-based"):
            attack.run(labels, digits[0][:4], digits[1][:4], eps=0.1)
    assert labels.queries == 0


def test_hopskipjump_shrinks_the_perturbation(cnn: TorchTarget, digits: Any) -> None:
    """From its start (noise, bisected toward the input) the distance falls several fold.

    early_stop=False and an epsilon no distance reaches keep the attack shrinking to the end
    of its budget; steps=0 stops it right after the start, with the same seed.
    """
    x, y = digits[0][:10], digits[1][:10]
    big = 7.9  # the largest L2 distance in [0, 1]^64 is 8
    start = HopSkipJump(steps=0, early_stop=False).run(cnn, x, y, eps=big, norm="l2")
    end = HopSkipJump(max_queries=1000, early_stop=False).run(cnn, x, y, eps=big, norm="l2")
    assert bool(start.success.all()) and bool(end.success.all())
    assert end.queries_per_sample is not None and int(end.queries_per_sample.max()) <= 1000
    assert float(end.distances.median()) * 3.5 < float(start.distances.median())
    # every input came closer, none moved away
    assert bool((end.distances <= start.distances).all())


def test_hopskipjump_targeted(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:40], digits[1][:40]
    wanted = (y + 1) % 10
    threat = Threat(norm="l2", epsilons=(2.0,), targeted=True)
    result = HopSkipJump(max_queries=500, init_evals=20).run(cnn, x, wanted, threat)
    assert float(result.success.float().mean()) > 0.5
    assert bool((cnn.predict(result.x_adv)[result.success] == wanted[result.success]).all())


def test_hopskipjump_keeps_to_the_threats_query_cap(cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:20], digits[1][:20]
    threat = Threat(norm="l2", epsilons=(1.0,), queries_per_input=40)
    result = HopSkipJump(max_queries=1000).run(cnn, x, y, threat)
    assert result.queries_per_sample is not None
    assert int(result.queries_per_sample.max()) <= 40
    assert int(result.queries_per_sample.sum()) + len(x) == result.queries


@pytest.mark.parametrize("attack", [SquareAttack(max_queries=300), NES(max_queries=500)])
def test_score_attacks_lower_accuracy_in_l2(attack: Any, cnn: TorchTarget, digits: Any) -> None:
    x, y = digits[0][:50], digits[1][:50]
    result = attack.run(cnn, x, y, eps=1.0, norm="l2")
    assert float((result.predictions == y).float().mean()) < accuracy(cnn, x, y) - 0.5
    assert float(result.distances.max()) <= 1.0 + 1e-5


def test_nes_lowers_accuracy_in_linf(sk_target: SklearnTarget, digits: Any) -> None:
    x, y = digits[0][:50], digits[1][:50]
    result = NES(max_queries=500).run(sk_target, x, y, eps=0.15)
    assert float((result.predictions == y).float().mean()) < accuracy(sk_target, x, y) - 0.4
    assert result.queries_per_sample is not None
    assert int(result.queries_per_sample.sum()) + len(x) == result.queries


def test_square_l2_works_on_tabular_rows() -> None:
    import bastion

    target, data = bastion.load_demo("breast-cancer-mlp")
    x, y = torch.from_numpy(data.x_test[:40]), torch.from_numpy(data.y_test[:40])
    result = SquareAttack(max_queries=300).run(target, x, y, eps=1.0, norm="l2")
    assert result.x_adv.shape == x.shape
    assert float((result.predictions == y).float().mean()) < accuracy(target, x, y) - 0.3


# ---------------------------------------------------------------------- a label-only endpoint
class _LabelHandler(PredictHandler):
    def answer(self, x: np.ndarray) -> Any:
        return self.model.predict(x)


@pytest.fixture
def label_server(logreg: Any) -> Iterator[str]:
    """A JSON predict endpoint on loopback answering the logistic regression's labels only."""
    handler = type("Handler", (_LabelHandler,), {"model": logreg})
    with serve_http(handler) as url:
        yield url


def test_scan_of_a_label_only_endpoint(label_server: str, demo: Any) -> None:
    target = HttpTarget(label_server, num_classes=10, input_shape=(1, 8, 8), output_kind="labels")
    with target:
        result = scan(
            target,
            demo[1],
            Threat(epsilons=(0.1, 0.2)),
            samples=24,
            attack_params={"hopskipjump": {"max_queries": 200, "init_evals": 20}},
        )
    assert result.target["access"] == "label-only"
    assert result.attacks == ["hopskipjump"]
    assert result.complete
    assert result.sweep[-1].robust_accuracy < result.clean_accuracy - 0.3
    finding = next(f for f in result.findings if f.id == "evasion-label-only")
    assert finding.techniques[0] == "AML.T0043.001"


def test_cli_scan_of_a_label_only_endpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, label_server: str
) -> None:
    code, _, err = run(
        capsys,
        "scan",
        "--target",
        label_server,
        "--output-kind",
        "labels",
        "--data",
        "digits",
        "--samples",
        "16",
        "--eps",
        "0.2",
        "--max-queries",
        "200",
        "--set",
        "hopskipjump.init_evals=20",
        "--format",
        "json",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["target"]["access"] == "label-only"
    evasion = report["assessments"][0]
    assert evasion["setting"]["attacks"] == ["hopskipjump"]
    sweep = evasion["details"]["sweep"]
    assert sweep[-1]["robust_accuracy"] < evasion["details"]["clean_accuracy"]["value"] - 0.3


def test_square_halving_spends_its_queries_where_inputs_fall(cnn: TorchTarget, digits: Any) -> None:
    from bastion.attacks.evasion import SquareAttack

    x, y = digits[0][:80], digits[1][:80]
    full = SquareAttack(max_queries=400).run(cnn, x, y, eps=0.08)
    halved = SquareAttack(max_queries=400, halving=True).run(cnn, x, y, eps=0.08)
    assert halved.queries < 0.6 * full.queries
    # the inputs it stopped early were the hard ones: most successes are kept
    assert int(halved.success.sum()) >= 0.8 * int(full.success.sum())
    assert int(halved.success.sum()) > 0
