"""The certification assessment: how much of the data a smoothed classifier certifies, and how far.

Randomized smoothing (Cohen, Rosenfeld, Kolter 2019, arXiv:1902.02918) certifies each input
separately: with probability at least ``1 - alpha`` over the noise, the smoothed classifier's
answer holds within the certified L2 radius. The assessment certifies a sample of labelled
inputs and reports the certified accuracy (right and certified at least that far) at each
radius, with intervals, as a table and as a curve against the radius; the accuracy of the
smoothed classifier's own prediction (abstentions count as wrong); and how often it abstains.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError, DataError
from bastion.defences.certify.smoothing import (
    ABSTAIN,
    SmoothedClassifier,
    certified_accuracy,
    max_certifiable_radius,
    predict_from_counts,
)

__all__ = ["DEFAULT_RADII", "assess_certification"]

#: the radii (input units) a certification reports by default
DEFAULT_RADII = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5)


def assess_certification(
    smoothed: SmoothedClassifier,
    x: torch.Tensor | np.ndarray,
    y: torch.Tensor | np.ndarray,
    *,
    n0: int = 100,
    n: int = 1000,
    alpha: float = 0.001,
    radii: Sequence[float] = DEFAULT_RADII,
    batch_size: int | None = None,
    seed: int = 0,
) -> Assessment:
    """Certify ``x`` with ``smoothed`` (Cohen's CERTIFY: ``n0`` samples choose the class,
    ``n`` bound its probability at level ``1 - alpha``) and report against the labels ``y``.

    Metrics: ``certified_accuracy`` at each radius of ``radii`` (``at={"radius": r}``, in
    input units), ``clean_accuracy`` of the smoothed classifier (Cohen's PREDICT on the same
    ``n`` samples; an abstention counts as wrong), ``abstention_rate`` of the certificate
    (``at={"procedure": "certify"}``) and of PREDICT (``"predict"``), and
    ``average_certified_radius`` (the mean radius, counting 0 for wrong or abstained
    inputs). Artifacts: the curve "certified accuracy against L2 radius" and its table.
    Records: one per input. The base model answers ``len(x) * (n0 + n)`` queries.
    """
    if not isinstance(smoothed, SmoothedClassifier):
        raise ConfigError(
            f"a certification needs a SmoothedClassifier, got {type(smoothed).__name__}"
        )
    grid = np.asarray(list(radii), dtype=np.float64)
    if grid.size == 0 or not np.all(np.isfinite(grid)) or (grid < 0).any():
        raise ConfigError(f"radii must be finite and at least 0, got {list(radii)}")
    grid = np.unique(grid)
    xt = x if isinstance(x, torch.Tensor) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    yt = (y if isinstance(y, torch.Tensor) else torch.from_numpy(np.asarray(y))).long().cpu()
    if len(xt) == 0:
        raise DataError("nothing to certify: no inputs")
    smoothed.check_inputs(xt, yt)
    started = time.perf_counter()
    cert = smoothed.certify(xt, n0=n0, n=n, alpha=alpha, batch_size=batch_size, seed=seed)
    total = len(xt)
    correct = cert.correct(yt).numpy()
    radius = cert.radius.numpy()
    predicted = predict_from_counts(cert.counts, alpha)
    ceiling = max_certifiable_radius(smoothed.sigma, n, alpha) * (
        smoothed.bounds[1] - smoothed.bounds[0]
    )
    beyond = [float(r) for r in grid if r > ceiling]
    ceiling_note = (
        f"with n={n} and alpha={alpha}, no input can be certified beyond radius {ceiling:.3g} "
        f"(sigma * PhiInv(alpha ** (1 / n)) in input units)"
    )

    metrics: list[Metric] = []
    rows: list[list[str]] = []
    accuracy = certified_accuracy(radius, correct, grid)
    for r, acc in zip(grid.tolist(), accuracy.tolist(), strict=True):
        hits = round(acc * total)
        ci = wilson_interval(hits, total)
        metrics.append(
            Metric(
                "certified_accuracy",
                acc,
                f"certified accuracy at L2 radius {r:g}",
                ci,
                (hits, total),
                at={"radius": r},
                limited=ceiling_note if r > ceiling else None,
            )
        )
        rows.append([f"{r:g}", f"{acc:.1%}", f"{ci[0]:.1%}-{ci[1]:.1%}", f"{hits}/{total}"])
    right = int((predicted == yt).sum())
    metrics.append(
        Metric(
            "clean_accuracy",
            right / total,
            "accuracy of the smoothed classifier (abstentions count as wrong)",
            wilson_interval(right, total),
            (right, total),
        )
    )
    for procedure, abstained in (
        ("certify", int(cert.abstained.sum())),
        ("predict", int((predicted == ABSTAIN).sum())),
    ):
        metrics.append(
            Metric(
                "abstention_rate",
                abstained / total,
                f"inputs the smoothed classifier abstains on ({procedure})",
                wilson_interval(abstained, total),
                (abstained, total),
                at={"procedure": procedure},
            )
        )
    metrics.append(
        Metric(
            "average_certified_radius",
            float((radius * correct).mean()),
            "average certified radius (0 for wrong or abstained inputs)",
            unit="L2",
        )
    )

    fine = np.unique(np.concatenate([grid, np.linspace(0.0, max(ceiling, grid.max()), 101)]))
    curve = certified_accuracy(radius, correct, fine)
    counts = np.round(curve * total).astype(int)
    bands = [wilson_interval(int(c), total) for c in counts]
    artifacts = [
        Artifact(
            "certified-accuracy",
            "curve",
            "Certified accuracy against L2 radius",
            {
                "x_label": "L2 radius",
                "y_label": "certified accuracy",
                "series": [
                    {
                        "label": f"sigma={smoothed.sigma:g}, n={n}, alpha={alpha:g}",
                        "x": fine.tolist(),
                        "y": curve.tolist(),
                        "lo": [b[0] for b in bands],
                        "hi": [b[1] for b in bands],
                    }
                ],
                "y_range": [0.0, 1.0],
            },
            caption=(
                "The share of inputs classified correctly with a certificate at least this "
                f"large; each certificate holds with probability at least {1 - alpha:g}. "
                f"Beyond {ceiling:.3g} nothing can be certified with n={n}."
            ),
        ),
        Artifact(
            "certified-accuracy-table",
            "table",
            "Certified accuracy",
            {"columns": ["L2 radius", "certified accuracy", "95% CI", "certified"], "rows": rows},
        ),
    ]

    warnings: list[str] = []
    limits: list[str] = []
    if beyond:
        limits.append(ceiling_note)
        warnings.append(
            f"{ceiling_note}: the certified accuracy at radius "
            f"{', '.join(f'{r:g}' for r in beyond)} is 0 by construction; raise n to certify "
            "farther"
        )
    abstain_rate = float(cert.abstained.float().mean())
    if abstain_rate > 0.5:
        warnings.append(
            f"the certificate abstains on {abstain_rate:.0%} of the inputs: the base model is "
            f"rarely right under noise of sigma={smoothed.sigma:g}; train it under that noise "
            "(the smoothing trainer) or lower sigma"
        )
    records = [
        {
            "index": i,
            "label": int(yt[i]),
            "prediction": int(cert.prediction[i]),
            "radius": float(radius[i]),
            "pa_lower": float(cert.pa_lower[i]),
            "correct": bool(correct[i]),
            "predict": int(predicted[i]),
        }
        for i in range(total)
    ]
    return Assessment(
        family="certification",
        title="Certified L2 robustness (randomized smoothing)",
        target=smoothed.describe(),
        dataset={"name": "certified inputs", "kind": "certification", "samples": total},
        setting={
            "method": "randomized smoothing (Cohen et al. 2019)",
            "sigma": smoothed.sigma,
            "noise_std": smoothed.scale,
            "n0": n0,
            "n": n,
            "alpha": alpha,
            "radii": grid.tolist(),
            "max_certifiable_radius": ceiling,
            "samples": total,
            "base_queries": cert.queries,
            "seed": seed,
        },
        metrics=metrics,
        records=records,
        artifacts=artifacts,
        warnings=warnings,
        seconds=time.perf_counter() - started,
        limits=limits,
        details={"radius_grid": fine.tolist(), "certified_accuracy": curve.tolist()},
    )
