"""The inversion assessment: what can an adversary reconstruct from the model's answers?

For an image classifier, MI-Face reconstructs one representative input per class; the report
shows each reconstruction beside the class's mean image (the mean of the data the assessor
holds, which the adversary never sees) and measures how recognizable they are: the share of
reconstructions whose most similar class mean (Pearson correlation of the pixels) is their
own class's, chance being one in the number of classes. For a tabular model, attribute
inference recovers a sensitive column (``feature``) of training records from their other
columns and labels; the report compares its accuracy with a baseline that never asks the
model, on members and, where there are some, on non-members.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
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

__all__ = ["class_match", "default_inversion_attacks", "inversion_assessment"]

_TECHNIQUES = ("AML.T0024.001", "AML.T0024")
_MITIGATIONS = ("AML.M0002", "AML.M0004", "AID-H-005.005")
_MAX_RECORDS = 1000


def default_inversion_attacks(target: Target, kind: str) -> list[str]:
    """MI-Face for images (score-based access at least); attribute inference for tables."""
    names = [e.name for e in ATTACKS.select(access=target.access, family="inversion")]
    wanted = "mi-face" if kind == "image" else "attribute-inference"
    return [wanted] if wanted in names else []


def class_match(images: torch.Tensor | np.ndarray, means: np.ndarray) -> np.ndarray:
    """(K, M) Pearson correlation of each image with each class mean, over the pixels."""
    a = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    b = np.asarray(means, dtype=np.float64).reshape(len(means), -1)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    na = np.linalg.norm(a, axis=1, keepdims=True)
    nb = np.linalg.norm(b, axis=1)[None, :]
    return (a @ b.T) / np.maximum(na * nb, 1e-12)  # type: ignore[no-any-return]


def inversion_assessment(
    target: Target,
    data: Dataset,
    *,
    members: Dataset | tuple[np.ndarray, np.ndarray] | None = None,
    attacks: Sequence[str] | None = None,
    attack_params: Mapping[str, Mapping[str, Any]] | None = None,
    classes: Sequence[int] | None = None,
    seed: int = 0,
) -> Assessment:
    """Run the inversion attacks against ``target``.

    Images: MI-Face on ``classes`` (default every class), compared with the class means of
    ``data`` (its training split, else its test split). Tables: attribute inference of the
    column named by ``attack_params["attribute-inference"]["feature"]`` on ``members`` (a
    sample of the training data; without it, ``data``'s training split), and on ``data``'s
    test split as non-members; the adversary's prior comes from the test split's other half.
    """
    started = time.perf_counter()
    names = list(attacks) if attacks else default_inversion_attacks(target, data.kind)
    if not names:
        raise ConfigError(
            f"no inversion attack runs against a {target.access.value} target on {data.kind} data"
        )
    params = {k: dict(v) for k, v in (attack_params or {}).items()}
    parts: list[Assessment] = []
    for name in names:
        entry = ATTACKS.get(name)
        if entry.family != "inversion":
            raise ConfigError(f"{name} is a {entry.family} attack, not an inversion attack")
        if data.kind not in entry.data_kinds:
            raise ConfigError(
                f"{name} works on {', '.join(entry.data_kinds)} data, not {data.kind}"
            )
        entry.require(access=target.access, norm=None, target=target.name)
        settings = {**entry.defaults, **params.get(name, {})}
        if name == "mi-face":
            parts.append(_faces(target, data, settings, classes, seed))
        else:
            parts.append(_attributes(target, data, members, name, settings, seed))
    first = parts[0]
    for other in parts[1:]:
        first.metrics += other.metrics
        first.artifacts += other.artifacts
        first.findings += other.findings
        first.warnings += other.warnings
        first.setting.update(other.setting)
    first.setting["attacks"] = names
    first.seconds = time.perf_counter() - started
    return first


def _faces(
    target: Target,
    data: Dataset,
    settings: dict[str, Any],
    classes: Sequence[int] | None,
    seed: int,
) -> Assessment:
    x_ref, y_ref = (data.x_train, data.y_train) if len(data.x_train) else (data.x_test, data.y_test)
    wanted = np.asarray(
        list(classes) if classes is not None else range(target.num_classes), dtype=np.int64
    )
    present = np.unique(y_ref)
    if not np.isin(wanted, present).all():
        raise DataError("every class reconstructed needs examples in the data to compare with")
    means = np.stack([x_ref[y_ref == c].mean(axis=0) for c in present])
    result = ATTACKS.create("mi-face", **settings).run(target, wanted, seed=seed)
    sim = class_match(result.images.numpy(), means)
    nearest = present[sim.argmax(axis=1)]
    hit = nearest == result.classes
    hits, k = int(hit.sum()), len(hit)
    chance = 1 / len(present)
    own = sim[np.arange(k), np.searchsorted(present, result.classes)]
    lo, hi = target.bounds

    def shown(img: np.ndarray, stretch: bool) -> np.ndarray:
        img = (img - lo) / (hi - lo)
        if stretch:  # a reconstruction can sit in a narrow band of grey: show its contrast
            span = float(img.max() - img.min())
            img = (img - img.min()) / span if span > 1e-9 else img
        return np.clip(img, 0, 1)  # type: ignore[no-any-return]

    labels = data.class_names or [str(c) for c in range(target.num_classes)]
    rows = [
        {
            "label": "reconstruction",
            "images": [shown(im, True) for im in result.images.numpy()],
            "captions": [
                f"{labels[c]}: r={r:.2f}" for c, r in zip(result.classes, own, strict=True)
            ],
            "good": [not bool(h) for h in hit],
        },
        {
            "label": "class mean",
            "images": [shown(means[np.searchsorted(present, c)], False) for c in result.classes],
            "captions": [f"mean {labels[c]}" for c in result.classes],
            "good": [True] * k,
        },
    ]
    rate = hits / k
    severity = (
        Severity.HIGH
        if rate >= 0.8
        else Severity.MEDIUM
        if rate >= 0.5
        else Severity.LOW
        if rate > chance + 0.1
        else Severity.INFO
    )
    metrics = [
        Metric(
            "recognizable",
            rate,
            "reconstructions most like their own class's mean",
            wilson_interval(hits, k),
            (hits, k),
            at={"attack": "mi-face", "chance": chance},
        ),
        Metric(
            "target_confidence",
            float(result.confidence.mean()),
            "the target's mean confidence in each reconstruction's class",
            at={"attack": "mi-face"},
        ),
        Metric(
            "queries",
            float(result.queries),
            "queries spent",
            unit="queries",
            at={"attack": "mi-face"},
        ),
    ]
    finding = Finding(
        id="inversion-faces",
        title="Class representatives can be reconstructed from the model's answers",
        severity=severity,
        techniques=_TECHNIQUES,
        summary=(
            f"MI-Face ({result.gradients} gradients, {result.queries:,} queries) reconstructed "
            f"{k} classes; {hits} of {k} look most like their own class's mean image (chance "
            f"{chance:.0%})."
        ),
        evidence={
            "recognizable": round(rate, 4),
            "classes": k,
            "gradients": result.gradients,
            "queries": result.queries,
            "mean_confidence": round(float(result.confidence.mean()), 4),
        },
        mitigations=_MITIGATIONS,
        attacks=("mi-face",),
    )
    table = [
        [labels[c], labels[n], f"{r:.3f}", f"{p:.3f}", int(s)]
        for c, n, r, p, s in zip(
            result.classes, nearest, own, result.confidence, result.steps, strict=True
        )
    ]
    return Assessment(
        family="inversion",
        title="Model inversion",
        target=target.describe(),
        dataset={"name": data.name, "kind": data.kind, "reference_images": len(x_ref)},
        setting={
            "classes": result.classes.tolist(),
            "gradients": result.gradients,
            "seed": seed,
            "params": {"mi-face": result.params},
            "notes": result.notes,
        },
        metrics=metrics,
        artifacts=[
            Artifact(
                "inversion-images",
                "images",
                "MI-Face reconstructions and the class means",
                {"rows": rows},
                caption="Top: each class as the model sees it, reconstructed from its answers "
                "(contrast stretched; red where it looks more like another class's mean). "
                "Bottom: the mean of that class's images, which the adversary never saw.",
            ),
            Artifact(
                "inversion-table",
                "table",
                "Reconstructions",
                {
                    "columns": ["class", "most like", "correlation", "confidence", "steps"],
                    "rows": table,
                },
            ),
        ],
        findings=[finding],
    )


def _arrays(data: Dataset | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(data, Dataset):
        return data.x_test, data.y_test
    x, y = data
    return np.asarray(x, dtype=np.float32), np.asarray(y, dtype=np.int64)


def _attributes(
    target: Target,
    data: Dataset,
    members: Dataset | tuple[np.ndarray, np.ndarray] | None,
    name: str,
    settings: dict[str, Any],
    seed: int,
) -> Assessment:
    attack = ATTACKS.create(name, **settings)
    xm, ym = _arrays(members) if members is not None else (data.x_train, data.y_train)
    xt, yt = data.x_test, data.y_test
    if len(xm) == 0 or len(xt) < 4:
        raise DataError("attribute inference needs training records and held-out rows")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(xt))
    # half of the held-out rows are the adversary's own (its prior); the rest non-members
    aux, rest = order[: len(xt) // 2], order[len(xt) // 2 :]
    pick = rng.permutation(len(xm))[:_MAX_RECORDS]
    groups = {
        "members": (xm[pick], ym[pick]),
        "non-members": (xt[rest][:_MAX_RECORDS], yt[rest][:_MAX_RECORDS]),
    }
    x_aux = torch.from_numpy(np.asarray(xt[aux], dtype=np.float32).reshape(len(aux), -1))
    metrics: list[Metric] = []
    rows: list[list[Any]] = []
    found: dict[str, Any] = {}
    queries = 0
    for group, (x, y) in groups.items():
        xx = torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(len(x), -1))
        r = attack.run(
            target, xx, torch.from_numpy(np.asarray(y, dtype=np.int64)), x_aux=x_aux, seed=seed
        )
        queries += r.queries
        n = len(r.truth)
        metrics += [
            Metric(
                "attribute_accuracy",
                r.accuracy,
                f"{group}: sensitive column recovered",
                wilson_interval(r.correct, n),
                (r.correct, n),
                at={"attack": name, "records": group, "feature": r.feature},
            ),
            Metric(
                "baseline_accuracy",
                r.baseline_accuracy,
                f"{group}: the prior's guess, without the model",
                wilson_interval(r.baseline_correct, n),
                (r.baseline_correct, n),
                at={"attack": name, "records": group, "feature": r.feature},
            ),
        ]
        rows.append(
            [
                group,
                n,
                f"{r.accuracy:.1%}",
                f"{r.baseline_accuracy:.1%}",
                f"{r.accuracy - r.baseline_accuracy:+.1%}",
                f"{r.queries:,}",
            ]
        )
        found[group] = r
    mem = found["members"]
    gain = mem.accuracy - mem.baseline_accuracy
    lo, _ = wilson_interval(mem.correct, len(mem.truth))
    severity = (
        Severity.HIGH
        if gain >= 0.2 and lo > mem.baseline_accuracy
        else Severity.MEDIUM
        if gain >= 0.1 and lo > mem.baseline_accuracy
        else Severity.LOW
        if gain > 0.02
        else Severity.INFO
    )
    column = (
        (data.feature_names or [])[mem.feature]
        if data.feature_names and mem.feature < len(data.feature_names)
        else f"column {mem.feature}"
    )
    finding = Finding(
        id="inversion-attribute",
        title="A sensitive attribute can be inferred from the model's answers",
        severity=severity,
        techniques=_TECHNIQUES,
        summary=(
            f"Attribute inference recovers {column} ({len(mem.values)} values) for "
            f"{mem.accuracy:.1%} of training records, against {mem.baseline_accuracy:.1%} "
            "for a guess that ignores the model."
        ),
        evidence={
            "feature": mem.feature,
            "values": len(mem.values),
            "members_accuracy": round(mem.accuracy, 4),
            "baseline_accuracy": round(mem.baseline_accuracy, 4),
            "nonmembers_accuracy": round(found["non-members"].accuracy, 4),
        },
        mitigations=_MITIGATIONS,
        attacks=(name,),
    )
    return Assessment(
        family="inversion",
        title="Model inversion",
        target=target.describe(),
        dataset={
            "name": data.name,
            "kind": data.kind,
            "members": len(groups["members"][0]),
            "nonmembers": len(groups["non-members"][0]),
            "adversary_rows": len(aux),
        },
        setting={
            "feature": mem.feature,
            "column": column,
            "values": mem.values.tolist(),
            "seed": seed,
            "params": {name: mem.params},
            "queries": queries,
        },
        metrics=metrics,
        artifacts=[
            Artifact(
                "attribute-table",
                "table",
                f"Attribute inference of {column}",
                {
                    "columns": ["records", "rows", "attack", "baseline", "gain", "queries"],
                    "rows": rows,
                },
                caption="The baseline guesses the value most common in the adversary's own "
                "rows; a gain on members beyond the gain on non-members is what the model "
                "remembers of its training records.",
            )
        ],
        findings=[finding],
    )
