"""Model inversion: MI-Face reconstructs recognizable digits with exact and estimated
gradients within its query budget; attribute inference beats the prior's guess on a model
that uses the sensitive column and not on one that ignores it; the scan runs both."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch

from bastion.assess.inversion import class_match, inversion_assessment
from bastion.core.errors import AccessError, ConfigError, DataError
from bastion.core.registry import ATTACKS
from bastion.core.targets import TorchTarget
from bastion.data import Dataset
from bastion.defences import DefendedTarget, create_defence
from bastion.report.json import load_schema
from bastion.zoo.fit import FitSettings, build_model, fit_model

from helpers import run


def _scores_only(target: TorchTarget) -> DefendedTarget:
    """The CNN as a score-based black box: every probability, no gradients."""
    return DefendedTarget(target, [create_defence("topk:k=10")])


def _means(data: Dataset) -> np.ndarray:
    return np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(10)])


def test_mi_face_white_box_reconstructs_every_digit(cnn: TorchTarget, demo: Any) -> None:
    result = ATTACKS.create("mi-face").run(cnn)
    assert result.gradients == "exact"
    assert result.images.shape == (10, 1, 8, 8)
    assert float(result.images.min()) >= 0 and float(result.images.max()) <= 1
    assert (result.confidence > 0.9).all()
    nearest = class_match(result.images.numpy(), _means(demo[1])).argmax(axis=1)
    assert (nearest == np.arange(10)).mean() >= 0.8
    assert result.queries == cnn.queries > 0


def test_mi_face_score_based_estimates_gradients_within_its_budget(
    cnn: TorchTarget, demo: Any
) -> None:
    black = _scores_only(cnn)
    result = ATTACKS.create("mi-face", max_queries=20_000).run(black, [0, 3, 7], seed=1)
    assert result.gradients == "estimated"
    assert result.queries <= 20_000 and result.queries == black.queries
    nearest = class_match(result.images.numpy(), _means(demo[1])).argmax(axis=1)
    assert (nearest == np.array([0, 3, 7])).all()
    again = ATTACKS.create("mi-face", max_queries=20_000).run(_scores_only(cnn), [0, 3, 7], seed=1)
    assert torch.equal(again.images, result.images)


def test_mi_face_refuses_what_it_cannot_do(cnn: TorchTarget) -> None:
    labels = DefendedTarget(cnn, [create_defence("labels")])
    with pytest.raises(AccessError, match="score-based"):
        ATTACKS.create("mi-face").run(labels)
    with pytest.raises(ConfigError, match="white-box"):
        ATTACKS.create("mi-face", gradients="exact").run(_scores_only(cnn))
    with pytest.raises(DataError, match=r"0\.\.9"):
        ATTACKS.create("mi-face").run(cnn, [12])
    with pytest.raises(ConfigError, match="at least"):
        ATTACKS.create("mi-face", gradients="estimated", max_queries=50).run(cnn, [1])


def _table(uses: bool, seed: int = 0) -> tuple[TorchTarget, np.ndarray, np.ndarray]:
    """Rows of 6 features in [0, 1]; column 2 is a binary sensitive attribute. The label
    depends on it (``uses``) or not; an MLP overfitted on 300 rows."""
    rng = np.random.default_rng(seed)
    x = rng.random((600, 6)).astype(np.float32)
    x[:, 2] = (rng.random(600) < 0.3).astype(np.float32)
    score = x[:, 0] - x[:, 1] + (1.5 * x[:, 2] if uses else 0.0)
    y = (score > np.median(score)).astype(np.int64)
    settings = FitSettings(arch="mlp", hidden=64, epochs=60, lr=3e-3)
    model = build_model((6,), 2, settings, seed=seed)
    fit_model(model, torch.from_numpy(x[:300]), torch.from_numpy(y[:300]), settings, seed=seed)
    return TorchTarget(model, num_classes=2, input_shape=(6,), name="table"), x, y


@pytest.mark.parametrize("access", ["scores", "labels"])
def test_attribute_inference_beats_the_prior_on_a_model_that_uses_the_column(
    access: str,
) -> None:
    target, x, y = _table(uses=True)
    if access == "labels":
        target = DefendedTarget(target, [create_defence("labels")])  # type: ignore[assignment]
    attack = ATTACKS.create("attribute-inference", feature=2)
    xt, yt = torch.from_numpy(x[:300]), torch.from_numpy(y[:300])
    r = attack.run(target, xt, yt, x_aux=torch.from_numpy(x[300:]))
    assert list(r.values) == [0.0, 1.0] and r.baseline == 0
    assert r.queries == 300 * 2 == target.queries
    assert r.baseline_accuracy == pytest.approx(float((x[:300, 2] == 0).mean()))
    assert r.accuracy >= r.baseline_accuracy + 0.1


def test_attribute_inference_gains_nothing_on_a_model_that_ignores_the_column() -> None:
    target, x, y = _table(uses=False)
    r = ATTACKS.create("attribute-inference", feature=2).run(
        target,
        torch.from_numpy(x[:300]),
        torch.from_numpy(y[:300]),
        x_aux=torch.from_numpy(x[300:]),
    )
    assert r.accuracy <= r.baseline_accuracy + 0.05


def test_attribute_inference_bins_a_continuous_column_and_checks_its_input() -> None:
    target, x, y = _table(uses=True)
    xt, yt = torch.from_numpy(x[:50]), torch.from_numpy(y[:50])
    r = ATTACKS.create("attribute-inference", feature=0, bins=4).run(
        target, xt, yt, x_aux=torch.from_numpy(x[300:])
    )
    assert len(r.values) == 4 and len(r.edges) == 3 and r.queries == 200
    with pytest.raises(ConfigError, match="feature=N"):
        ATTACKS.create("attribute-inference").run(target, xt, yt, x_aux=xt)
    with pytest.raises(ConfigError, match=r"0\.\.5"):
        ATTACKS.create("attribute-inference", feature=9).run(target, xt, yt, x_aux=xt)
    with pytest.raises(DataError, match="x_aux"):
        ATTACKS.create("attribute-inference", feature=1).run(target, xt, yt)


def test_inversion_assessment_shows_reconstructions_beside_class_means(
    cnn: TorchTarget, demo: Any
) -> None:
    a = inversion_assessment(cnn, demo[1], attack_params={"mi-face": {"steps": 100}})
    assert a.family == "inversion"
    assert a.metric("recognizable").value >= 0.8
    (images,) = [art for art in a.artifacts if art.kind == "images"]
    assert [r["label"] for r in images.data["rows"]] == ["reconstruction", "class mean"]
    assert all(len(r["images"]) == 10 for r in images.data["rows"])
    assert a.findings[0].techniques[0] == "AML.T0024.001"


def test_inversion_assessment_on_a_table_compares_with_the_baseline() -> None:
    target, x, y = _table(uses=True)
    data = Dataset("table", "tabular", x[:300], y[:300], x[300:], y[300:], 2)
    with pytest.raises(ConfigError, match="feature"):
        inversion_assessment(target, data)
    a = inversion_assessment(target, data, attack_params={"attribute-inference": {"feature": 2}})
    att = a.metric("attribute_accuracy", records="members")
    base = a.metric("baseline_accuracy", records="members")
    assert att.value > base.value + 0.1
    assert a.findings[0].techniques[0] == "AML.T0024.001"
    assert a.metric("attribute_accuracy", records="non-members").count is not None


def test_scan_family_inversion(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(
        capsys, "scan", "--target", "digits-logreg", "--family", "inversion",
        "--set", "mi-face.steps=60", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    report = json.loads((tmp_path / "report.json").read_text())
    jsonschema.validate(report, load_schema())
    (inv,) = report["assessments"]
    assert inv["family"] == "inversion"
    assert {a["kind"] for a in inv["artifacts"]} == {"images", "table"}
    assert "AML.T0024.001" in report["findings"][0]["techniques"]
    assert "Model inversion" in out
    assert "data:image/png;base64," in (tmp_path / "report.html").read_text()
