"""The extraction assessment: how well an adversary can copy the target within its budget.

Reconnaissance first (what the endpoint returns), then the extraction attacks its access
allows, within the query budget; the report gives each copy's fidelity and accuracy against
the queries spent, and how often adversarial inputs crafted on the best copy (PGD, offline,
no victim queries) also fool the victim: what the copy is worth to an evasion adversary.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import BastionError, ConfigError, QueryBudgetExceeded
from bastion.core.findings import Finding, Severity
from bastion.core.registry import ATTACKS
from bastion.core.targets.base import Target
from bastion.data import Dataset

__all__ = ["default_extraction_attacks", "extraction_assessment", "measure_transfer"]

_MITIGATIONS = ("AML.M0004", "AML.M0002", "AML.M0019")
# fidelity from which a copy is a working replacement of the victim, and severity
_SEVERITY = ((0.95, Severity.HIGH), (0.85, Severity.MEDIUM), (0.0, Severity.LOW))
_EVAL_SIZE = 500


def default_extraction_attacks(target: Target) -> list[str]:
    """The extraction attacks a scan runs against ``target``: equation-solving when it gives
    scores (cheap, and exact on a linear model), then Knockoff-style stealing."""
    names = [e.name for e in ATTACKS.select(access=target.access, family="extraction")]
    return [n for n in ("equation-solving", "knockoff") if n in names]


def measure_transfer(
    copy: Target,
    victim: Target,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 20,
    seed: int = 0,
) -> tuple[int, int]:
    """Craft PGD (Linf, ``eps``) inputs on ``copy`` and ask ``victim`` about them:
    ``(fooled, attacked)`` over the inputs the victim got right. Spends ``len(x)`` victim
    queries to find those, and one per attacked input."""
    from bastion.attacks.evasion.pgd import PGD

    right = victim.predict(x) == y
    x, y = x[right], y[right]
    if len(x) == 0:
        return 0, 0
    crafted = PGD(steps=steps).run(copy, x, y, eps=eps, norm="linf", seed=seed)
    fooled = int((victim.predict(crafted.x_adv) != y).sum())
    return fooled, len(x)


def extraction_assessment(
    target: Target,
    data: Dataset,
    *,
    attacks: Sequence[str] | None = None,
    max_queries: int = 2000,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    transfer_eps: float | None = None,
    seed: int = 0,
) -> Assessment:
    """Steal ``target`` with each of ``attacks`` (default: :func:`default_extraction_attacks`)
    and assess the copies.

    The adversary's own inputs are ``data``'s training split (or, without one, half of its
    test split); fidelity is measured on (up to 500 of) the rest. ``max_queries`` is each
    attack's budget, and the target's own budget bounds the whole assessment: attacks that
    find it spent are skipped and the assessment says so.
    """
    started = time.perf_counter()
    names = list(attacks) if attacks else default_extraction_attacks(target)
    if not names:
        raise ConfigError(f"no extraction attack runs against a {target.access.value} target")
    for name in names:
        entry = ATTACKS.get(name)
        if entry.family != "extraction":
            raise ConfigError(f"{name} is a {entry.family} attack, not an extraction")
        entry.require(access=target.access, norm=None, target=target.name)
    params = {k: dict(v) for k, v in (attack_params or {}).items()}
    rng = np.random.default_rng(seed)
    if len(data.x_train):
        pool = torch.from_numpy(data.x_train)
        order = rng.permutation(len(data.x_test))[:_EVAL_SIZE]
        x_eval, y_eval = data.x_test[order], data.y_test[order]
    else:
        order = rng.permutation(len(data.x_test))
        half = len(order) // 2
        pool = torch.from_numpy(data.x_test[order[:half]])
        x_eval, y_eval = (
            data.x_test[order[half:][:_EVAL_SIZE]],
            data.y_test[order[half:]][:_EVAL_SIZE],
        )
    xe, ye = torch.from_numpy(x_eval), torch.from_numpy(y_eval)

    warnings: list[str] = []
    limits: list[str] = []
    metrics: list[Metric] = []
    series: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    results = []
    complete = True
    recon_rows: list[list[Any]] = []
    before = target.queries
    if "recon" in ATTACKS:
        try:
            recon = ATTACKS.create("recon", **params.get("recon", {})).run(
                target, xe[:4], seed=seed
            )
            recon_rows = [[k, str(v)] for k, v in recon.as_dict().items() if k != "notes"]
            recon_rows += [["suggests", s] for s in recon.suggests()]
        except QueryBudgetExceeded:
            limits.append("the query budget left nothing for reconnaissance")
    for name in names:
        entry = ATTACKS.get(name)
        attack = ATTACKS.create(name, **{**entry.defaults, **params.get(name, {})})
        budget = params.get(name, {}).get("max_queries", None)
        if name != "equation-solving":
            budget = budget or max_queries
        try:
            result = attack.run(target, pool, x_eval=xe, y_eval=ye, max_queries=budget, seed=seed)
        except QueryBudgetExceeded as exc:
            complete = False
            limits.append(f"{name} did not run: {exc}")
            continue
        results.append(result)
        agreed = result.agreed or (0, 0)
        lo, hi = wilson_interval(*agreed)
        limited = None
        if target.query_budget is not None and result.queries < (budget or result.queries):
            limited = "query budget"
        metrics += [
            Metric(
                "fidelity",
                float(result.fidelity or 0.0),
                f"fidelity of the {name} copy ({result.queries:,} queries)",
                (lo, hi),
                agreed,
                at={"attack": name, "queries": result.queries},
                limited=limited,
            ),
            Metric(
                "copy_accuracy",
                float(result.accuracy or 0.0),
                f"accuracy of the {name} copy",
                wilson_interval(round(float(result.accuracy or 0) * len(ye)), len(ye)),
                at={"attack": name},
            ),
            Metric(
                "queries",
                float(result.queries),
                f"queries spent by {name}",
                unit="queries",
                at={"attack": name},
            ),
        ]
        series.append(
            {
                "label": name,
                "x": [p.queries for p in result.curve],
                "y": [p.fidelity for p in result.curve],
            }
        )
        rows.append(
            [
                name,
                f"{result.queries:,}",
                f"{result.fidelity:.1%}" if result.fidelity is not None else "-",
                f"{result.accuracy:.1%}" if result.accuracy is not None else "-",
                f"{result.seconds:.1f} s",
                "; ".join(result.notes) or "",
            ]
        )
    if not results:
        raise QueryBudgetExceeded(f"{target.name}'s query budget left no extraction able to run")
    best = max(results, key=lambda r: r.fidelity or 0.0)

    transfer: tuple[int, int] | None = None
    if transfer_eps is None:
        transfer_eps = 0.1 * (target.bounds[1] - target.bounds[0])
    try:
        n = min(200, len(xe))
        transfer = measure_transfer(
            best.as_target(), target, xe[:n], ye[:n], transfer_eps, seed=seed
        )
    except QueryBudgetExceeded:
        limits.append("the query budget left nothing to measure transfer")
    except BastionError as exc:
        warnings.append(f"transfer was not measured: {exc}")
    if transfer is not None and transfer[1]:
        rate = transfer[0] / transfer[1]
        metrics.append(
            Metric(
                "transfer_rate",
                rate,
                f"adversarial inputs crafted on the copy that fool the victim "
                f"(PGD, Linf eps={transfer_eps:g})",
                wilson_interval(*transfer),
                transfer,
                at={"attack": best.attack, "epsilon": transfer_eps},
            )
        )
    if (best.fidelity or 0) < 0.5 and target.num_classes == 2:
        warnings.append(
            f"the best copy agrees with the victim on only {best.fidelity:.1%} of inputs, below "
            "what a constant answer reaches on two classes: the extraction failed, which says "
            "little about how hard the target is to copy; give more queries or other data"
        )

    fidelity = best.fidelity or 0.0
    severity = next(s for bound, s in _SEVERITY if fidelity >= bound)
    evidence: dict[str, Any] = {
        "fidelity": round(fidelity, 4),
        "queries": best.queries,
        "attack": best.attack,
        "copy_accuracy": best.accuracy,
    }
    summary = (
        f"{best.attack} copied the model to {fidelity:.1%} agreement with {best.queries:,} queries"
    )
    if transfer is not None and transfer[1]:
        evidence["transfer_rate"] = round(transfer[0] / transfer[1], 4)
        summary += (
            f"; adversarial inputs crafted offline on the copy fooled the victim on "
            f"{transfer[0] / transfer[1]:.1%} of the inputs it got right"
        )
    finding = Finding(
        id="extraction",
        title="The model can be copied from its answers to queries",
        severity=severity,
        techniques=("AML.T0024.002", "AML.T0024"),
        summary=summary + ".",
        evidence=evidence,
        mitigations=_MITIGATIONS,
        attacks=tuple(r.attack for r in results),
    )
    artifacts = [
        Artifact(
            "extraction-curve",
            "curve",
            "Fidelity of the copy against queries",
            {
                "x_label": "queries to the victim",
                "y_label": "agreement with the victim",
                "series": series,
                "log_x": True,
                "y_range": [0, 1.02],
            },
            caption="Each point: the copy after a round of queries, measured on held-out inputs.",
        ),
        Artifact(
            "extraction-table",
            "table",
            "Extraction attacks",
            {
                "columns": ["attack", "queries", "fidelity", "copy accuracy", "time", "notes"],
                "rows": rows,
            },
        ),
    ]
    if recon_rows:
        artifacts.insert(
            0,
            Artifact(
                "recon",
                "table",
                "Reconnaissance of the endpoint",
                {"columns": ["property", "found"], "rows": recon_rows},
            ),
        )
    return Assessment(
        family="extraction",
        title="Model extraction",
        target=target.describe(),
        dataset=data.describe(),
        setting={
            "attacks": names,
            "max_queries": max_queries,
            "evaluation_inputs": len(xe),
            "adversary_inputs": len(pool),
            "seed": seed,
            "params": {r.attack: r.params for r in results},
            "queries_in_all": target.queries - before,
        },
        metrics=metrics,
        artifacts=artifacts,
        warnings=warnings,
        findings=[finding],
        seconds=time.perf_counter() - started,
        complete=complete,
        limits=limits,
        details={
            "curves": {
                r.attack: [
                    {"queries": p.queries, "fidelity": p.fidelity, "accuracy": p.accuracy}
                    for p in r.curve
                ]
                for r in results
            }
        },
    )
