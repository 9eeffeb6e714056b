"""Black-box targets (scikit-learn, ONNX, HTTP) attacked through the same interface."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bastion import SquareAttack, Threat
from bastion.assess import default_attacks, scan
from bastion.core.errors import AccessError, QueryBudgetExceeded, TargetError
from bastion.core.targets import HttpTarget, OnnxTarget, SklearnTarget
from bastion.core.threat import Access, Norm

from helpers import accuracy


def _square_checks(target: Any, x: torch.Tensor, y: torch.Tensor) -> None:
    clean = accuracy(target, x, y)
    before = target.queries
    result = SquareAttack(max_queries=200).run(target, x, y, eps=0.2)
    robust = float((result.predictions == y).float().mean())
    assert robust < clean - 0.5
    assert result.queries == target.queries - before
    assert result.queries_per_sample is not None
    assert int(result.queries_per_sample.sum()) + len(x) == result.queries
    assert int(result.queries_per_sample.max()) <= 200


def test_square_against_sklearn(sk_target: SklearnTarget, digits: Any) -> None:
    x, y = digits[0][:60], digits[1][:60]
    _square_checks(sk_target, x, y)


def test_square_against_http_endpoint(predict_server: str, digits: Any) -> None:
    x, y = digits[0][:40], digits[1][:40]
    target = HttpTarget(predict_server, num_classes=10, input_shape=(1, 8, 8))
    _square_checks(target, x, y)


def test_square_against_onnx(logreg: Any, tmp_path: Path, digits: Any) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(logreg.coef_.T.astype(np.float32), "W")
    b = numpy_helper.from_array(logreg.intercept_.astype(np.float32), "B")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["z"]),
            helper.make_node("Add", ["z", "B"], ["logits"]),
        ],
        "logreg",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 10])],
        initializer=[w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / "logreg.onnx"
    onnx.save(model, str(path))
    target = OnnxTarget(path, num_classes=10, input_shape=(1, 8, 8))
    x, y = digits[0][:60], digits[1][:60]
    # the ONNX logits and scikit-learn agree on the labels
    assert torch.equal(
        target.predict(x), torch.from_numpy(logreg.predict(x.reshape(60, -1).numpy()))
    )
    _square_checks(target, x, y)


def test_budget_stops_black_box_attack(predict_server: str, digits: Any) -> None:
    target = HttpTarget(predict_server, num_classes=10, input_shape=(1, 8, 8), query_budget=500)
    with pytest.raises(QueryBudgetExceeded, match="500"):
        SquareAttack(max_queries=1000).run(target, digits[0][:40], digits[1][:40], eps=0.05)
    assert target.queries <= 500


def test_threat_query_budget_caps_queries_per_input(sk_target: SklearnTarget, digits: Any) -> None:
    x, y = digits[0][:30], digits[1][:30]
    threat = Threat(epsilons=(0.03,), queries_per_input=25)
    result = SquareAttack(max_queries=1000).run(sk_target, x, y, threat)
    assert result.queries_per_sample is not None
    assert int(result.queries_per_sample.max()) <= 25


def test_black_box_refuses_gradients(
    sk_target: SklearnTarget, predict_server: str, digits: Any
) -> None:
    http = HttpTarget(predict_server, num_classes=10)
    for target in (sk_target, http):
        with pytest.raises(AccessError, match="no gradients"):
            target.gradient(digits[0][:2], lambda s: s.sum())


def test_no_white_box_attack_is_chosen_for_black_boxes(sk_target: SklearnTarget, demo: Any) -> None:
    chosen = default_attacks(sk_target, Norm.LINF)
    assert chosen
    assert all(e.access is not Access.WHITE_BOX for e in chosen)
    _, data = demo
    result = scan(
        sk_target,
        data,
        Threat(epsilons=(0.1, 0.2)),
        samples=30,
        attack_params={"square": {"max_queries": 100}},
    )
    assert result.attacks == [e.name for e in chosen]
    assert all(f.techniques[0] == "AML.T0043.001" for f in result.findings)


def test_label_only_target_gets_no_score_attack(logreg: Any) -> None:
    target = SklearnTarget(logreg, output_kind="labels")
    assert target.access is Access.LABELS
    assert not [e for e in default_attacks(target, Norm.LINF) if e.name == "square"]


def test_unreachable_url_is_a_clear_error() -> None:
    target = HttpTarget("http://127.0.0.1:9/predict", num_classes=10, timeout=2)
    with pytest.raises(TargetError, match="cannot reach"):
        target.predict(torch.zeros(2, 64))


def test_http_target_name_hides_credentials() -> None:
    target = HttpTarget("https://user:secret@example.invalid/predict?key=abc", num_classes=2)
    assert "secret" not in target.name
    assert "abc" not in target.name
    assert "secret" not in repr(target.describe())
