"""Monitoring: input drift (per-feature KS and MMD), prediction shift, and accuracy from
delayed labels sent to /feedback by request id; all in /metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from bastion.data import Dataset
from bastion.serve import BackgroundServer

from .conftest import Client, MakeGateway

POLICY = {"limits": {"rate": None, "budget": None}, "monitoring": {"cache_seconds": 0}}


@pytest.fixture
def serve_ref(
    make_gateway: MakeGateway, demo: tuple[Any, Dataset]
) -> Iterator[Callable[[], Client]]:
    _, data = demo
    rng = np.random.default_rng(0)
    reference = data.x_train[rng.choice(len(data.x_train), 500, replace=False)]
    servers: list[BackgroundServer] = []

    def start() -> Client:
        server = BackgroundServer(make_gateway(POLICY, reference=reference)).start()
        servers.append(server)
        return Client(server)

    yield start
    for server in servers:
        server.stop()


def _metric(text: str, name: str) -> float:
    (line,) = [ln for ln in text.splitlines() if ln.startswith(name + " ")]
    return float(line.split()[1])


def test_drift_is_quiet_on_test_data_and_loud_on_shifted_inputs(
    serve_ref: Callable[[], Client], demo: tuple[Any, Dataset]
) -> None:
    _, data = demo
    calm, shifted = serve_ref(), serve_ref()
    assert calm.gateway.drift().drifted_features is None  # nothing to compare yet
    # the shifted stream: darker images, of two classes only
    few = data.x_test[np.isin(data.y_test, [0, 1])]
    darker = (np.resize(few, (200, *few.shape[1:])) * 0.6).astype(np.float32)
    for i in range(0, 200, 50):
        assert calm.predict(data.x_test[i : i + 50].tolist()).status_code == 200
        assert shifted.predict(darker[i : i + 50].tolist()).status_code == 200
    quiet = calm.gateway.drift()
    assert quiet.window == 200 and quiet.reference == 500
    assert quiet.drifted_features == 0 and quiet.mmd_pvalue is not None
    assert quiet.mmd_pvalue > 0.05 and not quiet.input_drift
    assert not quiet.prediction_shift
    loud = shifted.gateway.drift()
    assert loud.drifted_features is not None and loud.drifted_features >= 10
    assert loud.mmd_pvalue is not None and loud.mmd_pvalue < 0.01 and loud.input_drift
    assert loud.mmd is not None and quiet.mmd is not None and loud.mmd > 5 * quiet.mmd
    assert loud.prediction_shift
    text = shifted.http.get("/metrics", headers={"Authorization": f"Bearer {shifted.admin}"}).text
    assert _metric(text, "bastion_drift_features") == loud.drifted_features
    assert _metric(text, "bastion_monitor_window_inputs") == 200
    assert _metric(text, "bastion_drift_mmd_pvalue") < 0.01


def test_feedback_by_request_id_gives_accuracy(
    serve_ref: Callable[[], Client], demo: tuple[Any, Dataset]
) -> None:
    _, data = demo
    c = serve_ref()
    _, labeller = c.gateway.keys.create("labeller", ["feedback"])
    x, y = data.x_test[:40], data.y_test[:40]
    answers = [c.predict(x[i : i + 10].tolist()) for i in range(0, 40, 10)]
    ids = [a.headers["x-request-id"] for a in answers]
    predicted = np.concatenate([np.array(a.json()["outputs"]).argmax(1) for a in answers])
    auth = {"Authorization": f"Bearer {labeller}"}
    items = [
        {"request_id": r, "labels": y[i * 10 : i * 10 + 10].tolist()} for i, r in enumerate(ids)
    ]

    r = c.http.post("/feedback", json={"feedback": items[:3]}, headers=auth)
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3
    r = c.http.post(
        "/feedback",
        json={
            "feedback": [
                items[0],  # again
                {"request_id": "f" * 32, "labels": [1]},  # never answered
                {"request_id": ids[3], "labels": [1, 2]},  # 10 inputs, 2 labels
                items[3],
            ]
        },
        headers=auth,
    )
    assert [x["status"] for x in r.json()["results"]] == [
        "duplicate",
        "unknown",
        "mismatch",
        "accepted",
    ]
    report = c.gateway.drift()
    assert report.labelled == 40
    assert report.accuracy == pytest.approx(float((predicted == y).mean()))
    text = c.http.get("/metrics", headers={"Authorization": f"Bearer {c.admin}"}).text
    assert _metric(text, "bastion_feedback_accuracy") == pytest.approx(report.accuracy)
    assert c.gateway.audit.count(endpoint="feedback") == 2


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"nope", 400),
        (b'{"labels": []}', 422),
        (b'{"feedback": []}', 422),
        (b'{"feedback": [{"request_id": "x", "labels": [1.5]}]}', 422),
        (b'{"feedback": [{"request_id": "x", "labels": [true]}]}', 422),
        (b'{"feedback": [{"request_id": 3, "labels": [1]}]}', 422),
    ],
)
def test_feedback_refuses_bad_bodies_and_keys_without_the_scope(
    serve_ref: Callable[[], Client], body: bytes, status: int
) -> None:
    c = serve_ref()
    _, labeller = c.gateway.keys.create("labeller", ["feedback"])
    r = c.http.post("/feedback", content=body, headers={"Authorization": f"Bearer {labeller}"})
    assert r.status_code == status and "detail" in r.json()
    ok = b'{"feedback": [{"request_id": "x", "labels": [1]}]}'
    assert c.http.post("/feedback", content=ok).status_code == 401
    predict_only = {"Authorization": f"Bearer {c.key}"}
    assert c.http.post("/feedback", content=ok, headers=predict_only).status_code == 403
