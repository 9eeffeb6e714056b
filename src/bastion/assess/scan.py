"""The evasion scan: attack a sample of the data over an epsilon sweep and conclude findings.

Attacks run as an ensemble, cheapest first (by their registry ``cost``), each only on the inputs
that survived the ones before (AutoAttack's protocol); the robust accuracy reported is the
pointwise worst case. The scan also checks the evaluation itself and says when it looks wrong.

A scan never loses its work. It plans within the target's query budget (each remaining attack
run gets a fair share, and a score-based attack is told its share per input); when the budget
runs out or the user interrupts, it stops and returns what it measured, marked incomplete, with
the figures that the budget limited marked as such. With a ``checkpoint`` path it saves each
finished (epsilon, attack) unit, and ``resume=True`` continues from them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError, QueryBudgetExceeded
from bastion.core.files import atomic_write
from bastion.core.findings import Finding, Severity
from bastion.core.registry import ATTACKS, Entry
from bastion.core.targets.base import Target
from bastion.core.threat import Access, Norm, OutputKind, Threat
from bastion.data import Dataset

__all__ = [
    "AttackSummary",
    "EpsilonResult",
    "Example",
    "InputOutcome",
    "InputRecord",
    "ScanResult",
    "default_attacks",
    "scan",
    "to_assessment",
]

#: progress callback: (what runs now, units done, units in all)
ProgressFn = Callable[[str, int, int], None]

_NUM_EXAMPLES = 8
_CHECKPOINT_VERSION = 1
_GROUPED = (
    "attacks with the same access run as an ensemble, cheapest first, each on the inputs "
    "still standing; the robust accuracy is the worst case per input over all attacks"
)
_CHAINED = (
    "the attacks run in one chain, in the order listed, each only on the inputs every attack "
    "before it left standing; an input fooled at a smaller epsilon counts as fooled at the "
    "larger ones (its adversarial input lies in the larger ball too); the robust accuracy is "
    "the worst case per input over all attacks"
)


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
    limited: str | None = None


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

    @property
    def limited(self) -> bool:
        """Whether an attack at this epsilon was cut short (budget or interruption)."""
        return any(s.limited for s in self.attacks)

    def group_accuracy(self, access: str) -> float:
        return self.group_robust[access] / self.total if self.total else 0.0

    def group_interval(self, access: str) -> tuple[float, float]:
        return wilson_interval(self.group_robust[access], self.total)


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
class InputOutcome:
    """What the attacks did to one sampled input at one epsilon."""

    #: the attack credited with fooling it (the first in the ensemble's order), or None: the
    #: input stood, or was misclassified before any attack
    fooled_by: str | None
    #: the prediction on its worst adversarial version (the clean prediction where none)
    adversarial_prediction: int
    #: the access groups whose ensemble it withstood (none where misclassified clean)
    standing: list[str]
    #: every attack that fooled it, with the queries that took (None where the attack does
    #: not count queries per input)
    fooled: dict[str, float | None]


@dataclass
class InputRecord:
    """One sampled test input: its clean answer and what each epsilon of the sweep did to it.

    The records are what make a scan's figures mergeable: the robust count at an epsilon is
    the number of records correct clean and fooled by no attack there.
    """

    #: its position in the data's test split
    index: int
    label: int
    clean_prediction: int
    #: whether the clean input was answered right (only those are attacked)
    correct: bool
    #: one per epsilon of the sweep, in its (ascending) order
    outcomes: list[InputOutcome]

    def robust(self, at: int) -> bool:
        """Whether it stood at the ``at``-th epsilon of the sweep."""
        return self.correct and self.outcomes[at].fooled_by is None


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
    complete: bool = True
    limits: list[str] = field(default_factory=list)
    #: how the attacks were combined (reports print it)
    protocol: str = _GROUPED
    #: the evaluation preset, when the scan ran one
    preset: str | None = None
    #: what the adaptive evaluation did about the checks that fired
    adaptations: list[str] = field(default_factory=list)
    #: every sampled input, in the order attacked, with what each epsilon did to it
    inputs: list[InputRecord] = field(default_factory=list)

    @property
    def clean_accuracy(self) -> float:
        return self.clean_correct / self.samples if self.samples else 0.0

    @property
    def interrupted(self) -> bool:
        """Whether the user stopped the scan (Ctrl-C) before every attack ran."""
        return any(s.limited == "interrupted" for p in self.sweep for s in p.attacks)

    def to_assessment(self) -> Assessment:
        return to_assessment(self)


def default_attacks(
    target: Target,
    threat: Threat | Norm,
    given: dict[str, dict[str, Any]] | None = None,
) -> list[Entry]:
    """The evasion attacks a scan runs, cheapest first: every one marked ``in_scan`` that the
    target's access and the adversary's knowledge allow under the threat's norm (or under
    ``threat``, a norm). A target that returns scores is not attacked by label-only attacks:
    an adversary who reads scores does at least as well with the score-based ones.

    An attack whose entry ``requires`` parameters (a transfer attack's surrogate) is left out
    unless its defaults or ``given`` (the scan's settings, by attack) hold them all.
    """
    if isinstance(threat, Norm):
        threat = Threat(norm=threat, epsilons=(1.0,))  # any size: only the norm matters here
    access = target.access if target.access.rank <= threat.knowledge.rank else threat.knowledge
    chosen = ATTACKS.select(norm=threat.norm, access=access, family="evasion")
    given = given or {}
    return [
        e
        for e in chosen
        if e.in_scan
        and (e.access is not Access.LABELS or access is Access.LABELS)
        and all(p in e.defaults or p in given.get(e.name, {}) for p in e.requires)
    ]


def _choose(
    target: Target,
    threat: Threat,
    names: Sequence[str] | None,
    given: dict[str, dict[str, Any]] | None = None,
    keep_order: bool = False,
) -> list[Entry]:
    if names:
        if len(set(names)) != len(names):
            raise ConfigError(f"attacks repeat: {', '.join(names)}")
        entries = [ATTACKS.get(n) for n in names]
        for e in entries:
            if e.family not in ("evasion", "universal"):
                raise ConfigError(
                    f"{e.name} is a {e.family} attack; a scan runs evasion attacks "
                    "(and the universal patch and uap)"
                )
            e.require(access=target.access, norm=threat.norm, target=target.name)
        return entries if keep_order else sorted(entries, key=lambda e: (e.cost, e.name))
    entries = default_attacks(target, threat, given)
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


def _given(data: Dataset, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """The test inputs a caller chose, checked: positions in the test split, each once."""
    idx = np.asarray(indices, dtype=np.int64).reshape(-1)
    n = len(data.x_test)
    if len(idx) == 0:
        raise ConfigError("indices: give at least one test input")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise ConfigError(f"indices must lie in 0..{n - 1} (the data has {n} test inputs)")
    if len(np.unique(idx)) != len(idx):
        raise ConfigError("indices repeat: each test input is attacked once")
    return idx


class _Checkpoint:
    """Finished (epsilon, attack) units of one scan, saved after each so none is redone."""

    def __init__(self, path: Path | None, fingerprint: str, resume: bool) -> None:
        self.path = path
        self.fingerprint = fingerprint
        self.units: dict[str, dict[str, Any]] = {}
        if path is None or not resume:
            return
        if not path.is_file():
            raise ConfigError(f"--resume: no checkpoint at {path} (nothing to resume)")
        try:
            saved = json.loads(path.read_text("utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--resume: cannot read the checkpoint {path}: {exc}") from None
        if saved.get("version") != _CHECKPOINT_VERSION or saved.get("fingerprint") != fingerprint:
            raise ConfigError(
                f"--resume: the checkpoint {path} is from a different scan (another target, "
                "data, threat, attacks, samples or seed); rerun without --resume"
            )
        self.units = saved.get("units", {})

    @staticmethod
    def key(eps: float, attack: str) -> str:
        return f"{eps!r}/{attack}"

    def save(self, key: str, unit: dict[str, Any]) -> None:
        self.units[key] = unit
        if self.path is not None:
            payload = {"version": _CHECKPOINT_VERSION, "fingerprint": self.fingerprint}
            atomic_write(self.path, json.dumps({**payload, "units": self.units}))


def _fingerprint(
    target: Target,
    data: Dataset,
    threat: Threat,
    params: dict[str, Any],
    idx: np.ndarray,
    seed: int,
) -> str:
    desc = {
        "target": {
            k: v for k, v in target.describe().items() if k not in ("query_budget", "device")
        },
        "data": data.describe(),
        "threat": json.loads(threat.model_dump_json()),
        "params": params,
        "idx": hashlib.sha256(idx.tobytes()).hexdigest(),
        "seed": seed,
    }
    return hashlib.sha256(json.dumps(desc, sort_keys=True, default=str).encode()).hexdigest()


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
    checkpoint: Path | None = None,
    resume: bool = False,
    chain: bool = False,
    indices: Sequence[int] | np.ndarray | None = None,
) -> ScanResult:
    """Attack ``samples`` test inputs of ``data`` at every epsilon of ``threat``.

    Returns a :class:`ScanResult` with clean and robust accuracy (with 95% intervals), what each
    attack contributed, example images, findings and warnings about the evaluation itself. When
    the query budget runs out or the run is interrupted (Ctrl-C), the result holds what was
    measured, with ``complete=False``.

    By default each access group (white-box, score-based, label-only) is its own ensemble, as
    that adversary would run it. With ``chain`` the attacks run in the order given as one
    ensemble, each on what the ones before left standing, and inputs fooled at a smaller
    epsilon are not attacked again at larger ones: the robustness evaluation's protocol
    (:func:`bastion.evaluate`).

    ``indices`` (positions in the test split) names the inputs to attack instead of a sample
    of ``samples`` drawn with ``seed``: a shard of a larger evaluation
    (:mod:`bastion.assess.sharded`). ``result.inputs`` holds what happened to each input.
    """
    started = time.perf_counter()
    threat.check_bounds(target.bounds)
    entries = _choose(target, threat, attacks, attack_params, keep_order=chain)
    # settings are checked and converted to each parameter's declared type ("100" -> 100)
    params = {
        e.name: {**e.defaults, **e.validate((attack_params or {}).get(e.name, {}))} for e in entries
    }
    unknown = sorted(set(attack_params or {}) - {e.name for e in entries})
    if unknown:
        raise ConfigError(
            f"settings for {', '.join(unknown)}, which this scan does not run "
            f"(it runs {', '.join(e.name for e in entries)})"
        )
    instances = [(e, ATTACKS.create(e.name, **params[e.name])) for e in entries]
    for _, attack in instances:
        attack._check_params()

    idx = _sample(data, samples, seed) if indices is None else _given(data, indices)
    limits: list[str] = []
    if indices is None and len(idx) < samples:
        limits.append(f"{samples} inputs were asked for; the data has {len(idx)} test inputs")
    x = torch.from_numpy(data.x_test[idx]).to(target.device)
    y = torch.from_numpy(data.y_test[idx]).to(target.device)
    target.check_inputs(x, y)
    state = _Checkpoint(checkpoint, _fingerprint(target, data, threat, params, idx, seed), resume)
    warnings: list[str] = []
    with target.inference_mode(), torch.no_grad():
        clean_out = target.outputs(x)
    clean_scores = clean_out if clean_out.ndim == 2 else None
    clean_pred = clean_out.argmax(1) if clean_scores is not None else clean_out.long()
    correct = ~threat.goal.is_success(clean_out, y) if not threat.targeted else clean_pred == y
    warnings += _check_outputs(target, x, clean_scores)

    groups: dict[Access, list[tuple[Entry, Any]]] = {}
    for entry, attack in instances:
        # in a chain, every attack counts for the adversary the target exposes
        groups.setdefault(target.access if chain else entry.access, []).append((entry, attack))
    carried = torch.zeros_like(correct)
    n_ex = min(_NUM_EXAMPLES, len(x))
    sweep: list[EpsilonResult] = []
    examples: list[Example] = []
    epsilons = sorted(threat.epsilons)
    total_units = len(epsilons) * len(instances)
    done = 0
    stopped: str | None = None
    budget_spent = False
    outcomes: list[list[InputOutcome]] = [[] for _ in range(len(x))]
    for eps in epsilons:
        at = threat.at(eps)
        robust = correct & ~carried
        if not chain or eps == epsilons[0]:
            worst = x[:n_ex].clone()
            adv_pred = clean_pred.clone()
            who: list[str | None] = [None] * len(x)
        summaries = []
        group_robust = {}
        stood: dict[str, list[bool]] = {}
        fooled_here: list[dict[str, float | None]] = [{} for _ in range(len(x))]
        for access, members in groups.items():
            standing = correct & ~carried
            for entry, attack in members:
                key = _Checkpoint.key(eps, entry.name)
                if key in state.units:
                    unit = state.units[key]
                elif stopped is not None:
                    unit = _skipped(entry, standing, stopped)
                else:
                    try:
                        unit = _run_unit(
                            entry,
                            attack,
                            target,
                            x,
                            y,
                            standing,
                            at,
                            seed,
                            total_units - done,
                            n_ex,
                        )
                    except KeyboardInterrupt:
                        stopped = "interrupted"
                        unit = _skipped(entry, standing, stopped)
                    if unit["ran"]:
                        state.save(key, unit)
                    else:
                        budget_spent = True
                summaries.append(AttackSummary(**unit["summary"]))
                fooled = torch.tensor(unit["fooled"], dtype=torch.long, device=x.device)
                standing[fooled] = False
                first = robust[fooled]
                for pos, i in enumerate(unit["fooled"]):
                    if not bool(first[pos]):
                        continue
                    who[i] = entry.name
                    adv_pred[i] = unit["predictions"][pos]
                    if i < n_ex and str(i) in unit["examples"]:
                        worst[i] = torch.tensor(unit["examples"][str(i)], dtype=x.dtype)
                robust[fooled] = False
                spent = unit.get("queries") or [None] * len(unit["fooled"])
                for i, q in zip(unit["fooled"], spent, strict=True):
                    fooled_here[i][entry.name] = q
                for note in unit["notes"]:
                    text = f"{entry.name} at eps={eps:g}: {note}"
                    if text not in warnings:
                        warnings.append(text)
                done += 1
                if progress is not None:
                    progress(f"{entry.name} eps={eps:g}", done, total_units)
            group_robust[access.value] = int(standing.sum())
            stood[access.value] = standing.tolist()
        if chain:
            # an input fooled here is fooled at every larger epsilon by the same input
            carried = correct & ~robust
        sweep.append(EpsilonResult(eps, int(robust.sum()), len(x), summaries, group_robust))
        predicted = adv_pred.tolist()
        for i in range(len(x)):
            outcomes[i].append(
                InputOutcome(
                    who[i], int(predicted[i]), [g for g, s in stood.items() if s[i]], fooled_here[i]
                )
            )
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

    complete = stopped is None and not budget_spent
    budget_limited = any(s.limited == "query budget" for p in sweep for s in p.attacks)
    if budget_spent or budget_limited:
        limits.append(
            f"the query budget ({target.query_budget} queries) was shared across the attacks and "
            "epsilons and ran short: the robust accuracy where it is marked budget-limited is an "
            "upper bound (give a larger --query-budget, or fewer --samples)"
        )
    if stopped == "interrupted":
        limits.append("interrupted before every attack ran: the figures are upper bounds")
    if complete:
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
        complete=complete,
        limits=limits,
        protocol=_CHAINED if chain else _GROUPED,
        inputs=[
            InputRecord(int(i), int(label), int(pred), bool(ok), found)
            for i, label, pred, ok, found in zip(
                idx.tolist(),
                y.tolist(),
                clean_pred.tolist(),
                correct.tolist(),
                outcomes,
                strict=True,
            )
        ],
    )
    result.findings = evasion_findings(result, entries, data)
    result.seconds = time.perf_counter() - started
    return result


def _unit(summary: AttackSummary, ran: bool) -> dict[str, Any]:
    return {
        "summary": dict(summary.__dict__),
        "ran": ran,
        "fooled": [],
        "queries": [],
        "predictions": [],
        "examples": {},
        "notes": [],
    }


def _skipped(entry: Entry, standing: torch.Tensor, why: str) -> dict[str, Any]:
    """A unit that did not run: every standing input counts as still standing."""
    attacked = int(standing.sum())
    return _unit(
        AttackSummary(entry.name, entry.access.value, attacked, 0, 0, 0.0, None, why), False
    )


def _run_unit(
    entry: Entry,
    attack: Any,
    target: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    standing: torch.Tensor,
    threat: Threat,
    seed: int,
    units_left: int,
    n_ex: int,
) -> dict[str, Any]:
    """Run one attack on the inputs still standing, within its share of the query budget.

    Returns the unit as JSON-ready data: its summary, the indices it fooled with the
    predictions and queries there, the adversarial examples among the first ``n_ex`` inputs,
    and notes.
    """
    todo = standing.nonzero().squeeze(1)
    if len(todo) == 0:
        return _unit(AttackSummary(entry.name, entry.access.value, 0, 0, 0, 0.0), ran=True)
    limited = None
    left = target.queries_left
    if left is not None:
        # a fair share of what is left, per input, less the one query that measures success
        share = left // max(units_left, 1)
        per_input = share // len(todo) - 1
        if per_input < 1:
            return _skipped(entry, standing, "budget spent")
        if threat.queries_per_input is None or per_input < threat.queries_per_input:
            threat = threat.model_copy(update={"queries_per_input": per_input})
            wanted = getattr(attack, "max_queries", None)
            if isinstance(wanted, int) and per_input < wanted:
                limited = "query budget"
    try:
        outcome = attack.run(target, x[todo], y[todo], threat, seed=seed)
    except QueryBudgetExceeded:
        return _skipped(entry, standing, "budget spent")
    hit = outcome.success.to(todo.device)
    median_q = None
    spent: list[float] | None = None
    if outcome.queries_per_sample is not None and bool(hit.any()):
        to_success = outcome.queries_per_sample[hit.cpu()].float()
        median_q = float(to_success.median())
        spent = [float(q) for q in to_success.tolist()]
    summary = AttackSummary(
        entry.name,
        entry.access.value,
        len(todo),
        int(hit.sum()),
        outcome.queries,
        outcome.seconds,
        median_q,
        # a run on a reduced share is kept and saved: its successes are real, its figure marked
        limited=limited,
    )
    fooled = todo[hit]
    adv = outcome.x_adv[hit]
    examples = {
        str(int(i)): adv[pos].cpu().tolist() for pos, i in enumerate(fooled.tolist()) if i < n_ex
    }
    return {
        "summary": dict(summary.__dict__),
        "ran": True,
        "fooled": [int(i) for i in fooled.tolist()],
        # per fooled input, so that shards of a scan merge to the same median
        "queries": spent,
        "predictions": [int(p) for p in outcome.predictions[hit].tolist()],
        "examples": examples,
        "notes": list(outcome.notes),
    }


# ---------------------------------------------------------------------- evaluation checks
def _check_outputs(target: Target, x: torch.Tensor, scores: torch.Tensor | None) -> list[str]:
    out = []
    if scores is not None and target.output_kind is OutputKind.PROBABILITIES and len(scores):
        rows = scores.sum(dim=1)
        if bool((scores < -1e-6).any()) or not bool(
            torch.allclose(rows, torch.ones_like(rows), atol=1e-3)
        ):
            out.append(
                "the target is declared to return probabilities but its outputs do not look like "
                "them (negative values, or rows that do not sum to 1): they are probably logits; "
                "declare --output-kind logits so margins and the checks read them right"
            )
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


def _severity_basis(rel: float | None) -> str:
    rule = ", ".join(f"{s.value} at most {limit:.0%}" for limit, s in _SEVERITY_STEPS)
    if rel is None:
        where = "accuracy did not halve within the sweep"
    else:
        where = f"accuracy halves at a perturbation of {rel:.1%} of the input range"
    return (
        f"{where}; severity is set by that share ({rule}; beyond: info), or low when the "
        "accuracy fell by over 10% without halving"
    )


# warnings of the evaluation checks that make a robust-accuracy figure untrustworthy
_UNRELIABLE = (
    "all-zero gradient",
    "randomness in the forward pass",
    "robust accuracy rises",
    "gradients may be masked",
    "look like probabilities",
    "do not look like them",
)


def _crafting(entries: list[Entry], access: Access) -> tuple[str, ...]:
    """The crafting sub-techniques the group's attacks declare (a transfer attack's is
    Black-Box Transfer), or the access level's usual one."""
    declared = [
        t for e in entries if e.access is access for t in e.techniques if t.startswith("AML.T0043.")
    ]
    return tuple(dict.fromkeys(declared)) or (_CRAFT[access],)


def _unreliable(warnings: list[str]) -> str | None:
    fired = [w for w in warnings if any(key in w for key in _UNRELIABLE)]
    if not fired:
        return None
    return (
        "the evaluation's own checks fired, so the robust accuracy may be overstated: "
        + " | ".join(fired[:3])
    )


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
        if result.protocol == _CHAINED:
            # one chain: every attack stood for the adversary the target exposes
            present = bool(result.sweep) and access.value in result.sweep[0].group_robust
            names = [e.name for e in entries] if present else []
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
        evidence["severity_basis"] = _severity_basis(evidence["relative_epsilon_halving_accuracy"])
        evidence["budget_limited"] = [
            p.epsilon
            for p in result.sweep
            if any(s.limited for s in p.attacks if s.access == access.value)
        ]
        findings.append(
            Finding(
                unreliable=_unreliable(result.warnings),
                id=f"evasion-{'white-box' if access is Access.WHITE_BOX else access.value}",
                title=f"Model evaded by {kind} adversarial examples",
                severity=severity,
                techniques=(*_crafting(entries, access), "AML.T0043", "AML.T0015"),
                summary=summary,
                evidence=evidence,
                mitigations=_MITIGATIONS[access],
                attacks=tuple(names),
            )
        )
    return sorted(findings, key=lambda f: -f.severity.rank)


# ---------------------------------------------------------------------- the general shape
def _label(names: list[str], i: int) -> str:
    return names[i] if i < len(names) else str(i)


def to_assessment(result: ScanResult) -> Assessment:
    """The scan as a general :class:`Assessment`: what every report format renders."""
    norm = result.threat.norm.value
    groups = sorted({g for p in result.sweep for g in p.group_robust})
    clean_ci = wilson_interval(result.clean_correct, result.samples)
    metrics = [
        Metric(
            "clean_accuracy",
            result.clean_accuracy,
            "clean accuracy",
            clean_ci,
            (result.clean_correct, result.samples),
        )
    ]
    for p in result.sweep:
        limited = "query budget" if p.limited else None
        metrics.append(
            Metric(
                "robust_accuracy",
                p.robust_accuracy,
                f"robust accuracy at {norm} eps={p.epsilon:g}",
                p.interval,
                (p.robust, p.total),
                at={"epsilon": p.epsilon},
                limited=limited,
            )
        )
        for g in groups:
            metrics.append(
                Metric(
                    "robust_accuracy",
                    p.group_accuracy(g),
                    f"robust accuracy at {norm} eps={p.epsilon:g}, {g} attacks",
                    p.group_interval(g),
                    (p.group_robust[g], p.total),
                    at={"epsilon": p.epsilon, "access": g},
                    limited=limited,
                )
            )
    eps = [0.0] + [p.epsilon for p in result.sweep]
    series = [
        {
            "label": "worst case, all attacks",
            "x": eps,
            "y": [result.clean_accuracy] + [p.robust_accuracy for p in result.sweep],
            "lo": [clean_ci[0]] + [p.interval[0] for p in result.sweep],
            "hi": [clean_ci[1]] + [p.interval[1] for p in result.sweep],
            "colour": "#222222",
        }
    ]
    if len(groups) > 1:
        for g in groups:
            series.append(
                {
                    "label": f"{g} attacks",
                    "x": eps,
                    "y": [result.clean_accuracy] + [p.group_accuracy(g) for p in result.sweep],
                }
            )
    artifacts = [
        Artifact(
            "robustness-curve",
            "curve",
            "Accuracy under attack",
            {
                "x_label": f"epsilon ({norm})",
                "y_label": "accuracy",
                "series": series,
                "y_range": [-0.02, 1.02],
            },
        )
    ]
    rows = []
    for p in result.sweep:
        lo, hi = p.interval
        by_group = [
            f"{p.group_accuracy(g):.1%} ({p.group_interval(g)[0]:.1%}-{p.group_interval(g)[1]:.1%})"
            for g in groups
        ]
        fooled = ", ".join(
            f"{s.attack} {s.fooled}/{s.attacked}"
            + (
                f" (median {s.median_queries_to_success:g} queries)"
                if s.median_queries_to_success
                else ""
            )
            + (f" [{s.limited}]" if s.limited else "")
            for s in p.attacks
        )
        rows.append(
            [f"{p.epsilon:g}", f"{p.robust_accuracy:.1%}", f"{lo:.1%}-{hi:.1%}", *by_group, fooled]
        )
    artifacts.append(
        Artifact(
            "sweep",
            "table",
            "Robust accuracy by perturbation size",
            {
                "columns": [
                    f"epsilon ({norm})",
                    "robust accuracy",
                    "95% CI",
                    *[f"{g} only (95% CI)" for g in groups],
                    "what each attack fooled (of those it attacked)",
                ],
                "rows": rows,
            },
        )
    )
    if result.sweep:
        show = result.sweep[len(result.sweep) // 2].epsilon
        chosen = [e for e in result.examples if e.epsilon == show]
        names = result.class_names
        if chosen and chosen[0].clean.ndim >= 2:
            lo_b, hi_b = (float(b) for b in result.target["bounds"])

            def scale(a: np.ndarray) -> np.ndarray:
                out: np.ndarray = (a - lo_b) / (hi_b - lo_b)
                return out

            artifacts.append(
                Artifact(
                    "examples",
                    "images",
                    f"Clean inputs (top) and their adversarial versions at eps={show:g} (bottom)",
                    {
                        "rows": [
                            {
                                "label": "clean",
                                "images": [scale(e.clean) for e in chosen],
                                "captions": [
                                    f"clean: {_label(names, e.clean_prediction)}" for e in chosen
                                ],
                                "good": [e.clean_prediction == e.label for e in chosen],
                            },
                            {
                                "label": "attacked",
                                "images": [scale(e.adversarial) for e in chosen],
                                "captions": [
                                    f"attacked: {_label(names, e.adversarial_prediction)}"
                                    for e in chosen
                                ],
                                "good": [e.adversarial_prediction == e.label for e in chosen],
                            },
                        ]
                    },
                )
            )
        elif chosen:
            table_rows = []
            for e in chosen:
                delta = (e.adversarial - e.clean).reshape(-1)
                order = np.argsort(-np.abs(delta))[:5]
                changes = ", ".join(
                    f"{_label(result.feature_names, int(i)) if result.feature_names else f'x{i}'}: "
                    f"{float(e.clean.reshape(-1)[i]):.3g}->{float(e.adversarial.reshape(-1)[i]):.3g}"
                    for i in order
                    if delta[i] != 0
                )
                table_rows.append(
                    [
                        f"#{e.index}",
                        _label(names, e.label),
                        f"{_label(names, e.clean_prediction)} -> "
                        f"{_label(names, e.adversarial_prediction)}",
                        changes or "(unchanged)",
                    ]
                )
            artifacts.append(
                Artifact(
                    "examples",
                    "table",
                    f"Examples at eps={show:g}",
                    {
                        "columns": [
                            "input",
                            "label",
                            "clean -> attacked prediction",
                            "largest feature changes",
                        ],
                        "rows": table_rows,
                    },
                )
            )
    records = [
        {
            "index": e.index,
            "epsilon": e.epsilon,
            "label": e.label,
            "clean_prediction": e.clean_prediction,
            "adversarial_prediction": e.adversarial_prediction,
            "attack": e.attack,
        }
        for e in result.examples
    ]
    details = {
        "clean_accuracy": {
            "value": result.clean_accuracy,
            "correct": result.clean_correct,
            "total": result.samples,
            "ci95": list(clean_ci),
        },
        "sweep": [
            {
                "epsilon": p.epsilon,
                "robust_accuracy": p.robust_accuracy,
                "robust": p.robust,
                "total": p.total,
                "ci95": list(p.interval),
                "limited": p.limited,
                "by_access": {
                    g: {"value": p.group_accuracy(g), "ci95": list(p.group_interval(g))}
                    for g in groups
                },
                "attacks": [dict(s.__dict__, seconds=round(s.seconds, 4)) for s in p.attacks],
            }
            for p in result.sweep
        ],
        "class_names": result.class_names,
    }
    setting = {
        "threat": json.loads(result.threat.model_dump_json()),
        "success criterion": result.threat.goal.describe(),
        "attacks": result.attacks,
        "attack_params": result.attack_params,
        "samples": result.samples,
        "seed": result.seed,
        "protocol": result.protocol,
    }
    if result.preset is not None:
        setting["preset"] = result.preset
    if result.adaptations:
        setting["adaptive evaluation"] = list(result.adaptations)
    return Assessment(
        family="evasion",
        title=f"Evasion: robust accuracy under {norm} perturbations",
        target=result.target,
        dataset=result.dataset,
        setting=setting,
        metrics=metrics,
        records=records,
        artifacts=artifacts,
        warnings=list(result.warnings),
        findings=list(result.findings),
        seconds=result.seconds,
        complete=result.complete,
        limits=list(result.limits),
        details=details,
    )
