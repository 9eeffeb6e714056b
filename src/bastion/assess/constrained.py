"""Evasion within domain constraints: how a tabular model fares against rows an adversary can
really submit, and which features they change to get there.

:func:`constrained_assessment` attacks the test set with
:class:`~bastion.attacks.evasion.ConstrainedPGD` at every epsilon of the threat and reports
accuracy and per-class recall before and after, checks every adversarial row against every
constraint (the count of violations is a metric, and must be 0), and lays out, per feature, the
share of rows changed and by how much.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.attacks.evasion.constrained import ConstrainedPGD
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.constraints import Constraints, FeatureConstraints
from bastion.core.errors import ConfigError
from bastion.core.findings import Finding, Severity
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, Threat
from bastion.data import Dataset

__all__ = ["constrained_assessment", "feature_changes"]

# the share of what the norm can reach, over the mutable features, by which accuracy halves
_SEVERITY = ((0.15, Severity.HIGH), (0.3, Severity.MEDIUM))


def feature_changes(
    x: torch.Tensor, x_adv: torch.Tensor, rules: FeatureConstraints
) -> list[list[Any]]:
    """Per feature: its name, what the constraints say of it, the share of rows changed, and
    the mean and largest absolute change among the changed rows (data units)."""
    delta = (x_adv - x).reshape(len(x), -1).double().abs().cpu()
    changed = delta > 1e-6
    said = _rule_text(rules)
    rows = []
    for i, name in enumerate(rules.names):
        moved = changed[:, i]
        share = float(moved.float().mean()) if len(x) else 0.0
        mean = float(delta[moved, i].mean()) if bool(moved.any()) else 0.0
        top = float(delta[:, i].max()) if len(x) else 0.0
        rows.append([name, said.get(name, "-"), f"{share:.1%}", f"{mean:.3g}", f"{top:.3g}"])
    return rows


def _rule_text(rules: FeatureConstraints) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    described = rules.describe()
    for name in described["immutable"]:
        out.setdefault(name, []).append("immutable")
    for members in described["one_hot"]:
        for name in members:
            out.setdefault(name, []).append(f"one-hot ({len(members)} columns)")
    for name, kind in described["discrete"].items():
        out.setdefault(name, []).append(kind)
    for name, eps in described["feature_epsilon"].items():
        out.setdefault(name, []).append(f"epsilon {eps:g}")
    for i, name in enumerate(rules.names):
        lo, hi = float(rules.low[i]), float(rules.high[i])
        if name not in {m for g in described["one_hot"] for m in g} and (
            lo > float(rules.low.min()) or hi < float(rules.high.max())
        ):
            out.setdefault(name, []).append(f"range [{lo:g}, {hi:g}]")
    return {k: ", ".join(v) for k, v in out.items()}


def _recall(pred: torch.Tensor, y: torch.Tensor, c: int) -> tuple[int, int]:
    of_class = y == c
    return int((pred[of_class] == c).sum()), int(of_class.sum())


def constrained_assessment(
    target: Target,
    data: Dataset,
    constraints: Constraints | Mapping[str, Any] | str | Path,
    threat: Threat,
    *,
    samples: int | None = None,
    seed: int = 0,
    attack_params: Mapping[str, Any] | None = None,
) -> Assessment:
    """Attack ``data``'s test rows within ``constraints`` at each epsilon of ``threat``.

    Args:
        target: a white-box target.
        data: the data; its feature names are the names the constraints use (unless the
            constraints list their own ``columns``).
        constraints: the constraints, their mapping or a constraints file's path.
        threat: norm (Linf or L2) and epsilons; untargeted.
        samples: test rows to attack (None: all of them).
        seed: sampling and attack seed.
        attack_params: settings of :class:`~bastion.attacks.evasion.ConstrainedPGD` (steps...).

    Returns: an :class:`~bastion.core.assessment.Assessment` of family ``constrained-evasion``:
    clean and robust accuracy, per-class recall, constraint violations (0), a table of feature
    changes per epsilon, and a finding.
    """
    started = time.perf_counter()
    if threat.targeted:
        raise ConfigError("the constrained assessment measures untargeted evasion")
    rules = Constraints.coerce(constraints)
    if rules is None:
        raise ConfigError("give the constraints to assess against")
    rules = rules.with_columns(data.feature_names)
    params = dict(attack_params or {})
    params.pop("constraints", None)
    attack = ConstrainedPGD(constraints=rules.model_dump(exclude_defaults=True), **params)
    attack._check_params()
    threat.check_bounds(target.bounds)

    n = len(data.x_test)
    idx = np.arange(n)
    if samples is not None:
        if samples < 1:
            raise ConfigError(f"samples must be at least 1, got {samples}")
        idx = np.sort(np.random.default_rng(seed).permutation(n)[: min(samples, n)])
    x = torch.from_numpy(data.x_test[idx]).to(target.device)
    y = torch.from_numpy(data.y_test[idx]).to(target.device)
    target.check_inputs(x, y)
    dims = int(np.prod(data.input_shape))
    resolved = rules.resolve(dims, target.bounds)
    resolved.check_data(x, "the test rows")

    with target.inference_mode(), torch.no_grad():
        clean_pred = target.predict(x)
    names = data.class_names or [str(c) for c in range(target.num_classes)]
    classes = [c for c in range(target.num_classes) if bool((y == c).any())]
    correct = int((clean_pred == y).sum())
    metrics = [
        Metric(
            "clean_accuracy",
            correct / len(x),
            "clean accuracy",
            wilson_interval(correct, len(x)),
            (correct, len(x)),
        )
    ]
    for c in classes:
        hit, total = _recall(clean_pred, y, c)
        metrics.append(
            Metric(
                "recall",
                hit / total,
                f"clean recall of {names[c]}",
                wilson_interval(hit, total),
                (hit, total),
                at={"class": names[c]},
            )
        )
    artifacts: list[Artifact] = []
    sweep: list[dict[str, Any]] = []
    curve_y: list[float] = [correct / len(x)]
    for eps in sorted(threat.epsilons):
        at = threat.at(eps)
        result = attack.run(target, x, y, at, seed=seed)
        pred = result.predictions
        robust = int(((pred == y) & (clean_pred == y)).sum())
        broken = resolved.violations(result.x_adv, x, at.norm, eps)
        violated = int(sum(broken.values()))
        curve_y.append(robust / len(x))
        metrics.append(
            Metric(
                "robust_accuracy",
                robust / len(x),
                f"robust accuracy at {at.norm.value} eps={eps:g}, within the constraints",
                wilson_interval(robust, len(x)),
                (robust, len(x)),
                at={"epsilon": eps},
            )
        )
        for c in classes:
            hit = int(((pred == c) & (y == c) & (clean_pred == c)).sum())
            total = int((y == c).sum())
            metrics.append(
                Metric(
                    "recall",
                    hit / total,
                    f"recall of {names[c]} at eps={eps:g}",
                    wilson_interval(hit, total),
                    (hit, total),
                    at={"class": names[c], "epsilon": eps},
                )
            )
        metrics.append(
            Metric(
                "constraint_violations",
                float(violated),
                f"adversarial rows breaking a constraint at eps={eps:g}",
                unit="rows",
                at={"epsilon": eps},
            )
        )
        artifacts.append(
            Artifact(
                f"feature-changes-{eps:g}",
                "table",
                f"What the adversary changed at {at.norm.value} eps={eps:g}",
                {
                    "columns": [
                        "feature",
                        "constraint",
                        "rows changed",
                        "mean change (changed rows)",
                        "largest change",
                    ],
                    "rows": feature_changes(x, result.x_adv, resolved),
                },
                caption="changes in the data's units; every adversarial row is checked against "
                "every constraint",
            )
        )
        sweep.append(
            {
                "epsilon": eps,
                "robust_accuracy": robust / len(x),
                "violations": broken,
                "success_rate": float(result.success.float().mean()),
            }
        )
    eps_axis = [0.0, *sorted(threat.epsilons)]
    artifacts.insert(
        0,
        Artifact(
            "robustness-curve",
            "curve",
            "Accuracy under constrained attack",
            {
                "x_label": f"epsilon ({threat.norm.value})",
                "y_label": "accuracy",
                "series": [{"label": "within the constraints", "x": eps_axis, "y": curve_y}],
                "y_range": [-0.02, 1.02],
            },
        ),
    )
    warnings = []
    total_broken = sum(int(sum(p["violations"].values())) for p in sweep)
    if total_broken:
        warnings.append(
            f"{total_broken} adversarial rows break a constraint: the attack is at fault; "
            "the figures are not those of the declared threat"
        )
    mutable = max(1, int(resolved.mutable.sum()))
    finding = _finding(sweep, correct / len(x), threat.norm, target.bounds, mutable, resolved)
    return Assessment(
        family="constrained-evasion",
        title=f"Evasion within domain constraints ({threat.norm.value})",
        target=target.describe(),
        dataset=data.describe(),
        setting={
            "threat": threat.model_dump(mode="json"),
            "constraints": resolved.describe(),
            "attack": "constrained-pgd",
            "attack_params": attack.get_params() | {"constraints": "(above)"},
            "samples": len(x),
            "seed": seed,
        },
        metrics=metrics,
        artifacts=artifacts,
        warnings=warnings,
        findings=[finding],
        seconds=time.perf_counter() - started,
        details={"sweep": sweep, "class_names": names},
    )


def _finding(
    sweep: list[dict[str, Any]],
    clean: float,
    norm: Norm,
    bounds: tuple[float, float],
    mutable: int,
    rules: FeatureConstraints,
) -> Finding:
    span = bounds[1] - bounds[0]
    reach = span if norm is Norm.LINF else span * math.sqrt(mutable)
    halved = next((p["epsilon"] for p in sweep if p["robust_accuracy"] <= clean / 2), None)
    last = sweep[-1]
    severity = Severity.INFO
    if halved is not None:
        rel = halved / reach
        severity = next((s for limit, s in _SEVERITY if rel <= limit), Severity.LOW)
        summary = (
            f"Rows the adversary could really submit (within the declared constraints: "
            f"{len(rules.describe()['immutable'])} immutable features) halve the accuracy "
            f"({clean:.1%} clean) at {norm.value} epsilon {halved:g}, and leave "
            f"{last['robust_accuracy']:.1%} at {last['epsilon']:g}."
        )
    elif last["robust_accuracy"] < 0.9 * clean:
        severity = Severity.LOW
        summary = (
            f"Within the declared constraints, accuracy falls from {clean:.1%} to "
            f"{last['robust_accuracy']:.1%} at {norm.value} epsilon {last['epsilon']:g}."
        )
    else:
        summary = (
            f"Within the declared constraints, accuracy holds ({clean:.1%} clean, "
            f"{last['robust_accuracy']:.1%} at {norm.value} epsilon {last['epsilon']:g})."
        )
    return Finding(
        id="evasion-constrained",
        title="Model evaded by valid (constraint-respecting) adversarial rows",
        severity=severity,
        techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
        summary=summary,
        evidence={
            "norm": norm.value,
            "clean_accuracy": clean,
            "robust_accuracy": {f"{p['epsilon']:g}": p["robust_accuracy"] for p in sweep},
            "epsilon_halving_accuracy": halved,
            "severity_basis": (
                "the epsilon that halves accuracy, as a share of what the norm can reach over "
                "the mutable features: high at most 15%, medium at most 30%, low beyond or "
                "when accuracy fell by over 10% without halving"
            ),
        },
        mitigations=("AML.M0003", "AML.M0015", "AML.M0010"),
        attacks=("constrained-pgd",),
    )
