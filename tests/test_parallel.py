"""Inner tasks through a replaceable map: shadow models and poisoning retrainings."""

from __future__ import annotations

import multiprocessing
import pickle
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import numpy as np
import pytest
import torch

import bastion
from bastion.assess.membership import membership_assessment
from bastion.assess.poisoning import assess_poisoning, recipe_fit
from bastion.attacks.poisoning import BadNets
from bastion.core.assessment import Assessment
from bastion.core.parallel import current_map, task_map, use_map
from bastion.core.targets import SklearnTarget, Target
from bastion.data import Dataset

FIT = recipe_fit("mlp", epochs=3)


class Counting:
    """A map that counts the tasks it is given before handing them to ``inner``."""

    def __init__(self, inner: Callable[..., Iterable[Any]] = map) -> None:
        self.inner = inner
        self.tasks = 0

    def __call__(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> Iterable[Any]:
        items = list(items)
        self.tasks += len(items)
        return self.inner(fn, items)


def _worker_start() -> None:
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def pool() -> Iterator[ProcessPoolExecutor]:
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context, initializer=_worker_start) as executor:
        yield executor


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One intra-op thread, as in the workers: a float sum's order depends on the count."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return bastion.load_dataset("digits")


def _square(x: int) -> int:
    return x * x


# ------------------------------------------------------------------------ the map itself
def test_task_map_uses_the_map_in_force() -> None:
    assert current_map() is map
    assert task_map(_square, range(4)) == [0, 1, 4, 9]
    outer, inner = Counting(), Counting()
    with use_map(outer):
        assert task_map(_square, [1, 2]) == [1, 4]
        with use_map(inner):
            assert task_map(_square, [3]) == [9]
        with use_map(None):
            assert task_map(_square, [5]) == [25]
        assert current_map() is outer
    assert (outer.tasks, inner.tasks) == (2, 1)
    assert current_map() is map


def test_task_map_in_processes_keeps_the_order(pool: ProcessPoolExecutor) -> None:
    with use_map(pool.map):
        assert task_map(_square, range(6)) == [0, 1, 4, 9, 16, 25]


# ------------------------------------------------------------------------ shadow models
def _membership(digits: Dataset) -> Assessment:
    from sklearn.linear_model import LogisticRegression

    n = 300
    x, y = digits.x_train[:n], digits.y_train[:n]
    model = LogisticRegression(max_iter=500, C=100.0, random_state=0)
    model.fit(x.reshape(n, -1), y)
    target = SklearnTarget(model, num_classes=10, bounds=(0.0, 1.0), input_shape=(1, 8, 8))
    return membership_assessment(
        target,
        (x, y),
        (digits.x_test, digits.y_test),
        attacks=["lira", "shadow"],
        attack_params={"lira": {"shadows": 3, "n_jobs": 1}, "shadow": {"shadows": 2, "n_jobs": 1}},
        max_candidates=100,
    )


def test_each_shadow_is_a_task(digits: Dataset, pool: ProcessPoolExecutor) -> None:
    here, there = Counting(), Counting(pool.map)
    with use_map(here):
        sequential = _membership(digits)
    with use_map(there):
        parallel = _membership(digits)
    # three LiRA shadows, two for the shadow-models attack
    assert here.tasks == there.tasks == 5
    assert parallel.metrics == sequential.metrics
    assert next(m.value for m in sequential.metrics if m.name == "auc") > 0.5


# ------------------------------------------------------------------------ poisoning curve
def _poisoning(data: Dataset, fit: Callable[[Dataset, int], Target], notes: list[str]) -> Any:
    attack = BadNets(rate=0.05, target_class=0)
    budget = attack.budget(data)
    return assess_poisoning(attack, data, fit, counts=[5, budget, 30], progress=notes.append)


def test_each_retraining_is_a_task(
    digits: Dataset, pool: ProcessPoolExecutor, one_thread: None
) -> None:
    here, there = Counting(), Counting(pool.map)
    notes_here: list[str] = []
    notes_there: list[str] = []
    with use_map(here):
        sequential = _poisoning(digits, FIT, notes_here)
    with use_map(there):
        parallel = _poisoning(digits, FIT, notes_there)
    # two retrainings: the budget's point is the poisoned model already trained
    assert here.tasks == there.tasks == 2
    a, b = sequential.assessment, parallel.assessment
    assert [c["count"] for c in a.details["curve"]] == [5, 72, 30]
    assert b.details["curve"] == a.details["curve"]
    assert b.metrics == a.metrics
    assert [f.title for f in b.findings] == [f.title for f in a.findings]
    assert notes_here == notes_there
    assert len([n for n in notes_here if n.startswith("susceptibility curve")]) == 3


def test_the_curve_notes_each_retraining_before_it_starts(digits: Dataset) -> None:
    events: list[str] = []

    def fit(data: Dataset, seed: int) -> Target:
        events.append("fit")
        return FIT(data, seed)

    run = _poisoning(digits, fit, events)
    assert events == [
        "training on clean data",
        "fit",
        "training on 72 poisoned samples",
        "fit",
        "susceptibility curve: 5 poisoned samples (1/3)",
        "fit",
        "susceptibility curve: 72 poisoned samples (2/3)",
        "susceptibility curve: 30 poisoned samples (3/3)",
        "fit",
    ]
    asr = [c["asr"] for c in run.assessment.details["curve"]]
    assert np.isfinite(asr).all()


def test_a_recipe_fit_and_its_model_pickle(digits: Dataset) -> None:
    again = pickle.loads(pickle.dumps(FIT))
    assert again == FIT
    model = FIT(digits, 0)
    copy = pickle.loads(pickle.dumps(model))
    x = torch.from_numpy(digits.x_test[:20])
    assert torch.equal(copy.predict(x), model.predict(x))
    assert copy.queries == model.queries
