"""A scan never loses its work: it plans within a query budget, and resumes after a stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from bastion.assess import scan
from bastion.core.errors import ConfigError
from bastion.core.targets import SklearnTarget, TorchTarget
from bastion.core.threat import Threat

from helpers import run

EPS = Threat(epsilons=(0.05, 0.1, 0.2))


def _sk(logreg: Any, budget: int | None) -> SklearnTarget:
    return SklearnTarget(logreg, num_classes=10, input_shape=(1, 8, 8), query_budget=budget)


def test_a_budget_is_shared_not_exhausted(logreg: Any, demo: Any) -> None:
    """The README's case: a black box with a budget far below what the defaults would spend."""
    target = _sk(logreg, 5000)
    result = scan(target, demo[1], EPS, samples=100)
    assert target.queries <= 5000
    # every epsilon was measured, within its share, and the report says the budget limited it
    assert [p.epsilon for p in result.sweep] == [0.05, 0.1, 0.2]
    assert all(p.attacks[0].attacked > 0 for p in result.sweep)
    assert any(p.limited for p in result.sweep)
    assert any("query budget" in lim for lim in result.limits)
    assert result.sweep[-1].robust_accuracy < result.clean_accuracy
    limited = [m for m in result.to_assessment().metrics if m.limited]
    assert limited and all(m.limited == "query budget" for m in limited)


def test_a_budget_too_small_to_attack_still_reports(logreg: Any, demo: Any) -> None:
    target = _sk(logreg, 130)
    result = scan(target, demo[1], EPS, samples=100)
    assert target.queries <= 130
    assert not result.complete
    assert result.clean_accuracy > 0.8  # what was measured is kept
    assert all(s.limited == "budget spent" for p in result.sweep for s in p.attacks)


def test_an_unlimited_scan_is_not_marked(sk_target: Any, demo: Any) -> None:
    result = scan(
        sk_target,
        demo[1],
        Threat(epsilons=(0.1,)),
        samples=20,
        attack_params={"square": {"max_queries": 50}},
    )
    assert result.complete and result.limits == []
    assert not any(m.limited for m in result.to_assessment().metrics)


class _Interrupting(torch.nn.Module):
    """Answers normally, then raises KeyboardInterrupt (a Ctrl-C) after ``after`` calls."""

    def __init__(self, inner: torch.nn.Module, after: int) -> None:
        super().__init__()
        self.inner = inner
        self.after = after
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner(x)  # type: ignore[no-any-return]


def _target(model: torch.nn.Module) -> TorchTarget:
    return TorchTarget(model, num_classes=10, input_shape=(1, 8, 8), name="digits-cnn")


def test_interrupted_scan_resumes_to_the_same_result(demo: Any, tmp_path: Path) -> None:
    model, data = demo[0].model, demo[1]
    params = {"pgd": {"steps": 5}, "square": {"max_queries": 30}}
    threat = Threat(epsilons=(0.05, 0.2))
    fresh = scan(_target(model), data, threat, samples=30, attack_params=params)

    checkpoint = tmp_path / "ck.json"
    # fgsm at 0.05 takes 2 calls (the clean pass, then 1 step + 1 check): stop inside pgd
    cut = _Interrupting(model, after=8)
    partial = scan(
        _target(cut), data, threat, samples=30, attack_params=params, checkpoint=checkpoint
    )
    assert not partial.complete
    assert any("interrupted" in lim for lim in partial.limits)
    saved = json.loads(checkpoint.read_text())["units"]
    assert 1 <= len(saved) < 6

    again = _target(model)
    resumed = scan(
        again, data, threat, samples=30, attack_params=params, checkpoint=checkpoint, resume=True
    )
    assert resumed.complete
    assert [p.robust for p in resumed.sweep] == [p.robust for p in fresh.sweep]
    assert [[s.fooled for s in p.attacks] for p in resumed.sweep] == [
        [s.fooled for s in p.attacks] for p in fresh.sweep
    ]
    # the units already done were not run again: fewer queries than the fresh scan's
    assert again.queries < sum(s.queries for p in fresh.sweep for s in p.attacks) + 30


def test_resume_refuses_another_scans_checkpoint(demo: Any, tmp_path: Path) -> None:
    model, data = demo[0].model, demo[1]
    checkpoint = tmp_path / "ck.json"
    scan(
        _target(model),
        data,
        Threat(epsilons=(0.1,)),
        samples=10,
        attacks=["fgsm"],
        checkpoint=checkpoint,
    )
    with pytest.raises(ConfigError, match="different scan"):
        scan(
            _target(model),
            data,
            Threat(epsilons=(0.2,)),
            samples=10,
            attacks=["fgsm"],
            checkpoint=checkpoint,
            resume=True,
        )


def test_cli_checks_out_before_any_work(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "scan", "--out", str(blocker / "sub"))
    assert code == 2 and "is a file" in err


def test_cli_query_budget_writes_a_marked_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = run(
        capsys,
        "scan",
        "--target",
        "digits-logreg",
        "--query-budget",
        "5000",
        "--samples",
        "100",
        "--eps",
        "0.05,0.1,0.2",
        "--out",
        str(tmp_path),
    )
    assert code == 0, err
    assert "limited:" in out
    data = json.loads((tmp_path / "report.json").read_text())
    assert any("query budget" in lim for lim in data["assessments"][0]["limits"])
    assert not (tmp_path / ".bastion-checkpoint.json").exists()  # a finished scan cleans up


def test_cli_ctrl_c_leaves_a_partial_report_and_resume_finishes_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bastion.attacks.evasion.pgd import PGD

    args = [
        "scan",
        "--samples",
        "16",
        "--eps",
        "0.1,0.2",
        "--steps",
        "3",
        "--max-queries",
        "20",
        "--out",
        str(tmp_path),
    ]

    def interrupted(*_: Any, **__: Any) -> torch.Tensor:
        raise KeyboardInterrupt

    with monkeypatch.context() as m:
        m.setattr(PGD, "_attack", interrupted)
        code, _, err = run(capsys, *args)
    assert code == 130, err
    partial = json.loads((tmp_path / "report.json").read_text())
    assert partial["complete"] is False
    assert "--resume" in (tmp_path / "report.html").read_text()
    checkpoint = json.loads((tmp_path / ".bastion-checkpoint.json").read_text())
    # what finished before the Ctrl-C
    assert list(checkpoint["units"]) == ["0.1/fgsm", "0.1/deepfool"]

    code, _, err = run(capsys, *args, "--resume")
    assert code == 0, err
    done = json.loads((tmp_path / "report.json").read_text())
    assert done["complete"] is True
    sweep = done["assessments"][0]["details"]["sweep"]
    ran = [a["attack"] for a in sweep[0]["attacks"]]
    assert ran == ["fgsm", "deepfool", "pgd", "fab", "square"]
    assert not (tmp_path / ".bastion-checkpoint.json").exists()
