"""Shared fixtures: a demo CNN trained once per session, digits data, black-box targets."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import bastion
from bastion.core.targets import SklearnTarget, TorchTarget
from bastion.data import Dataset

from helpers import PredictHandler, serve_http

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Demo weights go to a fresh cache per test session, never the user's."""
    path = tmp_path_factory.mktemp("bastion-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("BASTION_CACHE_DIR", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def demo(_cache_dir: Path) -> tuple[TorchTarget, Dataset]:
    target, data = bastion.load_demo("digits-cnn", device="cpu")
    assert isinstance(target, TorchTarget)
    return target, data


@pytest.fixture
def cnn(demo: tuple[TorchTarget, Dataset]) -> TorchTarget:
    """A fresh target (own query counter) around the session's trained CNN."""
    target, data = demo
    return TorchTarget(
        target.model,
        num_classes=10,
        bounds=(0.0, 1.0),
        input_shape=data.input_shape,
        name="digits-cnn",
    )


@pytest.fixture(scope="session")
def digits(demo: tuple[TorchTarget, Dataset]) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 200 digits test images and labels."""
    _, data = demo
    return torch.from_numpy(data.x_test[:200]), torch.from_numpy(data.y_test[:200])


@pytest.fixture(scope="session")
def logreg(demo: tuple[TorchTarget, Dataset]) -> Any:
    from sklearn.linear_model import LogisticRegression

    _, data = demo
    model = LogisticRegression(max_iter=2000, C=10.0, random_state=0)
    model.fit(data.x_train.reshape(len(data.x_train), -1), data.y_train)
    return model


@pytest.fixture
def sk_target(logreg: Any) -> SklearnTarget:
    return SklearnTarget(logreg, num_classes=10, bounds=(0.0, 1.0), input_shape=(1, 8, 8))


@pytest.fixture
def predict_server(logreg: Any) -> Iterator[str]:
    """A JSON predict endpoint on loopback serving the logistic regression."""
    handler = type("Handler", (PredictHandler,), {"model": logreg, "requests": 0})
    with serve_http(handler) as url:
        yield url
