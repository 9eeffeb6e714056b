"""The evasion scan: attack a sample of the data over an epsilon sweep and conclude findings.

Attacks run as an ensemble, cheapest first, each only on the inputs that survived the ones
before (AutoAttack's protocol); the robust accuracy reported is the pointwise worst case.
The scan also checks the evaluation itself and says when it looks wrong.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from bastion import attacks as _attacks  # noqa: F401  (fills the registry)
from bastion.assess.stats import wilson_interval
from bastion.attacks.base import Attack
from bastion.core.errors import ConfigError
from bastion.core.findings import Finding, Severity
from bastion.core.registry import ATTACKS, Entry
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, OutputKind, Threat
from bastion.data import Dataset

__all__ = ["AttackSummary", "EpsilonResult", "Example", "ScanResult", "default_attacks", "scan"]

ProgressFn = Callable[[str, int, int], None]

# hyperparameters a scan uses for each attack unless told otherwise
SCAN_DEFAULTS: dict[str, dict[str, Any]] = {
    "fgsm": {},
    "pgd": {"steps": 40},
    "square": {"max_queries": 1000},
}
# ensemble order: cheap and white-box first, query-hungry black-box last
_ORDER = {"fgsm": 0, "pgd": 1, "square": 2}

_NUM_EXAMPLES = 8


@dataclass
class AttackSummary:
    """One attack's share of its group's ensemble at one epsilon."""

    attack: str
    access: str
    attacked: int
    fooled: int
    queries: int
    seconds: float
    median_queries_to_success: float | None = None


@dataclass
class EpsilonResult:
    """Robust accuracy at one epsilon: overall (worst case over every attack) and per access
    group (each group an independent ensemble, as that adversary would run it)."""

    epsilon: float
    robust: int
    total: int
    attacks: list[AttackSummary]
    group_robust: dict[str, int] = field(default_factory=dict)

    @property
    def robust_accuracy(self) -> float:
        return self.robust / self.total if self.total else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.robust, self.total)

    def group_accuracy(self, access: str) -> float:
        return self.group_robust[access] / self.total if self.total else 0.0


@dataclass
class Example:
    """A clean input and its worst adversarial version at one epsilon."""

    index: int
    epsilon: float
    label: int
    clean_prediction: int
    adversarial_prediction: int
    clean: np.ndarray
    adversarial: np.ndarray
    attack: str | None


@dataclass
class ScanResult:
    target: dict[str, Any]
    dataset: dict[str, Any]
    threat: Threat
    attacks: list[str]
    attack_params: dict[str, dict[str, Any]]
    samples: int
    seed: int
    clean_correct: int
    sweep: list[EpsilonResult]
    examples: list[Example]
    findings: list[Finding]
    warnings: list[str]
    seconds: float
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct / self.samples if self.samples else 0.0


def default_attacks(target: Target, norm: Norm) -> list[Entry]:
    """The evasion attacks a scan runs: every one the target's access and the norm allow."""
    chosen = [e for e in ATTACKS.select(norm=norm, access=target.access) if e.family == "evasion"]
    return sorted(chosen, key=lambda e: (_ORDER.get(e.name, 99), e.name))


def _choose(target: Target, threat: Threat, names: Sequence[str] | None) -> list[Entry]:
    if names:
        entries = [ATTACKS.get(n) for n in names]
        for e in entries:
            if not target.access.allows(e.access):
                raise ConfigError(
                    f"{e.name} needs {e.access.value} access; {target.name} gives "
                    f"{target.access.value}"
                )
            if e.norms and threat.norm not in e.norms:
                raise ConfigError(f"{e.name} does not support the {threat.norm.value} norm")
        return sorted(entries, key=lambda e: (_ORDER.get(e.name, 99), e.name))
    entries = default_attacks(target, threat.norm)
    if not entries:
        raise ConfigError(
            f"no registered attack runs under {threat.norm.value} against a "
            f"{target.access.value} target"
        )
    return entries


def _sample(data: Dataset, samples: int, seed: int) -> np.ndarray:
    n = len(data.x_test)
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[: min(samples, n)])


def scan(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    samples: int = 200,
    seed: int = 0,
    attacks: Sequence[str] | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    progress: ProgressFn | None = None,
) -> ScanResult:
    """Attack ``samples`` test inputs of ``data`` at every epsilon of ``threat``.

    Returns a :class:`ScanResult` with clean and robust accuracy (with 95% intervals), what each
    attack contributed, example images, findings and warnings about the evaluation itself.
    """
    started = time.perf_counter()
    threat.check_bounds(target.bounds)
    entries = _choose(target, threat, attacks)
    params = {
        e.name: {**SCAN_DEFAULTS.get(e.name, {}), **(attack_params or {}).get(e.name, {})}
        for e in entries
    }
    instances: list[tuple[Entry, Attack]] = [
        (e, ATTACKS.create(e.name, **params[e.name])) for e in entries
    ]

    idx = _sample(data, samples, seed)
    x = torch.from_numpy(data.x_test[idx]).to(target.device)
    y = torch.from_numpy(data.y_test[idx]).to(target.device)
    target.check_inputs(x, y)
    warnings: list[str] = []
    with target.inference_mode(), torch.no_grad():
        clean_scores = target(x) if target.output_kind is not OutputKind.LABELS else None
        clean_pred = clean_scores.argmax(1) if clean_scores is not None else target.predict(x)
    correct = clean_pred == y
    warnings += _check_outputs(target, x, clean_scores)

    groups: dict[Access, list[tuple[Entry, Attack]]] = {}
    for entry, attack in instances:
        groups.setdefault(entry.access, []).append((entry, attack))
    n_ex = min(_NUM_EXAMPLES, len(x))
    sweep: list[EpsilonResult] = []
    examples: list[Example] = []
    total_steps = len(threat.epsilons) * len(instances)
    step = 0
    for eps in sorted(threat.epsilons):
        at = threat.at(eps)
        robust = correct.clone()
        worst = x.clone()
        who: list[str | None] = [None] * len(x)
        summaries = []
        group_robust = {}
        for access, members in groups.items():
            standing = correct.clone()
            for entry, attack in members:
                summary, fooled, x_fooled, notes = _attack_standing(
                    entry, attack, target, x, y, standing, at, seed
                )
                summaries.append(summary)
                standing[fooled] = False
                # the example shows the first attack that broke each input
                first = robust[fooled]
                worst[fooled[first]] = x_fooled[first]
                for i in fooled[first].tolist():
                    who[i] = entry.name
                robust[fooled] = False
                for note in notes:
                    text = f"{entry.name} at eps={eps:g}: {note}"
                    if text not in warnings:
                        warnings.append(text)
                step += 1
                if progress is not None:
                    progress(f"{entry.name} eps={eps:g}", step, total_steps)
            group_robust[access.value] = int(standing.sum())
        sweep.append(EpsilonResult(eps, int(robust.sum()), len(x), summaries, group_robust))
        with target.inference_mode(), torch.no_grad():
            adv_pred = target.predict(worst[:n_ex])
        for i in range(n_ex):
            examples.append(
                Example(
                    int(idx[i]),
                    eps,
                    int(y[i]),
                    int(clean_pred[i]),
                    int(adv_pred[i]),
                    x[i].cpu().numpy(),
                    worst[i].cpu().numpy(),
                    who[i],
                )
            )

    warnings += _check_sweep(sweep)
    warnings += _check_masking(sweep)
    result = ScanResult(
        target=target.describe(),
        dataset=data.describe(),
        threat=threat,
        attacks=[e.name for e in entries],
        attack_params=params,
        samples=len(x),
        seed=seed,
        clean_correct=int(correct.sum()),
        sweep=sweep,
        examples=examples,
        findings=[],
        warnings=warnings,
        seconds=0.0,
        class_names=list(data.class_names),
        feature_names=list(data.feature_names),
    )
    result.findings = evasion_findings(result, entries, data)
    result.seconds = time.perf_counter() - started
    return result


def _attack_standing(
    entry: Entry,
    attack: Attack,
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    standing: torch.Tensor,
    threat: Threat,
    seed: int,
) -> tuple[AttackSummary, torch.Tensor, torch.Tensor, list[str]]:
    """Run one attack on the inputs still standing: its summary, the indices it fooled, their
    adversarial versions, and its notes."""
    todo = standing.nonzero().squeeze(1)
    if len(todo) == 0:
        empty = AttackSummary(entry.name, entry.access.value, 0, 0, 0, 0.0)
        return empty, todo, x[:0], []
    outcome = attack.run(target, x[todo], y[todo], threat, seed=seed)
    hit = outcome.success
    median_q = None
    if outcome.queries_per_sample is not None and bool(hit.any()):
        median_q = float(outcome.queries_per_sample[hit.cpu()].float().median())
    summary = AttackSummary(
        entry.name,
        entry.access.value,
        len(todo),
        int(hit.sum()),
        outcome.queries,
        outcome.seconds,
        median_q,
    )
    return summary, todo[hit], outcome.x_adv[hit], outcome.notes


# ---------------------------------------------------------------------- evaluation checks
def _check_outputs(target: Target, x: torch.Tensor, scores: torch.Tensor | None) -> list[str]:
    out = []
    if scores is not None and target.output_kind is OutputKind.LOGITS and len(scores):
        rows = scores.sum(dim=1)
        if bool((scores >= 0).all()) and bool(
            torch.allclose(rows, torch.ones_like(rows), atol=1e-4)
        ):
            out.append(
                "the target is declared to return logits but its outputs look like probabilities "
                "(non-negative rows summing to 1): gradients through a softmax saturate and "
                "understate the attacks; expose the logits, or declare output_kind=probabilities"
            )
    if target.access is Access.WHITE_BOX and len(x):
        probe = x[: min(16, len(x))]
        with target.inference_mode(), torch.no_grad():
            first, second = target(probe), target(probe)
        if not torch.allclose(first, second, atol=1e-5, rtol=1e-4):
            out.append(
                "the model answers the same inputs differently (randomness in the forward pass): "
                "single gradient estimates are noisy; evaluate with expectation over "
                "transformation (EOT) before trusting the robust accuracy"
            )
    return out


def _check_sweep(sweep: list[EpsilonResult]) -> list[str]:
    out = []
    for prev, cur in itertools.pairwise(sweep):
        if cur.robust > prev.robust:
            out.append(
                f"robust accuracy rises from {prev.robust_accuracy:.1%} at eps={prev.epsilon:g} "
                f"to {cur.robust_accuracy:.1%} at eps={cur.epsilon:g}: a larger ball contains the "
                "smaller one, so the attacks are failing; add steps or restarts"
            )
    return out


def _check_masking(sweep: list[EpsilonResult]) -> list[str]:
    white = Access.WHITE_BOX.value
    out = []
    for point in sweep:
        if white not in point.group_robust:
            continue
        for group, standing in point.group_robust.items():
            if group == white:
                continue
            gap = point.group_robust[white] - standing
            if point.total and gap / point.total > 0.05:
                out.append(
                    f"at eps={point.epsilon:g} the {group} black-box attacks leave "
                    f"{point.group_accuracy(group):.1%} accuracy, below the white-box attacks' "
                    f"{point.group_accuracy(white):.1%}: with full access the gradient attacks "
                    "should do at least as well, so the gradients may be masked; trust the "
                    "lower figure and strengthen the white-box attacks (more steps, restarts)"
                )
    return out


# ---------------------------------------------------------------------- findings
_MITIGATIONS = {
    Access.WHITE_BOX: ("AML.M0003", "AML.M0015", "AML.M0010"),
    Access.SCORES: ("AML.M0004", "AML.M0002", "AML.M0003", "AML.M0015"),
    Access.LABELS: ("AML.M0004", "AML.M0003", "AML.M0015"),
}
_CRAFT = {
    Access.WHITE_BOX: "AML.T0043.000",
    Access.SCORES: "AML.T0043.001",
    Access.LABELS: "AML.T0043.001",
}
# perturbation size, as a fraction of what the norm can reach, by which accuracy halves
_SEVERITY_STEPS = (
    (0.02, Severity.CRITICAL),
    (0.15, Severity.HIGH),
    (0.3, Severity.MEDIUM),
    (0.5, Severity.LOW),
)


def relative_epsilon(eps: float, norm: Norm, bounds: tuple[float, float], dims: int) -> float:
    """An epsilon as a share of the input range: per feature (Linf), root mean square per
    feature (L2), or the fraction of features changed (L0)."""
    span = bounds[1] - bounds[0]
    if norm is Norm.LINF:
        return eps / span
    if norm is Norm.L2:
        return eps / (span * math.sqrt(max(dims, 1)))
    return eps / max(dims, 1)


def _halving_epsilon(points: list[tuple[float, float]], clean: float) -> float | None:
    """The epsilon at which accuracy reaches half of clean accuracy, interpolated linearly
    between the sweep's points; None if it never does."""
    goal = clean / 2
    prev_eps, prev_acc = 0.0, clean
    for eps, acc in points:
        if acc <= goal:
            if prev_acc == acc:
                return eps
            return prev_eps + (prev_acc - goal) / (prev_acc - acc) * (eps - prev_eps)
        prev_eps, prev_acc = eps, acc
    return None


def evasion_findings(result: ScanResult, entries: list[Entry], data: Dataset) -> list[Finding]:
    """One finding per adversary (white-box, score-based, label-only) that the attacks
    stood for, rated by how small a perturbation halves the accuracy."""
    findings = []
    clean = result.clean_accuracy
    dims = int(np.prod(data.input_shape))
    bounds = (float(result.target["bounds"][0]), float(result.target["bounds"][1]))
    norm = result.threat.norm
    for access in (Access.WHITE_BOX, Access.SCORES, Access.LABELS):
        names = [e.name for e in entries if e.access is access]
        if not names:
            continue
        robust = [(p.epsilon, p.group_accuracy(access.value)) for p in result.sweep]
        intervals = {
            f"{p.epsilon:g}": list(wilson_interval(p.group_robust[access.value], p.total))
            for p in result.sweep
        }
        half = _halving_epsilon(robust, clean)
        last_eps, last_acc = robust[-1]
        fooled_any = any(acc < clean for _, acc in robust)
        severity = Severity.INFO
        if half is not None and fooled_any:
            rel = relative_epsilon(half, norm, bounds, dims)
            severity = next((s for limit, s in _SEVERITY_STEPS if rel <= limit), Severity.INFO)
        elif fooled_any and last_acc < 0.9 * clean:
            severity = Severity.LOW
        kind = "white-box" if access is Access.WHITE_BOX else access.value + " black-box"
        attackers = f"{kind.capitalize()} attacks ({', '.join(names)})"
        if half is not None and fooled_any:
            summary = (
                f"{attackers} halve the accuracy ({clean:.1%} clean) with {norm.value} "
                f"perturbations of about {half:.3g}, and leave {last_acc:.1%} at epsilon "
                f"{last_eps:g}."
            )
        elif fooled_any:
            summary = (
                f"{attackers} lower the accuracy from {clean:.1%} to {last_acc:.1%} at "
                f"{norm.value} epsilon {last_eps:g}, less than half of it within the sweep."
            )
        else:
            summary = f"{attackers} found no adversarial input up to epsilon {last_eps:g}."
        evidence: dict[str, Any] = {
            "norm": norm.value,
            "samples": result.samples,
            "clean_accuracy": clean,
            "robust_accuracy": {f"{e:g}": a for e, a in robust},
            "robust_accuracy_ci95": intervals,
            "epsilon_halving_accuracy": half,
            "relative_epsilon_halving_accuracy": (
                relative_epsilon(half, norm, bounds, dims) if half is not None else None
            ),
        }
        medians = [
            s.median_queries_to_success
            for p in result.sweep
            for s in p.attacks
            if s.attack in names and s.median_queries_to_success is not None
        ]
        if medians:
            evidence["median_queries_to_success"] = float(np.median(medians))
        findings.append(
            Finding(
                id=f"evasion-{'white-box' if access is Access.WHITE_BOX else access.value}",
                title=f"Model evaded by {kind} adversarial examples",
                severity=severity,
                techniques=(_CRAFT[access], "AML.T0043", "AML.T0015"),
                summary=summary,
                evidence=evidence,
                mitigations=_MITIGATIONS[access],
                attacks=tuple(names),
            )
        )
    return sorted(findings, key=lambda f: -f.severity.rank)
