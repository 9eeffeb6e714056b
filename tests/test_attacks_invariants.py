"""Invariants every registered attack keeps, parametrized over the registry itself."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import bastion
from bastion.attacks._ops import distances
from bastion.core.errors import AccessError, ConfigError, QueryBudgetExceeded
from bastion.core.plugins import load_plugins
from bastion.core.registry import ATTACKS, Entry
from bastion.core.targets import SklearnTarget, TorchTarget
from bastion.core.threat import Access, Norm

from helpers import accuracy

# every registered attack, bastion's own and any plugin's, each with its entry's fast settings
load_plugins()
CASES = [(e, n) for e in ATTACKS for n in e.norms]
# the perturbation attacks (evasion); extraction, inference and recon have their own tests
PERTURBATION = [e for e in ATTACKS if e.norms]
EPS = {Norm.LINF: 0.2, Norm.L2: 1.5, Norm.L1: 6.0, Norm.L0: 6}


def _id(case: tuple[Entry, Norm]) -> str:
    return f"{case[0].name}-{case[1].value}"


def test_fast_settings_are_cheaper_than_the_scan_defaults() -> None:
    for entry in ATTACKS:
        for key, value in entry.fast.items():
            default = entry.defaults.get(key, entry.parameters()[key])
            if isinstance(value, (int, float)) and isinstance(default, (int, float)):
                assert value <= default, (entry.name, key)


def _make(entry: Entry) -> bastion.Attack:
    return ATTACKS.create(entry.name, **entry.fast)  # type: ignore[no-any-return]


@pytest.fixture(params=CASES, ids=[_id(c) for c in CASES])
def case(request: pytest.FixtureRequest) -> tuple[Entry, Norm]:
    return request.param  # type: ignore[no-any-return]


def _shifted(cnn: TorchTarget) -> TorchTarget:
    """The same CNN seen through inputs in [-1, 3]: nothing may assume [0, 1]."""
    return TorchTarget(
        cnn.model,
        num_classes=10,
        bounds=(-1.0, 3.0),
        input_shape=(1, 8, 8),
        preprocess=lambda x: (x + 1) / 4,
        name="shifted",
    )


@pytest.mark.parametrize("shift", [False, True], ids=["unit-bounds", "other-bounds"])
def test_within_epsilon_and_bounds(
    case: tuple[Entry, Norm], shift: bool, cnn: TorchTarget, digits: Any
) -> None:
    entry, norm = case
    x, y = digits[0][:32], digits[1][:32]
    target = cnn
    eps = EPS[norm]
    if shift:
        target = _shifted(cnn)
        x = x * 4 - 1
        eps = eps * 4
    result = _make(entry).run(target, x, y, eps=eps, norm=norm)
    assert result.x_adv.shape == x.shape
    assert float(result.x_adv.min()) >= target.bounds[0]
    assert float(result.x_adv.max()) <= target.bounds[1]
    assert bool((distances(result.x_adv - x, norm) <= eps * (1 + 1e-5) + 1e-6).all())
    assert bool((result.distances <= eps * (1 + 1e-5) + 1e-6).all())
    # the attack works: accuracy falls
    clean = accuracy(target, x, y)
    assert float((result.predictions == y).float().mean()) < clean - 0.2


def test_dtype_and_device_kept(case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any) -> None:
    entry, norm = case
    x, y = digits[0][:16], digits[1][:16]
    import copy

    double = TorchTarget(copy.deepcopy(cnn.model).double(), num_classes=10, input_shape=(1, 8, 8))
    for target, xs in ((cnn, x), (double, x.double())):
        result = _make(entry).run(target, xs, y, eps=EPS[norm], norm=norm)
        assert result.x_adv.dtype == xs.dtype
        assert result.x_adv.device == xs.device
        assert result.success.shape == (16,)
        assert result.success.dtype == torch.bool


def test_model_mode_restored(case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any) -> None:
    entry, norm = case
    seen: list[bool] = []
    hook = cnn.model.register_forward_pre_hook(lambda m, _: seen.append(m.training))
    try:
        cnn.model.train()
        _make(entry).run(cnn, digits[0][:8], digits[1][:8], eps=EPS[norm], norm=norm)
        assert cnn.model.training, "train mode was not restored"
        cnn.model.eval()
        _make(entry).run(cnn, digits[0][:8], digits[1][:8], eps=EPS[norm], norm=norm)
        assert not cnn.model.training
    finally:
        hook.remove()
        cnn.model.eval()
    assert seen and not any(seen), "the model ran in train mode during an attack"


def test_queries_counted_exactly(case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any) -> None:
    entry, norm = case
    x, y = digits[0][:24], digits[1][:24]
    calls = []
    hook = cnn.model.register_forward_hook(lambda m, inp, out: calls.append(inp[0].shape[0]))
    try:
        before = cnn.queries
        result = _make(entry).run(cnn, x, y, eps=EPS[norm], norm=norm)
    finally:
        hook.remove()
    assert result.queries == cnn.queries - before == sum(calls)
    if result.queries_per_sample is not None:
        # per-sample counts plus the final check of every input
        assert int(result.queries_per_sample.sum()) + len(x) == result.queries


def test_budget_respected(case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any) -> None:
    entry, norm = case
    x, y = digits[0][:16], digits[1][:16]
    limited = TorchTarget(cnn.model, num_classes=10, input_shape=(1, 8, 8), query_budget=20)
    with pytest.raises(QueryBudgetExceeded, match="budget"):
        _make(entry).run(limited, x, y, eps=EPS[norm], norm=norm)
    assert limited.queries <= 20


def test_same_seed_same_result(case: tuple[Entry, Norm], cnn: TorchTarget, digits: Any) -> None:
    entry, norm = case
    x, y = digits[0][:16], digits[1][:16]
    first = _make(entry).run(cnn, x, y, eps=EPS[norm], norm=norm, seed=3)
    second = _make(entry).run(cnn, x, y, eps=EPS[norm], norm=norm, seed=3)
    assert torch.equal(first.x_adv, second.x_adv)


def test_white_box_attacks_refuse_black_boxes(sk_target: SklearnTarget, digits: Any) -> None:
    white = [e for e in PERTURBATION if e.access is Access.WHITE_BOX]
    assert white
    for entry in white:
        norm = entry.norms[0]  # an epsilon that norm accepts (an L0 one counts values)
        with pytest.raises(AccessError, match="white-box"):
            _make(entry).run(sk_target, digits[0][:4], digits[1][:4], eps=EPS[norm], norm=norm)
    assert sk_target.queries == 0


def test_unsupported_norm_is_refused(cnn: TorchTarget, digits: Any) -> None:
    for entry in PERTURBATION:
        missing = [n for n in Norm if n not in entry.norms]
        for norm in missing:
            with pytest.raises(ConfigError, match="supports"):
                _make(entry).run(cnn, digits[0][:4], digits[1][:4], eps=EPS[norm], norm=norm)


def test_parameters_are_stored_unchanged() -> None:
    for entry in ATTACKS:
        attack = _make(entry)
        params = attack.get_params()
        for key, value in entry.fast.items():
            assert params[key] == value
        assert type(attack).__name__ in repr(attack)
