"""The scan: ensemble protocol, findings, the checks on the evaluation itself, reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch
from torch import nn

import bastion
from bastion.assess import scan
from bastion.assess.scan import _halving_epsilon
from bastion.core.assessment import Report
from bastion.core.errors import ConfigError
from bastion.core.findings import Severity
from bastion.core.targets import TorchTarget
from bastion.core.threat import Threat
from bastion.report.html import render_html
from bastion.report.json import load_schema, to_dict

FAST = {"pgd": {"steps": 10}, "square": {"max_queries": 100}}


def test_scan_demo(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    result = scan(cnn, data, Threat(epsilons=(0.05, 0.1, 0.3)), samples=60, attack_params=FAST)
    assert result.clean_accuracy > 0.9
    robust = [p.robust_accuracy for p in result.sweep]
    assert robust == sorted(robust, reverse=True)
    assert robust[-1] <= 0.05
    # the overall figure is the worst case of the access groups, pointwise
    for p in result.sweep:
        assert p.robust <= min(p.group_robust.values())
        lo, hi = p.interval
        assert lo <= p.robust_accuracy <= hi
    # later attacks of a group only see what earlier ones left standing
    first = result.sweep[0]
    fgsm, pgd = first.attacks[0], first.attacks[1]
    assert pgd.attacked == fgsm.attacked - fgsm.fooled
    white = next(f for f in result.findings if f.id == "evasion-white-box")
    assert white.severity.rank >= Severity.HIGH.rank
    assert white.techniques[0] == "AML.T0043.000" and "AML.T0015" in white.techniques
    assert "AML.M0003" in white.mitigations
    assert result.warnings == []


def test_report_json_validates_and_html_renders(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    result = scan(cnn, data, Threat(epsilons=(0.1, 0.2)), samples=20, attack_params=FAST)
    report = to_dict(Report([result.to_assessment()]))
    jsonschema.validate(report, load_schema())
    assert {t["id"] for t in report["techniques"]} >= {"AML.T0043.000", "AML.T0015"}
    html = render_html(Report([result.to_assessment()]))
    assert "Model evaded by white-box adversarial examples" in html
    assert "Model Hardening" in html  # mitigation names come from the catalog


def test_schema_rejects_a_broken_report(cnn: TorchTarget, demo: Any) -> None:
    _, data = demo
    result = scan(cnn, data, Threat(epsilons=(0.1,)), samples=10, attack_params=FAST)
    report = to_dict(Report([result.to_assessment()]))
    report["findings"].append(
        {
            "id": "x",
            "title": "t",
            "severity": "apocalyptic",
            "techniques": ["T1059"],
            "summary": "",
            "evidence": {},
            "mitigations": [],
            "attacks": [],
            "unreliable": None,
        }
    )
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(report, load_schema())


def test_tabular_scan_reports_feature_changes(tmp_path: Path) -> None:
    target, data = bastion.load_demo("breast-cancer-mlp")
    result = scan(target, data, Threat(epsilons=(0.1, 0.3)), samples=40, attack_params=FAST)
    report = to_dict(Report([result.to_assessment()]))
    jsonschema.validate(report, load_schema())
    (table,) = [a for a in report["assessments"][0]["artifacts"] if a["name"] == "examples"]
    assert table["kind"] == "table" and table["data"]["columns"][-1] == "largest feature changes"
    changes = [row[-1] for row in table["data"]["rows"] if row[-1] != "(unchanged)"]
    assert changes
    assert changes[0].split(":")[0] in data.feature_names
    html = render_html(Report([result.to_assessment()]))
    assert "largest feature changes" in html


class _Softmaxed(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=1)


class _Noisy(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x + 0.05 * torch.randn_like(x))


class _Quantized(nn.Module):
    """Rounds its inputs: no gradient flows, so gradient attacks are blind."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(torch.round(x * 4) / 4)


def _wrap(cls: type[nn.Module], cnn: TorchTarget) -> TorchTarget:
    return TorchTarget(cls(cnn.model), num_classes=10, input_shape=(1, 8, 8), name=cls.__name__)


def test_warns_on_probabilities_declared_as_logits(cnn: TorchTarget, demo: Any) -> None:
    result = scan(
        _wrap(_Softmaxed, cnn), demo[1], Threat(epsilons=(0.1,)), samples=10, attacks=["fgsm"]
    )
    assert any("look like probabilities" in w for w in result.warnings)


def test_warns_on_a_random_forward_pass(cnn: TorchTarget, demo: Any) -> None:
    result = scan(
        _wrap(_Noisy, cnn), demo[1], Threat(epsilons=(0.1,)), samples=10, attacks=["fgsm"]
    )
    assert any("randomness in the forward pass" in w for w in result.warnings)


def test_warns_on_masked_gradients(cnn: TorchTarget, demo: Any) -> None:
    result = scan(
        _wrap(_Quantized, cnn), demo[1], Threat(epsilons=(0.2, 0.3)), samples=40, attack_params=FAST
    )
    text = " ".join(result.warnings)
    assert "all-zero gradient" in text
    assert "gradients may be masked" in text
    # the black-box attack still finds what the blinded gradient attacks cannot
    last = result.sweep[-1]
    assert last.group_robust["score-based"] < last.group_robust["white-box"]


def test_masked_gradients_make_the_finding_unreliable_and_fail_the_gate(
    cnn: TorchTarget, demo: Any
) -> None:
    """With gradient attacks alone the masked model looks robust; the finding must say the
    figure is unreliable, and an unreliable finding fails any --fail-on gate."""
    result = scan(
        _wrap(_Quantized, cnn),
        demo[1],
        Threat(epsilons=(0.1, 0.2)),
        samples=40,
        attacks=["fgsm", "pgd"],
        attack_params={"pgd": FAST["pgd"]},
    )
    (white,) = result.findings
    assert white.unreliable is not None and "all-zero gradient" in white.unreliable
    assert white.fails(Severity.CRITICAL)
    clean = scan(
        cnn,
        demo[1],
        Threat(epsilons=(0.1,)),
        samples=20,
        attacks=["pgd"],
        attack_params={"pgd": FAST["pgd"]},
    )
    assert all(f.unreliable is None for f in clean.findings)


def test_warns_when_accuracy_rises_with_epsilon() -> None:
    from bastion.assess.scan import EpsilonResult, _check_sweep

    sweep = [EpsilonResult(0.1, 10, 100, []), EpsilonResult(0.2, 30, 100, [])]
    assert "rises" in _check_sweep(sweep)[0]


def test_halving_epsilon_interpolates() -> None:
    assert _halving_epsilon([(0.1, 0.6), (0.2, 0.2)], 1.0) == pytest.approx(0.125)
    assert _halving_epsilon([(0.1, 0.9)], 1.0) is None
    assert _halving_epsilon([(0.1, 0.1)], 1.0) == pytest.approx(0.0555555, rel=1e-4)


def test_scan_rejects_nonsense(cnn: TorchTarget, demo: Any) -> None:
    with pytest.raises(ConfigError, match="samples"):
        scan(cnn, demo[1], Threat(epsilons=(0.1,)), samples=0)
    with pytest.raises(ConfigError, match="no registered attack"):
        scan(cnn, demo[1], Threat(norm="l0", epsilons=(3,)), samples=5)


def test_scan_is_reproducible(cnn: TorchTarget, demo: Any) -> None:
    a = scan(cnn, demo[1], Threat(epsilons=(0.1,)), samples=30, seed=5, attack_params=FAST)
    b = scan(cnn, demo[1], Threat(epsilons=(0.1,)), samples=30, seed=5, attack_params=FAST)
    assert [p.robust for p in a.sweep] == [p.robust for p in b.sweep]
    assert [e.index for e in a.examples] == [e.index for e in b.examples]


def test_a_scan_runs_the_attacks_marked_for_it(cnn: Any, sk_target: Any) -> None:
    from bastion.assess import default_attacks
    from bastion.core.registry import ATTACKS
    from bastion.core.threat import Norm

    white = [e.name for e in default_attacks(cnn, Norm.LINF)]
    # the presets' attacks are not in a plain scan, nor a label-only one against scores
    assert white == ["fgsm", "pgd", "square"]
    assert not ATTACKS.get("apgd").in_scan
    assert [e.name for e in default_attacks(sk_target, Norm.LINF)] == ["square"]
