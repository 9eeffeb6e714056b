"""The robustness evaluation: presets, the chained protocol, and its adaptive answers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import bastion
from bastion import Threat, TorchTarget
from bastion.assess import scan
from bastion.assess.evaluate import PRESETS, preset_attacks
from bastion.core.errors import ConfigError
from bastion.core.registry import ATTACKS
from bastion.core.targets import SklearnTarget
from bastion.core.threat import Access
from bastion.data import Dataset

from helpers import run


class _Rounded(nn.Module):
    """A model that rounds its input to a few levels: its gradients are zero everywhere."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(torch.round(x * 4) / 4)  # type: ignore[no-any-return]


class _Noisy(nn.Module):
    """A randomized defence: Gaussian noise on the input at every forward pass."""

    def __init__(self, model: nn.Module, sigma: float) -> None:
        super().__init__()
        self.model = model
        self.sigma = sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x + self.sigma * torch.randn_like(x))  # type: ignore[no-any-return]


def _wrap(module: nn.Module) -> TorchTarget:
    return TorchTarget(module, num_classes=10, input_shape=(1, 8, 8), name="wrapped")


def test_masked_gradients_never_pass_for_robustness(demo: tuple[TorchTarget, Dataset]) -> None:
    cnn, data = demo
    masked = _wrap(_Rounded(cnn.model))
    threat = Threat(norm="linf", epsilons=(0.2,))
    # the user asks for a white-box attack only: alone, it finds nothing to follow
    alone = scan(masked, data, threat, samples=60, attacks=["apgd"])
    assert alone.sweep[0].robust_accuracy > 0.6 * alone.clean_accuracy
    # the evaluation sees the zero gradients, and brings in attacks that do not need them
    result = bastion.evaluate(masked, data, threat, samples=60, attacks=["apgd"])
    assert any("masked gradients" in a for a in result.adaptations)
    added = [a for a in result.attacks if ATTACKS.get(a).access is not Access.WHITE_BOX]
    assert added, result.attacks
    assert result.sweep[0].robust_accuracy < 0.5 * alone.sweep[0].robust_accuracy
    # the adaptation is in the report's setting
    setting = result.to_assessment().setting
    assert any("masked" in a for a in setting["adaptive evaluation"])


def test_randomized_defence_loses_its_false_robustness_under_eot(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    cnn, data = demo
    noisy = _wrap(_Noisy(cnn.model, 0.3))
    threat = Threat(norm="linf", epsilons=(0.1,))
    settings = {"apgd": {"steps": 50}}
    torch.manual_seed(0)
    plain = scan(noisy, data, threat, samples=200, attacks=["apgd"], attack_params=settings)
    torch.manual_seed(0)
    result = bastion.evaluate(
        noisy, data, threat, samples=200, attacks=["apgd"], attack_params=settings
    )
    assert result.attack_params["apgd"]["eot_samples"] > 1
    assert any("expectation over transformation" in a for a in result.adaptations)
    assert result.sweep[0].robust_accuracy <= plain.sweep[0].robust_accuracy - 0.05
    # the plain scan's figure is marked unreliable; the answered one is not
    assert all(f.unreliable for f in plain.findings)
    assert not any(f.unreliable for f in result.findings)


def test_the_chain_carries_what_fell_at_a_smaller_epsilon(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    cnn, data = demo
    threat = Threat(norm="linf", epsilons=(0.05, 0.1, 0.2))
    result = bastion.evaluate(cnn, data, threat, preset="quick", samples=80)
    robust = [p.robust for p in result.sweep]
    assert robust == sorted(robust, reverse=True)
    assert robust[-1] < robust[0]
    # at each larger epsilon, the first attack sees only what the smaller one left standing
    for before, after in zip(result.sweep, result.sweep[1:], strict=False):
        assert after.attacks[0].attacked == before.robust
    assert result.protocol.startswith("the attacks run in one chain")
    assert result.to_assessment().setting["preset"] == "quick"


def test_the_standard_preset_is_at_least_as_strong_as_its_first_attack(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    cnn, data = demo
    threat = Threat(norm="linf", epsilons=(0.1,))
    first = scan(cnn, data, threat, samples=60, attacks=["apgd"], attack_params={"apgd": {}})
    result = bastion.evaluate(
        cnn,
        data,
        threat,
        samples=60,
        attack_params={"apgd-t": {"target_classes": 2}, "square": {"max_queries": 100}},
    )
    assert result.attacks == ["apgd", "apgd-t", "square"]
    assert result.sweep[0].robust <= first.sweep[0].robust
    breakdown = result.sweep[0].attacks
    assert [s.attack for s in breakdown] == ["apgd", "apgd-t", "square"]
    assert breakdown[1].attacked == breakdown[0].attacked - breakdown[0].fooled


def test_presets_follow_the_access_the_target_gives(
    cnn: TorchTarget, sk_target: SklearnTarget
) -> None:
    threat = Threat(norm="linf", epsilons=(0.1,))
    for name in PRESETS:
        white = [a for a, _ in preset_attacks(name, cnn, threat)]
        assert white and ATTACKS.get(white[0]).access is Access.WHITE_BOX
        black = [a for a, _ in preset_attacks(name, sk_target, threat)]
        assert black and all(ATTACKS.get(a).access is not Access.WHITE_BOX for a in black)
    # the adversary's knowledge limits the chain too
    limited = Threat(norm="linf", epsilons=(0.1,), knowledge=Access.SCORES)
    assert all(
        ATTACKS.get(a).access is not Access.WHITE_BOX
        for a, _ in preset_attacks("standard", cnn, limited)
    )
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_attacks("exhaustive", cnn, threat)


def test_settings_for_attacks_the_evaluation_does_not_run_are_refused(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    cnn, data = demo
    with pytest.raises(ConfigError, match="does not run"):
        bastion.evaluate(
            cnn, data, Threat(epsilons=(0.1,)), preset="quick", attack_params={"fgsm": {}}
        )


def test_cli_preset_writes_the_evaluation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, _, err = run(
        capsys,
        "scan",
        "--preset",
        "quick",
        "--samples",
        "40",
        "--eps",
        "0.1,0.2",
        "--format",
        "json",
    )
    assert code == 0, err
    report = json.loads((tmp_path / "bastion-report" / "report.json").read_text())
    setting = report["assessments"][0]["setting"]
    assert setting["preset"] == "quick"
    assert setting["attacks"] == ["apgd", "apgd-t"]
    code, _, err = run(capsys, "scan", "--preset", "exhaustive")
    assert code != 0 and "--preset takes quick, standard or thorough" in err


def test_bastions_own_preprocessing_is_attacked_through_bpda(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    from bastion.defences import DefendedTarget, create_defence

    cnn, data = demo
    squeezed = DefendedTarget(cnn, [create_defence("squeeze:bits=2")])
    threat = Threat(norm="linf", epsilons=(0.2,))
    result = bastion.evaluate(squeezed, data, threat, preset="quick", samples=60)
    # the straight-through gradient is a real one: nothing is masked, and the model falls
    assert not any("masked" in a for a in result.adaptations)
    assert result.sweep[0].robust_accuracy < 0.3 * result.clean_accuracy


def test_a_label_only_target_gets_the_decision_based_chain(
    demo: tuple[TorchTarget, Dataset],
) -> None:
    from bastion.defences import DefendedTarget, create_defence

    cnn, data = demo
    labels = DefendedTarget(cnn, [create_defence("labels")])
    threat = Threat(norm="l2", epsilons=(2.0,))
    result = bastion.evaluate(labels, data, threat, preset="quick", samples=12)
    assert result.attacks == ["hopskipjump"]
    assert result.sweep[0].robust_accuracy < 0.5 * result.clean_accuracy
