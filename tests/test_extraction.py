"""Extraction and reconnaissance: each attack beats its trivial baseline, spends at most its
budget, and the label-only ones work against targets that never give scores."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch

from bastion.assess.extraction import extraction_assessment, measure_transfer
from bastion.core.errors import AccessError, QueryBudgetExceeded
from bastion.core.registry import ATTACKS
from bastion.core.targets import SklearnTarget
from bastion.data import Dataset
from bastion.defences import DefendedTarget, create_defence


def _target(logreg: Any, **kw: Any) -> SklearnTarget:
    return SklearnTarget(logreg, num_classes=10, bounds=(0.0, 1.0), input_shape=(1, 8, 8), **kw)


@pytest.fixture(scope="module")
def split(demo: tuple[Any, Dataset]) -> dict[str, torch.Tensor]:
    _, data = demo
    return {
        "pool": torch.from_numpy(data.x_train[:600]),
        "x": torch.from_numpy(data.x_test[:200]),
        "y": torch.from_numpy(data.y_test[:200]),
    }


def _majority_agreement(target: SklearnTarget, x: torch.Tensor) -> float:
    """What a copy answering one constant class agrees with the victim at best: the baseline."""
    labels = torch.from_numpy(target.estimator.predict(x.reshape(len(x), -1).numpy()))
    return float(torch.bincount(labels).max()) / len(labels)


def test_equation_solving_recovers_a_logistic_regression(logreg: Any, split: Any) -> None:
    target = _target(logreg)
    result = ATTACKS.create("equation-solving").run(target, x_eval=split["x"], y_eval=split["y"])
    d, k = 64, 10
    assert result.queries <= (d + 1) * k
    assert result.queries == d + 1
    assert result.fidelity is not None and result.fidelity >= 0.999
    # the evaluation's queries are counted apart from the attack's, and both on the target
    assert target.queries == result.queries + result.eval_queries == result.queries + 200


def test_rounding_the_scores_breaks_equation_solving(logreg: Any, split: Any) -> None:
    plain = ATTACKS.create("equation-solving").run(_target(logreg), x_eval=split["x"])
    rounded = DefendedTarget(_target(logreg), [create_defence("round:decimals=2")])
    hardened = ATTACKS.create("equation-solving").run(rounded, x_eval=split["x"])
    assert plain.fidelity is not None and hardened.fidelity is not None
    assert hardened.fidelity < plain.fidelity - 0.3


def test_equation_solving_needs_scores(logreg: Any, split: Any) -> None:
    with pytest.raises(AccessError, match="score-based"):
        ATTACKS.create("equation-solving").run(_target(logreg, output_kind="labels"))


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("knockoff", {"max_queries": 400, "rounds": 3, "epochs": 15, "soft_labels": False}),
        ("jacobian", {"max_queries": 400, "seed_size": 50, "epochs": 15}),
    ],
)
def test_label_only_extraction_beats_the_baseline_without_scores(
    logreg: Any, split: Any, name: str, params: dict[str, Any]
) -> None:
    # the target answers labels only: an attack that read scores would fail here
    target = _target(logreg, output_kind="labels")
    result = ATTACKS.create(name, **params).run(
        target, split["pool"], x_eval=split["x"], y_eval=split["y"]
    )
    baseline = _majority_agreement(_target(logreg), split["x"])
    assert result.fidelity is not None and result.fidelity > baseline + 0.4
    assert result.queries <= 400
    assert [p.queries for p in result.curve] == sorted(p.queries for p in result.curve)


def test_knockoff_learns_from_scores_and_the_adaptive_sampler(logreg: Any, split: Any) -> None:
    result = ATTACKS.create("knockoff", max_queries=300, rounds=3, epochs=15).run(
        _target(logreg), split["pool"], x_eval=split["x"], y_eval=split["y"], seed=1
    )
    assert result.fidelity is not None and result.fidelity > 0.8
    assert result.accuracy is not None and result.accuracy > 0.7
    assert len(result.curve) == 3 and result.curve[-1].queries == 300


def test_knockoff_from_synthetic_queries_needs_no_data(logreg: Any, split: Any) -> None:
    target = _target(logreg)
    result = ATTACKS.create("knockoff", max_queries=200, queries="uniform", epochs=5).run(
        target, None, x_eval=split["x"]
    )
    assert result.queries == 200
    assert result.fidelity is not None


def test_extraction_respects_the_target_budget(logreg: Any, split: Any) -> None:
    target = _target(logreg, query_budget=450)
    result = ATTACKS.create("knockoff", max_queries=2000, rounds=2, epochs=5).run(
        target, split["pool"], x_eval=split["x"]
    )
    assert target.queries <= 450
    assert result.queries == 450 - 200
    with pytest.raises(QueryBudgetExceeded):
        ATTACKS.create("knockoff", max_queries=10).run(target, split["pool"])


def test_same_seed_same_copy(logreg: Any, split: Any) -> None:
    runs = [
        ATTACKS.create("knockoff", max_queries=120, rounds=2, epochs=3).run(
            _target(logreg), split["pool"], x_eval=split["x"], seed=4
        )
        for _ in range(2)
    ]
    assert runs[0].fidelity == runs[1].fidelity
    for a, b in zip(runs[0].copy.parameters(), runs[1].copy.parameters(), strict=True):
        assert torch.equal(a, b)


def test_adversarial_inputs_transfer_from_the_copy(cnn: Any, split: Any) -> None:
    victim = DefendedTarget(cnn, [create_defence("labels")])
    stolen = ATTACKS.create("knockoff", max_queries=600, rounds=3, epochs=20, soft_labels=False)
    result = stolen.run(victim, split["pool"], x_eval=split["x"], y_eval=split["y"])
    fooled, attacked = measure_transfer(
        result.as_target(), victim, split["x"][:100], split["y"][:100], eps=0.3, steps=10
    )
    assert attacked > 80
    # random sign noise of the same size fools this CNN far less often (see test_evasion)
    assert fooled / attacked > 0.5


@pytest.mark.parametrize(
    ("defences", "kind", "decimals", "top_k"),
    [
        ([], "probabilities", None, None),
        (["round:decimals=2"], "probabilities", 2, None),
        (["topk:k=3"], "top-k", None, 3),
        (["labels"], "labels", None, None),
    ],
)
def test_recon_reads_what_the_endpoint_returns(
    logreg: Any, split: Any, defences: list[str], kind: str, decimals: Any, top_k: Any
) -> None:
    target = DefendedTarget(_target(logreg), [create_defence(d) for d in defences])
    result = ATTACKS.create("recon", max_queries=32).run(target, split["x"][:4])
    assert (result.output_kind, result.decimals, result.top_k) == (kind, decimals, top_k)
    assert result.deterministic and result.sensitive
    assert result.queries <= 32 and target.queries == result.queries
    assert result.input_shape == (1, 8, 8)
    assert result.accepts_out_of_range  # the sklearn target does not validate its bounds
    assert not result.throttled


def test_recon_sees_randomized_answers(logreg: Any, split: Any) -> None:
    target = DefendedTarget(_target(logreg), [create_defence("noise:scale=0.05")])
    assert not ATTACKS.create("recon").run(target, split["x"][:4]).deterministic


def test_extraction_assessment_reports_fidelity_and_transfer(
    logreg: Any, demo: tuple[Any, Dataset], tmp_path: Any
) -> None:
    from bastion.core.assessment import Report
    from bastion.report import write_report

    _, data = demo
    target = _target(logreg, query_budget=3000)
    assessment = extraction_assessment(
        target, data, max_queries=500, attack_params={"knockoff": {"epochs": 10}}
    )
    assert target.queries <= 3000
    assert {m.at.get("attack") for m in assessment.metrics if m.name == "fidelity"} == {
        "equation-solving",
        "knockoff",
    }
    eq = assessment.metric("fidelity", attack="equation-solving")
    assert eq.value >= 0.999 and eq.ci95 is not None and eq.ci95[0] > 0.98
    assert assessment.metric("transfer_rate").count is not None
    (finding,) = assessment.findings
    assert finding.techniques[0] == "AML.T0024.002"
    assert finding.severity.value == "high"
    curve = next(a for a in assessment.artifacts if a.kind == "curve")
    assert curve.data["log_x"] and all(s["x"] for s in curve.data["series"])
    written = write_report(Report([assessment]), tmp_path, ["html", "json", "md", "sarif"])
    html = (tmp_path / "report.html").read_text()
    assert "Model extraction" in html and "AML.T0024.002" in html and len(written) == 4
    assert math.isfinite(assessment.seconds)
