"""The membership assessment: can an adversary tell who was in the training set?

Given a sample of the training data (members) and held-out data (non-members), each
membership attack the target's access allows scores an equal number of each; the report gives
every attack's AUC and its true-positive rate at 1% and 0.1% false positives, with intervals,
and the ROC curves on log axes, where the low false-positive region is visible.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError, DataError
from bastion.core.findings import Finding, Severity
from bastion.core.registry import ATTACKS
from bastion.core.targets.base import Target
from bastion.data import Dataset

__all__ = ["default_membership_attacks", "membership_assessment"]

_MITIGATIONS = ("AML.M0002", "AML.M0004")
_FPRS = (0.01, 0.001)


def default_membership_attacks(target: Target) -> list[str]:
    """The membership attacks a scan runs: the loss threshold and LiRA with scores, the
    label-only attack with labels only."""
    names = [e.name for e in ATTACKS.select(access=target.access, family="membership")]
    preferred: list[str] = ["loss-threshold", "lira", "label-only-membership"]
    return [n for n in preferred if n in names][:2]


def membership_assessment(
    target: Target,
    members: Dataset | tuple[np.ndarray, np.ndarray],
    nonmembers: Dataset | tuple[np.ndarray, np.ndarray],
    *,
    attacks: Sequence[str] | None = None,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    max_candidates: int = 2000,
    seed: int = 0,
    shadow_cache: str | Path | None = None,
) -> Assessment:
    """Run membership attacks on an equal number of ``members`` (training data) and
    ``nonmembers`` (held-out data), up to ``max_candidates`` of each.

    A :class:`Dataset` contributes its test split (a user's ``--members train.npz`` loads as
    one); a pair is ``(x, y)``. Shadow models keep their answers in ``shadow_cache``
    unless an attack's ``cache_dir`` says otherwise.
    """
    started = time.perf_counter()
    xm, ym = _arrays(members)
    xn, yn = _arrays(nonmembers)
    n = min(len(xm), len(xn), max_candidates)
    if n < 10:
        raise DataError(f"membership inference needs at least 10 members and non-members, got {n}")
    rng = np.random.default_rng(seed)
    pick_m, pick_n = rng.permutation(len(xm))[:n], rng.permutation(len(xn))[:n]
    x = torch.from_numpy(np.concatenate([xm[pick_m], xn[pick_n]]))
    y = torch.from_numpy(np.concatenate([ym[pick_m], yn[pick_n]]).astype(np.int64))
    member = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    # the rest of the held-out data is the adversary's own, known non-member data
    rest = np.setdiff1d(np.arange(len(xn)), pick_n)
    x_aux = torch.from_numpy(xn[rest]) if len(rest) >= 10 else None
    y_aux = torch.from_numpy(yn[rest].astype(np.int64)) if len(rest) >= 10 else None

    names = list(attacks) if attacks else default_membership_attacks(target)
    if not names:
        raise ConfigError(f"no membership attack runs against a {target.access.value} target")
    params = {k: dict(v) for k, v in (attack_params or {}).items()}
    metrics: list[Metric] = []
    series: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    notes: list[str] = []
    results = []
    for name in names:
        entry = ATTACKS.get(name)
        if entry.family != "membership":
            raise ConfigError(f"{name} is a {entry.family} attack, not a membership attack")
        entry.require(access=target.access, norm=None, target=target.name)
        settings = {**entry.defaults, **params.get(name, {})}
        if shadow_cache is not None and "cache_dir" in entry.parameters():
            settings.setdefault("cache_dir", str(shadow_cache))
        attack = ATTACKS.create(name, **settings)
        result = attack.run(target, x, y, member, x_aux=x_aux, y_aux=y_aux, seed=seed)
        results.append(result)
        value = result.auc
        metrics.append(
            Metric(
                "auc",
                value,
                f"{name}: area under the ROC curve",
                result.auc_ci,
                unit="",
                at={"attack": name},
            )
        )
        cells = [name, f"{value:.3f}"]
        for fpr in _FPRS:
            hits, total = result.tpr_at(fpr)
            metrics.append(
                Metric(
                    "tpr",
                    hits / total,
                    f"{name}: members caught at {fpr:.1%} false positives",
                    wilson_interval(hits, total),
                    (hits, total),
                    at={"attack": name, "fpr": fpr},
                )
            )
            cells.append(f"{hits / total:.2%} ({hits}/{total})")
        cells += [f"{result.queries:,}", f"{result.seconds:.1f} s"]
        rows.append(cells)
        notes += [f"{name}: {note}" for note in result.notes]
        fpr_c, tpr_c = result.roc()
        keep = (fpr_c > 0) & (tpr_c > 0)
        idx = np.unique(np.linspace(0, keep.sum() - 1, min(200, int(keep.sum()))).astype(int))
        series.append(
            {
                "label": f"{name} (AUC {value:.3f})",
                "x": fpr_c[keep][idx].tolist(),
                "y": tpr_c[keep][idx].tolist(),
            }
        )
    grid = np.logspace(np.log10(1 / n), 0, 30).tolist()
    series.append({"label": "chance", "x": grid, "y": grid, "colour": "#999999"})

    best = max(results, key=lambda r: r.tpr_at(0.01)[0])
    hits, total = best.tpr_at(0.01)
    tpr1 = hits / total
    lift = tpr1 / 0.01
    severity = (
        Severity.HIGH
        if lift >= 10
        else Severity.MEDIUM
        if lift >= 3
        else Severity.LOW
        if best.auc >= 0.55 or lift >= 1.5
        else Severity.INFO
    )
    warnings = []
    if max(r.auc for r in results) < 0.45:
        warnings.append(
            "every attack scores the non-members as more member-like than the members (AUC "
            "below 0.45): the two samples may be mislabelled (are the 'members' really from "
            "the training set?) or drawn from different distributions"
        )
    finding = Finding(
        id="membership",
        title="Training-set membership can be inferred from the model's answers",
        severity=severity,
        techniques=("AML.T0024.000", "AML.T0024"),
        summary=(
            f"{best.attack} identifies {tpr1:.1%} of training records at a 1% false-positive "
            f"rate ({lift:.1f}x chance; AUC {best.auc:.3f}) over {n} members and {n} non-members."
        ),
        evidence={
            "attack": best.attack,
            "auc": round(best.auc, 4),
            "tpr_at_1pct_fpr": round(tpr1, 4),
            "tpr_at_0.1pct_fpr": round(best.tpr_at(0.001)[0] / total, 4),
            "members": n,
            "nonmembers": n,
        },
        mitigations=_MITIGATIONS,
        attacks=tuple(r.attack for r in results),
    )
    artifacts = [
        Artifact(
            "membership-roc",
            "curve",
            "Membership inference ROC (log scale)",
            {
                "x_label": "false-positive rate",
                "y_label": "true-positive rate",
                "series": series,
                "log_x": True,
                "log_y": True,
            },
            caption="On log axes the low false-positive region, where claims about "
            "individuals are confident, is visible; the grey line is chance.",
        ),
        Artifact(
            "membership-table",
            "table",
            "Membership attacks",
            {
                "columns": ["attack", "AUC", "TPR @ 1% FPR", "TPR @ 0.1% FPR", "queries", "time"],
                "rows": rows,
            },
        ),
    ]
    return Assessment(
        family="membership",
        title="Membership inference",
        target=target.describe(),
        dataset={
            "name": "members and non-members",
            "kind": "membership",
            "members": n,
            "nonmembers": n,
        },
        setting={
            "attacks": names,
            "members": n,
            "nonmembers": n,
            "adversary_data": 0 if x_aux is None else len(x_aux),
            "seed": seed,
            "params": {r.attack: r.params for r in results},
            "notes": notes,
        },
        metrics=metrics,
        artifacts=artifacts,
        warnings=warnings,
        findings=[finding],
        seconds=time.perf_counter() - started,
    )


def _arrays(data: Dataset | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Dataset):
        return data.x_test, data.y_test
    x, y = data
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)
