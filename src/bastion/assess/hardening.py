"""Before and after: what a hardening defence changed, measured with the evaluation.

Each model is measured twice at every epsilon: by :func:`bastion.evaluate` (the adaptive
evaluation: its preset's ensemble, BPDA through preprocessing defences, EOT for randomness,
black-box attacks where gradients are masked), and by plain PGD on the cross-entropy with no
adaptation, as a naive evaluation would. A defence that only masks gradients shows a large gap
between the two; the assessment reports it as a finding, so the report never rests on the
figure that plain PGD overstated.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bastion.assess.adaptive import naive_vs_adaptive
from bastion.assess.certification import assess_certification
from bastion.assess.scan import ScanResult
from bastion.assess.stats import wilson_interval
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.findings import Finding, Severity
from bastion.core.targets.base import Target
from bastion.core.threat import Threat
from bastion.data import Dataset

__all__ = [
    "MASKING_GAP",
    "Hardened",
    "Measured",
    "Recipe",
    "assess_hardening",
    "harden",
    "measure",
    "plan_recipe",
    "short_name",
]

#: plain PGD above the adaptive evaluation by this much (accuracy) is reported as masking
MASKING_GAP = 0.10

ProgressFn = Callable[[str, int, int], None]


@dataclass
class Measured:
    """One model's figures: clean accuracy, and robust accuracy per epsilon under the
    adaptive evaluation and under plain PGD (``(robust, total)`` counts)."""

    name: str
    clean: tuple[int, int]
    robust: dict[float, tuple[int, int]]
    plain: dict[float, tuple[int, int]]
    adaptations: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    complete: bool = True

    @property
    def clean_accuracy(self) -> float:
        return self.clean[0] / self.clean[1] if self.clean[1] else 0.0

    def robust_accuracy(self, eps: float) -> float:
        hits, total = self.robust[eps]
        return hits / total if total else 0.0

    def plain_accuracy(self, eps: float) -> float:
        hits, total = self.plain[eps]
        return hits / total if total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.name,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": {str(e): self.robust_accuracy(e) for e in self.robust},
            "plain_pgd_accuracy": {str(e): self.plain_accuracy(e) for e in self.plain},
            "samples": self.clean[1],
            "adaptations": list(self.adaptations),
            "seconds": self.seconds,
        }


def _counts(result: ScanResult) -> dict[float, tuple[int, int]]:
    return {r.epsilon: (r.robust, r.total) for r in result.sweep}


def measure(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    preset: str = "standard",
    samples: int = 500,
    seed: int = 0,
    progress: ProgressFn | None = None,
    label: str = "model",
) -> Measured:
    """``target``'s clean accuracy and robust accuracy per epsilon, by the adaptive
    evaluation and by plain PGD as a naive attacker runs it (through the real transforms of
    any preprocessing defence: :func:`~bastion.assess.adaptive.naive_vs_adaptive`)."""
    began = time.perf_counter()

    def tick(what: str, done: int, total: int) -> None:
        if progress is not None:
            progress(f"{label}: {what}", done, total)

    both = naive_vs_adaptive(
        target,
        data,
        threat,
        preset=preset,
        samples=samples,
        seed=seed,
        pgd_steps=_PLAIN_PGD_STEPS,
        undefended=False,
        progress=tick,
    )
    adaptive, plain = both.adaptive, both.naive
    # the figure reported is the worst case of the two per epsilon (their chains differ)
    robust = {}
    for eps, (hits, total) in _counts(adaptive).items():
        p_hits, _ = _counts(plain)[eps]
        robust[eps] = (min(hits, p_hits), total)
    return Measured(
        name=target.name,
        clean=(adaptive.clean_correct, adaptive.samples),
        robust=robust,
        plain=_counts(plain),
        adaptations=list(adaptive.adaptations),
        warnings=list(adaptive.warnings),
        seconds=time.perf_counter() - began,
        complete=adaptive.complete and plain.complete,
    )


def _rate(name: str, label: str, counts: tuple[int, int], **at: Any) -> Metric:
    hits, total = counts
    return Metric(
        name=name,
        value=hits / total if total else 0.0,
        label=label,
        ci95=wilson_interval(hits, total),
        count=(hits, total),
        at=at,
    )


def assess_hardening(
    before: Target,
    after: Target,
    data: Dataset,
    threat: Threat,
    *,
    method: str,
    preset: str = "standard",
    samples: int = 500,
    seed: int = 0,
    training: dict[str, Any] | None = None,
    extra_metrics: Sequence[Metric] = (),
    extra_artifacts: Sequence[Artifact] = (),
    progress: ProgressFn | None = None,
    measured_before: Measured | None = None,
) -> Assessment:
    """The before/after assessment of a hardening ``method``: both models measured on the
    same inputs with the same evaluation, side by side.

    ``training`` describes what was trained (its ``seconds``, ``history``, parameters);
    ``extra_metrics`` and ``extra_artifacts`` carry a method's own figures (certified accuracy,
    say). ``measured_before`` reuses a measurement of ``before`` (the same samples and seed).
    """
    began = time.perf_counter()
    kw: dict[str, Any] = {"preset": preset, "samples": samples, "seed": seed, "progress": progress}
    b = measured_before or measure(before, data, threat, label="before", **kw)
    a = measure(after, data, threat, label="after", **kw)
    eps_list = sorted(b.robust)
    metrics: list[Metric] = []
    for side, m in (("before", b), ("after", a)):
        metrics.append(_rate("clean_accuracy", f"clean accuracy ({side})", m.clean, model=side))
        for eps in eps_list:
            metrics.append(
                _rate(
                    "robust_accuracy",
                    f"robust accuracy at eps={eps:g} ({side})",
                    m.robust[eps],
                    model=side,
                    epsilon=eps,
                )
            )
            metrics.append(
                _rate(
                    "plain_pgd_accuracy",
                    f"accuracy under plain PGD at eps={eps:g} ({side})",
                    m.plain[eps],
                    model=side,
                    epsilon=eps,
                )
            )
    train_seconds = float((training or {}).get("seconds", 0.0))
    if training is not None:
        metrics.append(
            Metric(
                name="training_seconds",
                value=train_seconds,
                label="training time",
                unit="seconds",
            )
        )
    metrics.extend(extra_metrics)

    rows: list[list[Any]] = [
        ["clean accuracy", _pct(b.clean_accuracy), _pct(a.clean_accuracy), _delta(b, a, None)]
    ]
    for eps in eps_list:
        rows.append(
            [
                f"robust accuracy, eps={eps:g}",
                _pct(b.robust_accuracy(eps)),
                _pct(a.robust_accuracy(eps)),
                _delta(b, a, eps),
            ]
        )
        rows.append(
            [
                f"plain PGD only, eps={eps:g}",
                _pct(b.plain_accuracy(eps)),
                _pct(a.plain_accuracy(eps)),
                "",
            ]
        )
    if training is not None:
        rows.append(["training time", "", f"{train_seconds:.0f} s", ""])
    artifacts = [
        Artifact(
            name="before_after",
            kind="table",
            title="Before and after",
            data={"columns": ["measure", "before", "after", "change"], "rows": rows},
            caption=(
                "Robust accuracy is the adaptive evaluation's worst case per input "
                f"(preset {preset}); 'plain PGD only' is what a naive evaluation would report."
            ),
        ),
        Artifact(
            name="robust_curve",
            kind="curve",
            title="Robust accuracy against epsilon",
            data={
                "x_label": f"epsilon ({threat.norm.value})",
                "y_label": "accuracy",
                "y_range": [0, 1],
                "series": [
                    _series("before", b.robust, eps_list),
                    _series(f"after ({method})", a.robust, eps_list),
                    _series(f"after, plain PGD only ({method})", a.plain, eps_list),
                ],
            },
        ),
    ]
    history = (training or {}).get("history")
    if history and all("robust_accuracy" in r for r in history):
        artifacts.append(
            Artifact(
                name="training_curve",
                kind="curve",
                title="Validation accuracy during training",
                data={
                    "x_label": "epoch",
                    "y_label": "accuracy",
                    "y_range": [0, 1],
                    "series": [
                        {
                            "label": "clean",
                            "x": [r["epoch"] for r in history],
                            "y": [r["clean_accuracy"] for r in history],
                        },
                        {
                            "label": "robust (PGD)",
                            "x": [r["epoch"] for r in history],
                            "y": [r["robust_accuracy"] for r in history],
                        },
                    ],
                },
            )
        )
    artifacts.extend(extra_artifacts)
    findings = _findings(b, a, eps_list, method, threat)
    warnings = [f"after: {w}" for w in a.warnings]
    collapsed = (training or {}).get("catastrophic_overfitting")
    if collapsed:
        warnings.append(
            f"catastrophic overfitting at epoch {collapsed}: robust validation accuracy "
            "collapsed; the weights of the best epoch before it were kept"
        )
    return Assessment(
        family="hardening",
        title=f"Hardening: {method}",
        target=after.describe(),
        dataset=data.describe(),
        setting={
            "method": method,
            "threat": json.loads(threat.model_dump_json()),
            "preset": preset,
            "samples": samples,
            "seed": seed,
            "training": {k: v for k, v in (training or {}).items() if k != "history"},
            "adaptations (after)": a.adaptations,
        },
        metrics=metrics,
        artifacts=artifacts,
        warnings=warnings,
        findings=findings,
        seconds=time.perf_counter() - began + (b.seconds if measured_before else 0.0),
        complete=a.complete and b.complete,
        details={
            "method": method,
            "before": b.as_dict(),
            "after": a.as_dict(),
            "training": {k: v for k, v in (training or {}).items()},
        },
    )


def _pct(v: float) -> str:
    return f"{v:.1%}"


def _delta(b: Measured, a: Measured, eps: float | None) -> str:
    d = (
        a.clean_accuracy - b.clean_accuracy
        if eps is None
        else a.robust_accuracy(eps) - b.robust_accuracy(eps)
    )
    return f"{100 * d:+.1f} points"


def _series(
    label: str, counts: dict[float, tuple[int, int]], eps_list: list[float]
) -> dict[str, Any]:
    ys, lo, hi = [], [], []
    for eps in eps_list:
        hits, total = counts[eps]
        ys.append(hits / total if total else 0.0)
        low, high = wilson_interval(hits, total)
        lo.append(low)
        hi.append(high)
    return {"label": label, "x": list(eps_list), "y": ys, "lo": lo, "hi": hi}


def _findings(
    b: Measured, a: Measured, eps_list: list[float], method: str, threat: Threat
) -> list[Finding]:
    out: list[Finding] = []
    gaps = {eps: a.plain_accuracy(eps) - a.robust_accuracy(eps) for eps in eps_list}
    worst = max(eps_list, key=lambda e: gaps[e])
    missed = a.plain[worst][0] - a.robust[worst][0]
    if gaps[worst] >= MASKING_GAP and missed >= 5:
        out.append(
            Finding(
                id=f"hardening-masking-{method}",
                title=f"{method} masks gradients: plain PGD overstates its robustness",
                severity=Severity.HIGH,
                techniques=("AML.T0043", "AML.T0015"),
                mitigations=("AML.M0003",),
                summary=(
                    f"At eps={worst:g}, plain PGD leaves {a.plain_accuracy(worst):.1%} of the "
                    f"inputs standing, the adaptive evaluation {a.robust_accuracy(worst):.1%} "
                    f"(the model before hardening: {b.robust_accuracy(worst):.1%}). The defence "
                    "stops the naive attack, not the adversary: trust the adaptive figure."
                ),
                evidence={
                    "epsilon": worst,
                    "plain_pgd_accuracy": a.plain_accuracy(worst),
                    "robust_accuracy": a.robust_accuracy(worst),
                    "robust_accuracy_before": b.robust_accuracy(worst),
                },
            )
        )
    gain = {eps: a.robust_accuracy(eps) - b.robust_accuracy(eps) for eps in eps_list}
    best = max(eps_list, key=lambda e: gain[e])
    drop = b.clean_accuracy - a.clean_accuracy
    if gain[best] < 0.05:
        out.append(
            Finding(
                id=f"hardening-no-gain-{method}",
                title=f"{method} did not make the model more robust",
                severity=Severity.MEDIUM,
                techniques=("AML.T0015",),
                mitigations=("AML.M0003",),
                summary=(
                    f"Robust accuracy under the adaptive evaluation rose by at most "
                    f"{100 * gain[best]:.1f} points (eps={best:g}); clean accuracy changed by "
                    f"{-100 * drop:+.1f} points."
                ),
                evidence={"gain": gain[best], "epsilon": best, "clean_drop": drop},
            )
        )
    else:
        out.append(
            Finding(
                id=f"hardening-gain-{method}",
                title=(
                    f"{method} raised robust accuracy at eps={best:g} from "
                    f"{b.robust_accuracy(best):.0%} to {a.robust_accuracy(best):.0%}"
                ),
                severity=Severity.INFO,
                techniques=("AML.T0015",),
                mitigations=("AML.M0003",),
                summary=(
                    f"Measured by the adaptive evaluation on {a.clean[1]} inputs; clean accuracy "
                    f"changed by {-100 * drop:+.1f} points."
                ),
                evidence={"gain": gain[best], "epsilon": best, "clean_drop": drop},
            )
        )
    return out


# ---------------------------------------------------------------------------- recipes


#: the hardening methods that train a new model, and those that wrap the model's inputs
TRAINED = ("pgd-at", "trades", "fast-at", "n-fgsm", "distill", "smoothing")
#: noise samples per input of the certification after randomized smoothing
CERTIFY_N0, CERTIFY_N = 100, 1000
WRAPPED = ("squeeze", "median", "jpeg", "resize-pad")


@dataclass
class Recipe:
    """What ``bastion harden`` will run, and what it should cost.

    ``params`` are the hardening defence's parameters; ``train_seconds`` and ``eval_seconds``
    are estimates from timing one training step and one gradient on this machine.
    """

    method: str
    params: dict[str, Any]
    epsilons: tuple[float, ...]
    preset: str
    samples: int
    train_seconds: float
    eval_seconds: float
    fitted_to: float | None = None

    @property
    def seconds(self) -> float:
        return self.train_seconds + self.eval_seconds

    def describe(self) -> str:
        keys: tuple[str, ...] = (
            "epsilon",
            "norm",
            "epochs",
            "steps",
            "beta",
            "temperature",
            "sigma",
        )
        if self.method in ("fast-at", "n-fgsm", "distill", "smoothing"):
            keys = tuple(k for k in keys if k != "steps")
        shown = ", ".join(f"{k}={self.params[k]}" for k in keys if k in self.params) or (
            ", ".join(f"{k}={v}" for k, v in self.params.items())
        )
        budget = f" (budget {self.fitted_to / 60:.0f} min)" if self.fitted_to else ""
        training = f"{_duration(self.train_seconds)} of training and " if self.train_seconds else ""
        return (
            f"{self.method} ({shown}): about {training}"
            f"{_duration(self.eval_seconds)} of evaluation ({self.preset} preset, "
            f"{self.samples} inputs, eps {', '.join(f'{e:g}' for e in self.epsilons)}){budget}"
        )


#: gradients per input and epsilon of each preset's white-box chain, plus plain PGD's
_GRADS_PER_INPUT = {"quick": 60, "standard": 60, "thorough": 1000}
_PLAIN_PGD_STEPS = 40
_EVAL_OVERHEAD = 5.0


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


#: forward passes per input of the standard and thorough presets' score-based attack, on the
#: inputs the white-box attacks leave standing (assumed half)
_QUERIES_PER_INPUT = {"quick": 0, "standard": 2500, "thorough": 5000}


def _timing(target: Target, data: Dataset, batch: int) -> tuple[float, float]:
    """Seconds for one forward and for one forward+backward of ``batch`` inputs."""
    import torch

    x = torch.from_numpy(data.x_train[:batch]).to(target.device)
    model = getattr(target, "model", None)
    times = []
    white_box = isinstance(model, torch.nn.Module)
    for grad in (False, True) if white_box else (False,):
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            if grad:
                xg = x.clone().requires_grad_(True)
                out = target._forward(xg)
                out.sum().backward()  # type: ignore[no-untyped-call]
                if model is not None:
                    model.zero_grad(set_to_none=True)
            else:
                with torch.no_grad():
                    target._forward(x)
            best = min(best, time.perf_counter() - t0)
        times.append(best)
    if not white_box:
        # no gradients: a black-box evaluation estimates them with about three queries each
        times.append(3 * times[0])
    return times[0], times[1]


def plan_recipe(
    method: str,
    params: dict[str, Any],
    target: Target,
    data: Dataset,
    *,
    epsilons: tuple[float, ...],
    preset: str = "standard",
    samples: int = 200,
    budget_minutes: float | None = None,
) -> Recipe:
    """The recipe for ``method`` with ``params`` (the registry's defaults filled in), its cost
    estimated; with a budget, shrunk (epochs, then PGD steps, then evaluated inputs) until it
    fits, or a ConfigError saying what the smallest recipe would need."""
    from bastion.core.errors import ConfigError
    from bastion.core.registry import DEFENCES

    entry = DEFENCES.get(method)
    full = {**entry.parameters(), **params}
    full = {k: v for k, v in full.items() if v is not ...}
    bs = int(full.get("batch_size", 128))
    t_fwd, t_grad = _timing(target, data, min(bs, len(data.x_train)))
    n_train = len(data.x_train)
    n_eval = min(samples, len(data.x_test))

    def train_cost(p: dict[str, Any]) -> float:
        if method not in TRAINED:
            return 0.0
        batches = math.ceil(n_train / bs)
        epochs = float(p["epochs"])
        if method == "distill":
            return 2 * epochs * batches * t_grad
        if method == "smoothing":
            return epochs * batches * t_grad
        steps = 1 if method in ("fast-at", "n-fgsm") else int(p["steps"])
        per_batch = (steps + 1 + (1 if method == "trades" else 0)) * t_grad
        val = float(p.get("val_fraction", 0.1)) * batches * int(p.get("val_steps", 10)) * t_grad
        return epochs * (batches * per_batch + val)

    def eval_cost(n: int) -> float:
        per = t_grad / bs
        grads = _GRADS_PER_INPUT.get(preset, 60) + _PLAIN_PGD_STEPS
        if method in ("resize-pad",):
            grads *= 8  # EOT
        queries = _QUERIES_PER_INPUT.get(preset, 0) * t_fwd / bs
        # plus the fixed cost of each of the four evaluations (probe, setup, reports)
        cost = 2 * len(epsilons) * n * (grads * per + queries) + 4 * _EVAL_OVERHEAD
        if method == "smoothing":
            cost += n * (CERTIFY_N0 + CERTIFY_N) * t_fwd / bs
        return cost

    p = dict(full)
    recipe = Recipe(method, p, epsilons, preset, n_eval, train_cost(p), eval_cost(n_eval))
    if budget_minutes is None:
        return recipe
    budget = budget_minutes * 60
    if not budget > 0:
        raise ConfigError(f"--budget must be positive minutes, got {budget_minutes}")
    # shrink: epochs first (not below a third), then PGD steps, then epochs again, then inputs
    while recipe.seconds > budget:
        if method in TRAINED and p["epochs"] > max(1, full["epochs"] // 3):
            p["epochs"] -= 1
        elif method in ("pgd-at", "trades") and p["steps"] > 3:
            p["steps"] -= 1
            p["step_size"] = None
        elif method in TRAINED and p["epochs"] > 1:
            p["epochs"] -= 1
        elif n_eval > 50:
            n_eval = max(50, int(n_eval * 0.8))
        else:
            raise ConfigError(
                f"a budget of {budget_minutes:g} min is too small for {method}: the smallest "
                f"recipe needs about {recipe.seconds / 60:.1f} min here"
            )
        recipe = Recipe(method, p, epsilons, preset, n_eval, train_cost(p), eval_cost(n_eval))
    recipe.fitted_to = budget
    return recipe


# ---------------------------------------------------------------------------- the whole run


@dataclass
class Hardened:
    """What :func:`harden` made: the hardened target, the defence that made it, the recipe
    it followed and the before/after assessment."""

    target: Target
    defence: Any
    recipe: Recipe
    assessment: Assessment


def harden(
    target: Target,
    data: Dataset,
    method: str = "pgd-at",
    *,
    epsilons: Sequence[float] | None = None,
    norm: str = "linf",
    preset: str = "standard",
    samples: int = 200,
    seed: int = 0,
    budget_minutes: float | None = None,
    checkpoint: Any = None,
    progress: ProgressFn | None = None,
    on_recipe: Callable[[Recipe], None] | None = None,
    constraints: Any = None,
) -> Hardened:
    """Harden ``target`` with ``method`` (``name`` or ``name:param=value,...``) and measure
    it before and after with the evaluation.

    Adversarial trainers train against the largest of ``epsilons`` unless their parameters
    say otherwise. ``on_recipe`` is called with the recipe (and its cost estimate) before
    anything is trained. ``checkpoint`` is where training saves each epoch and resumes from.
    ``constraints`` (tabular :class:`~bastion.core.constraints.Constraints`) bound the
    adversarial trainers' perturbations to what an adversary can change.
    """
    import torch

    from bastion.core.errors import AccessError, ConfigError
    from bastion.core.registry import DEFENCES
    from bastion.core.threat import Norm, default_epsilons
    from bastion.defences import DefendedTarget, parse_defence

    name, params = parse_defence(method)
    known = (*TRAINED, *WRAPPED)
    if name not in known:
        raise ConfigError(f"--method takes one of {', '.join(known)}; got {name!r}")
    if name in TRAINED and not isinstance(getattr(target, "model", None), torch.nn.Module):
        raise AccessError(
            f"{target.name}: {name} trains new weights and needs a PyTorch model; for a "
            f"{target.access.value} target choose an input transformation "
            f"({', '.join(WRAPPED)})"
        )
    norm_value = Norm.parse(norm)
    eps = tuple(
        sorted(
            epsilons or default_epsilons(norm_value, data.bounds, math.prod(data.input_shape))[1:3]
        )
    )
    threat = Threat(norm=norm_value, epsilons=eps)
    entry = DEFENCES.get(name)
    params = entry.validate(params)
    adversarial = ("pgd-at", "trades", "fast-at", "n-fgsm")
    if constraints is not None and name not in adversarial:
        raise ConfigError(f"--constraints applies to {', '.join(adversarial)}, not {name}")
    if name in adversarial:
        params.setdefault("epsilon", max(eps))
        params.setdefault("norm", norm_value.value)
        params.setdefault("seed", seed)
    recipe = plan_recipe(
        name,
        params,
        target,
        data,
        epsilons=eps,
        preset=preset,
        samples=samples,
        budget_minutes=budget_minutes,
    )
    if on_recipe is not None:
        on_recipe(recipe)
    defence = DEFENCES.create(name, **recipe.params)
    check = getattr(defence, "_check_params", None)
    if callable(check):
        check()
    training: dict[str, Any] | None = None
    smoothed: Any = None
    extra_metrics: list[Metric] = []
    extra_artifacts: list[Artifact] = []
    if name in TRAINED:
        began = time.perf_counter()

        def epoch(done: int, total: int, record: dict[str, Any]) -> None:
            if progress is not None:
                progress("training", done, total)

        extra: dict[str, Any] = {"constraints": constraints} if constraints is not None else {}
        after = defence.fit(target, data, progress=epoch, checkpoint=checkpoint, **extra)
        if name == "smoothing":
            # certified robustness is the smoothed classifier's; the empirical figures below
            # are its noise-trained base model's (the smoothed one answers votes, no gradients)
            smoothed, after = after, after.base
            n_cert = min(recipe.samples, len(data.x_test))
            certification = assess_certification(
                smoothed,
                data.x_test[:n_cert],
                data.y_test[:n_cert],
                n0=CERTIFY_N0,
                n=CERTIFY_N,
                seed=seed,
            )
            extra_metrics = list(certification.metrics)
            extra_artifacts = list(certification.artifacts)
        training = {
            "method": name,
            "params": defence.get_params(),
            "seconds": getattr(defence, "seconds_", time.perf_counter() - began),
            "history": getattr(defence, "history_", None),
            "best_epoch": getattr(defence, "best_epoch_", None),
            "stopped_early": getattr(defence, "stopped_early_", None),
            "catastrophic_overfitting": getattr(defence, "catastrophic_overfitting_", None),
        }
    else:
        after = DefendedTarget(target, [defence])
    assessment = assess_hardening(
        target,
        after,
        data,
        threat,
        method=short_name(defence),
        preset=recipe.preset,
        samples=recipe.samples,
        seed=seed,
        training=training,
        extra_metrics=extra_metrics,
        extra_artifacts=extra_artifacts,
        progress=progress,
    )
    assessment.setting["recipe"] = recipe.describe()
    if smoothed is not None:
        assessment.setting["after"] = (
            "the noise-trained base model; certified accuracy is the smoothed classifier's "
            f"(sigma {smoothed.sigma:g}, n0 {CERTIFY_N0}, n {CERTIFY_N}, L2 radii)"
        )
    return Hardened(smoothed if smoothed is not None else after, defence, recipe, assessment)


def short_name(defence: Any) -> str:
    """``name:param=value`` with only the parameters that differ from the registry's defaults."""
    entry = defence.entry
    defaults = entry.parameters()
    changed = {
        k: v for k, v in defence.get_params().items() if k not in defaults or defaults[k] != v
    }
    shown = ",".join(f"{k}={v}" for k, v in changed.items())
    return f"{entry.name}:{shown}" if shown else entry.name
