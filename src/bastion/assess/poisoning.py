"""Poisoning assessments: how exposed a training pipeline is, and how well defences do.

:func:`assess_poisoning` trains the victim's recipe on clean and on poisoned data and measures
clean accuracy, attack success (ASR) and the poison budget, with the susceptibility curve:
ASR against the number of poisoned samples ("how many bad samples does it take?"). Each
retraining of the curve is a task of :func:`bastion.core.parallel.task_map`, so an engine
that installs a map of its own trains the curve's models as separate tasks.
:func:`assess_data_defences` measures data defences' suspicion scores against the ground
truth of planted poison; :func:`assess_removal` measures a removal defence before and after.
Each returns an :class:`~bastion.core.assessment.Assessment` the reports render.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.assess.stats import wilson_interval
from bastion.attacks.poisoning.base import PoisonedData, PoisoningAttack
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError
from bastion.core.findings import Finding, Severity
from bastion.core.parallel import task_map
from bastion.core.targets import Target, TorchTarget
from bastion.data import Dataset

__all__ = [
    "Fit",
    "PoisoningRun",
    "accuracy",
    "assess_data_defences",
    "assess_poisoning",
    "assess_removal",
    "attack_success",
    "detection_metrics",
    "recipe_fit",
]

#: trains a model on a dataset's training split with a seed and returns it as a target
Fit = Callable[[Dataset, int], Target]

#: the mitigations of poisoning findings: sanitize the data, validate the model, verify the
#: data's provenance
_MITIGATIONS = ("AML.M0007", "AML.M0008", "AML.M0014")


def recipe_fit(
    arch: str | Callable[[Dataset], nn.Module] = "cnn",
    *,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 64,
    weight_decay: float = 1e-4,
) -> Fit:
    """A :data:`Fit` that trains ``arch`` (``"cnn"``, ``"mlp"`` or a factory of modules) with
    bastion's training loop; the seed sets the initial weights, the batch order and any other
    randomness of training, so the same seed gives the same model in any process. It pickles
    (with a top-level factory), so its fits can run as tasks in worker processes."""
    return _RecipeFit(arch, epochs, lr, batch_size, weight_decay)


@dataclass(frozen=True)
class _RecipeFit:
    """The :data:`Fit` :func:`recipe_fit` makes: a class, not a closure, so that it pickles."""

    arch: str | Callable[[Dataset], nn.Module]
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float

    def __call__(self, data: Dataset, seed: int) -> Target:
        from bastion.zoo.models import Recipe, build_module, train_classifier

        arch = self.arch
        recipe = Recipe(
            data.name,
            arch if isinstance(arch, str) else "custom",
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=seed,
        )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            module = build_module(recipe, data) if isinstance(arch, str) else arch(data)
            # inside the fork too: a module that draws from the global generator while it
            # trains (dropout) then trains alike in this process and in a worker
            train_classifier(module, data, recipe)
        return TorchTarget(
            module,
            num_classes=data.num_classes,
            bounds=data.bounds,
            input_shape=data.input_shape,
            name=f"{recipe.arch}@{data.name}",
        )


def accuracy(model: Target, x: np.ndarray, y: np.ndarray) -> float:
    """The share of ``x`` that ``model`` labels as ``y``."""
    if len(x) == 0:
        return float("nan")
    pred = model.predict(torch.from_numpy(np.ascontiguousarray(x))).cpu().numpy()
    return float((pred == y).mean())


def attack_success(
    attack: PoisoningAttack, model: Target, data: Dataset, baseline: Target | None = None
) -> tuple[int, int]:
    """(successes, trials) of ``attack`` against ``model`` on ``data``'s test split.

    Backdoors and targeted attacks: triggered (or source-class) test inputs given the label the
    attack wants. Availability attacks: test inputs the clean ``baseline`` gets right that the
    poisoned model gets wrong.
    """
    wanted = attack.test_inputs(data.x_test, data.y_test, data)
    if wanted is not None:
        x, goal = wanted
        pred = model.predict(torch.from_numpy(np.ascontiguousarray(x))).cpu().numpy()
        return int((pred == goal).sum()), len(goal)
    if baseline is None:
        raise ConfigError("an availability attack is measured against a clean baseline model")
    xt = torch.from_numpy(data.x_test)
    right = baseline.predict(xt).cpu().numpy() == data.y_test
    now = model.predict(xt).cpu().numpy() == data.y_test
    return int((right & ~now).sum()), int(right.sum())


@dataclass
class PoisoningRun:
    """An assessment of one poisoning attack, with what it made."""

    assessment: Assessment
    poisoned: PoisonedData
    clean_model: Target
    poisoned_model: Target


def _rate_metric(name: str, label: str, hits: int, total: int, **at: Any) -> Metric:
    return Metric(
        name,
        hits / total if total else float("nan"),
        label=label,
        ci95=wilson_interval(hits, total),
        count=(hits, total),
        at=dict(at),
    )


def _examples(attack: PoisoningAttack, data: Dataset, poisoned: PoisonedData) -> Artifact | None:
    if data.kind != "image" or data.x_train.ndim != 4:
        return None
    idx = poisoned.indices()[:8]
    originals = [data.x_train[i] if i < len(data.x_train) else poisoned.x[i] for i in idx]
    lo, hi = data.bounds
    scale = (lambda a: (np.asarray(a) - lo) / (hi - lo)) if hi > lo else np.asarray
    return Artifact(
        "poison-examples",
        "images",
        "Poisoned training samples: before (top) and after (bottom)",
        {
            "rows": [
                {
                    "label": "clean",
                    "images": [scale(o) for o in originals],
                    "captions": [f"#{i}: {int(data.y_train[i])}" for i in idx],
                },
                {
                    "label": "poisoned",
                    "images": [scale(poisoned.x[i]) for i in idx],
                    "captions": [f"as {int(poisoned.y[i])}" for i in idx],
                    "good": [False] * len(idx),
                },
            ]
        },
    )


def assess_poisoning(
    attack: PoisoningAttack,
    data: Dataset,
    fit: Fit,
    *,
    counts: Sequence[int] | None = None,
    seed: int = 0,
    clean_model: Target | None = None,
    surrogate: Target | None = None,
    progress: Callable[[str], None] | None = None,
) -> PoisoningRun:
    """Measure ``attack`` against the training recipe ``fit`` on ``data``.

    Trains a clean model (unless ``clean_model`` is given) and one on the poisoned training
    split; reports both clean accuracies, the attack success rate with its 95% interval and
    the budget. With ``counts``, also trains one model per number of poisoned samples for the
    susceptibility curve.

    Args:
        attack: the poisoning attack, with its budget (``rate``).
        data: the dataset; its training split is poisoned, its test split measures.
        fit: the victim's training recipe (:func:`recipe_fit` makes one).
        counts: numbers of poisoned samples for the curve (none: no curve).
        seed: the seed of the poisoning and of training.
        clean_model: the model trained on clean data, if already at hand.
        surrogate: the attacker's model for attacks that need one (default: the clean model).
        progress: called with a short description before each model is trained.
    """
    started = time.perf_counter()
    note = progress or (lambda _: None)
    entry = attack.entry
    if clean_model is None:
        note("training on clean data")
        clean_model = fit(data, seed)
    poisoned = attack.poison(data, seed=seed, surrogate=surrogate or clean_model)
    note(f"training on {poisoned.budget} poisoned samples")
    model = fit(poisoned.dataset(data), seed)

    clean_acc = accuracy(clean_model, data.x_test, data.y_test)
    poisoned_acc = accuracy(model, data.x_test, data.y_test)
    hits, trials = attack_success(attack, model, data, clean_model)
    base_hits, _ = attack_success(attack, clean_model, data, clean_model)
    n_test = len(data.y_test)
    metrics = [
        _rate_metric("attack_success_rate", "attack success rate", hits, trials),
        _rate_metric(
            "clean_accuracy",
            "clean accuracy of the poisoned model",
            round(poisoned_acc * n_test),
            n_test,
        ),
        _rate_metric(
            "baseline_accuracy",
            "clean accuracy of the clean model",
            round(clean_acc * n_test),
            n_test,
        ),
        Metric("accuracy_drop", clean_acc - poisoned_acc, label="accuracy lost to the poison"),
        _rate_metric("baseline_success_rate", "success on the clean model", base_hits, trials),
        Metric("poison_budget", poisoned.budget, label="poisoned samples", unit="samples"),
        Metric("poison_fraction", poisoned.fraction, label="poisoned share of the training set"),
    ]
    artifacts = []
    curve = []
    asked = list(counts or ())

    def retrain() -> Iterator[int]:
        # drawn one at a time by a sequential map, so each note comes just before its model
        # is trained; the count of the poisoned model above needs no retraining
        for i, count in enumerate(asked):
            note(f"susceptibility curve: {count} poisoned samples ({i + 1}/{len(asked)})")
            if count != poisoned.budget:
                yield count

    point = functools.partial(
        _curve_point, attack, data, fit, seed, surrogate or clean_model, clean_model
    )
    fresh = iter(task_map(point, retrain()))
    for count in asked:
        if count == poisoned.budget:
            figures = _measure(attack, model, data, clean_model)
        else:
            figures = next(fresh)
        h, t = figures["hits"], figures["trials"]
        lo, hi = wilson_interval(h, t)
        curve.append(
            {
                "count": int(count),
                "asr": h / t if t else float("nan"),
                "lo": lo,
                "hi": hi,
                "clean_accuracy": figures["clean_accuracy"],
            }
        )
        metrics.append(
            _rate_metric("attack_success_rate", "attack success rate", h, t, poisoned=int(count))
        )
    if curve:
        xs = [c["count"] for c in curve]
        artifacts.append(
            Artifact(
                "susceptibility",
                "curve",
                "Attack success against the number of poisoned samples",
                {
                    "x_label": "poisoned training samples",
                    "y_label": "rate",
                    "y_range": [0, 1],
                    "series": [
                        {
                            "label": "attack success rate",
                            "x": xs,
                            "y": [c["asr"] for c in curve],
                            "lo": [c["lo"] for c in curve],
                            "hi": [c["hi"] for c in curve],
                        },
                        {
                            "label": "clean accuracy",
                            "x": xs,
                            "y": [c["clean_accuracy"] for c in curve],
                        },
                    ],
                },
                caption=f"{entry.name} against this training recipe, seed {seed}",
            )
        )
    examples = _examples(attack, data, poisoned)
    if examples is not None:
        artifacts.append(examples)

    assessment = Assessment(
        family="poisoning",
        title=f"Poisoning: {entry.name}",
        target={"name": getattr(clean_model, "name", "model"), "recipe": "user fit"},
        dataset=data.describe(),
        setting={
            "attack": entry.name,
            "goal": attack.goal,
            "parameters": attack.get_params(),
            "seed": seed,
            "curve_counts": [int(c) for c in counts or ()],
        },
        metrics=metrics,
        artifacts=artifacts,
        findings=[
            _finding(attack, entry.techniques, hits, trials, poisoned, clean_acc, poisoned_acc)
        ],
        seconds=time.perf_counter() - started,
        details={"curve": curve, "poisoned_indices": poisoned.indices().tolist()},
    )
    if base_hits / max(trials, 1) > 0.2:
        assessment.warnings.append(
            f"the clean model already gives the attacker's answer on {base_hits}/{trials} test "
            "inputs: part of the success rate is not the poison's doing"
        )
    return PoisoningRun(assessment, poisoned, clean_model, model)


def _measure(
    attack: PoisoningAttack, model: Target, data: Dataset, clean_model: Target
) -> dict[str, Any]:
    """A curve point's figures: the attack's successes and trials, and clean accuracy."""
    hits, trials = attack_success(attack, model, data, clean_model)
    return {
        "hits": hits,
        "trials": trials,
        "clean_accuracy": accuracy(model, data.x_test, data.y_test),
    }


def _curve_point(
    attack: PoisoningAttack,
    data: Dataset,
    fit: Fit,
    seed: int,
    surrogate: Target,
    clean_model: Target,
    count: int,
) -> dict[str, Any]:
    """One point of the susceptibility curve: ``count`` samples poisoned, the recipe retrained
    on them, the model measured. A task of its own (top-level, so a worker process can run
    it); the figures depend only on the arguments."""
    poisoned = attack.poison(data, count=count, seed=seed, surrogate=surrogate)
    return _measure(attack, fit(poisoned.dataset(data), seed), data, clean_model)


def _finding(
    attack: PoisoningAttack,
    techniques: tuple[str, ...],
    hits: int,
    trials: int,
    poisoned: PoisonedData,
    clean_acc: float,
    poisoned_acc: float,
) -> Finding:
    asr = hits / trials if trials else 0.0
    if attack.goal == "availability":
        severity = Severity.HIGH if asr >= 0.2 else Severity.MEDIUM if asr >= 0.05 else Severity.LOW
    else:
        severity = Severity.HIGH if asr >= 0.8 else Severity.MEDIUM if asr >= 0.3 else Severity.LOW
    what = {
        "backdoor": "plant a backdoor",
        "targeted": "make the model misread one class as another",
        "availability": "degrade the model",
    }[attack.goal]
    name = type(attack).registry_name
    return Finding(
        id=f"poisoning-{name}",
        title=f"{poisoned.budget} poisoned training samples ({poisoned.fraction:.1%}) {what}",
        severity=severity,
        techniques=techniques,
        summary=(
            f"{name} succeeded on {asr:.1%} of the test inputs it aimed at; clean accuracy "
            f"went from {clean_acc:.1%} to {poisoned_acc:.1%}. Screen and verify training data "
            "before training, and test trained models for triggers."
        ),
        evidence={
            "attack_success_rate": asr,
            "poison_budget": poisoned.budget,
            "poison_fraction": poisoned.fraction,
            "clean_accuracy_before": clean_acc,
            "clean_accuracy_after": poisoned_acc,
        },
        mitigations=_MITIGATIONS,
        attacks=(name,),
    )


# ---------------------------------------------------------------------------- data defences
def detection_metrics(scores: np.ndarray, truth: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """Precision, recall and false-positive rate of ``flagged``, ROC AUC of ``scores``, and the
    recall at 1% and 5% false positives, against the planted ``truth``."""
    from sklearn.metrics import roc_auc_score, roc_curve

    truth = truth.astype(bool)
    flagged = flagged.astype(bool)
    tp = int((flagged & truth).sum())
    fp = int((flagged & ~truth).sum())
    pos, neg = int(truth.sum()), int((~truth).sum())
    out: dict[str, Any] = {
        "true_positives": tp,
        "false_positives": fp,
        "positives": pos,
        "negatives": neg,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / pos if pos else float("nan"),
        "fpr": fp / neg if neg else float("nan"),
    }
    if 0 < pos < len(truth):
        out["auc"] = float(roc_auc_score(truth, scores))
        fpr, tpr, _ = roc_curve(truth, scores)
        out["roc"] = (fpr.tolist(), tpr.tolist())
        for at in (0.01, 0.05):
            out[f"recall_at_{round(at * 100)}pct_fpr"] = float(tpr[fpr <= at].max())
    return out


def assess_data_defences(
    results: Mapping[str, tuple[np.ndarray, np.ndarray]],
    poisoned: PoisonedData,
    dataset: dict[str, Any],
    *,
    target: dict[str, Any] | None = None,
) -> Assessment:
    """How well each data defence found ``poisoned``'s planted samples.

    ``results`` maps a defence's name to its per-sample suspicion scores and the samples it
    flagged. Metrics per defence: precision, recall and false-positive rate of the flags, ROC
    AUC of the scores, recall at 1% and 5% false positives; a ROC curve of each.
    """
    metrics: list[Metric] = []
    series = []
    rows = []
    for name, (scores, flagged) in results.items():
        m = detection_metrics(scores, poisoned.poisoned, flagged)
        at = {"defence": name}
        tp, fp = m["true_positives"], m["false_positives"]
        metrics += [
            _rate_metric("recall", f"{name}: poison found", tp, m["positives"], **at),
            _rate_metric("fpr", f"{name}: clean samples flagged", fp, m["negatives"], **at),
            _rate_metric("precision", f"{name}: flagged that are poison", tp, tp + fp, **at),
        ]
        if "auc" in m:
            metrics.append(Metric("roc_auc", m["auc"], label=f"{name}: ROC AUC", at=at))
            metrics.append(
                Metric(
                    "recall_at_5pct_fpr",
                    m["recall_at_5pct_fpr"],
                    label=f"{name}: recall at 5% FPR",
                    at=at,
                )
            )
            fpr, tpr = m["roc"]
            series.append({"label": name, "x": fpr, "y": tpr})
        rows.append(
            [
                name,
                f"{m['precision']:.1%}",
                f"{m['recall']:.1%}",
                f"{m['fpr']:.1%}",
                f"{m.get('auc', float('nan')):.3f}",
                f"{m.get('recall_at_5pct_fpr', float('nan')):.1%}",
            ]
        )
    artifacts = [
        Artifact(
            "defences",
            "table",
            "Data defences against the planted poison",
            {
                "columns": ["defence", "precision", "recall", "FPR", "ROC AUC", "recall @ 5% FPR"],
                "rows": rows,
            },
        )
    ]
    if series:
        artifacts.append(
            Artifact(
                "roc",
                "curve",
                "ROC of each defence's suspicion scores",
                {"x_label": "false-positive rate", "y_label": "recall", "series": series},
            )
        )
    return Assessment(
        family="poisoning",
        title=f"Data defences against {poisoned.attack}",
        target=target or {"name": "training data"},
        dataset=dataset,
        setting={
            "attack": poisoned.attack,
            "poisoned": poisoned.budget,
            "defences": list(results),
        },
        metrics=metrics,
        artifacts=artifacts,
    )


def assess_removal(
    name: str,
    attack: PoisoningAttack,
    data: Dataset,
    before: Target,
    after: Target,
    *,
    baseline: Target | None = None,
    setting: dict[str, Any] | None = None,
) -> Assessment:
    """Attack success and clean accuracy of a backdoored model ``before`` and ``after`` a
    removal defence ``name`` (fine-pruning, retraining on filtered data)."""
    metrics = []
    n = len(data.y_test)
    for when, model in (("before", before), ("after", after)):
        hits, trials = attack_success(attack, model, data, baseline)
        acc = accuracy(model, data.x_test, data.y_test)
        metrics.append(
            _rate_metric("attack_success_rate", f"attack success {when}", hits, trials, stage=when)
        )
        metrics.append(
            _rate_metric("clean_accuracy", f"clean accuracy {when}", round(acc * n), n, stage=when)
        )
    asr_after = metrics[2].value
    acc_drop = metrics[1].value - metrics[3].value
    finding = Finding(
        id=f"removal-{name}",
        title=f"{name}: attack success {metrics[0].value:.1%} -> {asr_after:.1%}",
        severity=Severity.INFO if asr_after < 0.1 else Severity.MEDIUM,
        techniques=attack.entry.techniques,
        summary=(
            f"after {name}, the backdoor works on {asr_after:.1%} of triggered inputs and clean "
            f"accuracy changed by {-acc_drop:+.1%}."
        ),
        evidence={"asr_after": asr_after, "clean_accuracy_drop": acc_drop},
        mitigations=("AML.M0007", "AML.M0008"),
        attacks=(type(attack).registry_name,),
    )
    return Assessment(
        family="poisoning",
        title=f"Backdoor removal: {name}",
        target={"name": getattr(before, "name", "model")},
        dataset=data.describe(),
        setting=dict(setting or {}) | {"defence": name, "attack": type(attack).registry_name},
        metrics=metrics,
        findings=[finding],
    )


def with_training(data: Dataset, x: np.ndarray, y: np.ndarray) -> Dataset:
    """``data`` with another training split."""
    return replace(data, x_train=x, y_train=y)


# ---------------------------------------------------------------------------- scans
def scan_data(
    x: np.ndarray,
    y: np.ndarray,
    dataset: dict[str, Any],
    *,
    model: Target | None = None,
    defences: Sequence[str] | None = None,
    top: int = 8,
    progress: Callable[[str], None] | None = None,
) -> tuple[Assessment, np.ndarray]:
    """Screen training samples ``x``, ``y`` with data defences; the assessment and the mask of
    samples no defence flagged (the filtered copy).

    Without ``defences``: k-NN consistency and confident learning, plus spectral signatures
    and activation clustering when ``model`` (trained on this data) is given.
    """
    from bastion.core.registry import DEFENCES
    from bastion.defences.data.base import DataDefence

    names = list(defences or ["knn-consistency", "confident-learning"])
    if defences is None and model is not None:
        names += ["spectral-signatures", "activation-clustering"]
    flagged_any = np.zeros(len(y), dtype=bool)
    ranks = np.zeros(len(y))
    rows = []
    metrics = []
    for name in names:
        defence = DEFENCES.create(name)
        if not isinstance(defence, DataDefence):
            raise ConfigError(f"{name!r} is not a data defence")
        if defence.needs_model and model is None:
            raise ConfigError(f"{name} reads a model's activations: give a model trained on it")
        if progress is not None:
            progress(name)
        defence.fit(x, y, model=model if defence.needs_model else None)
        flagged_any |= defence.flagged_
        ranks += np.argsort(np.argsort(defence.scores_)) / max(len(y) - 1, 1)
        n = int(defence.flagged_.sum())
        metrics.append(
            Metric(
                "flagged",
                n / len(y),
                label=f"{name}: flagged",
                count=(n, len(y)),
                at={"defence": name},
            )
        )
        rows.append([name, n, f"{n / len(y):.1%}"])
    suspicion = ranks / len(names)
    order = np.argsort(-suspicion, kind="stable")[:top]
    artifacts = [
        Artifact(
            "flags",
            "table",
            "Samples each defence flags",
            {"columns": ["defence", "flagged", "share"], "rows": rows},
        )
    ]
    if x.ndim == 4:
        artifacts.append(
            Artifact(
                "suspects",
                "images",
                "The most suspicious samples",
                {
                    "rows": [
                        {
                            "label": "suspects",
                            "images": [np.asarray(x[i]) for i in order],
                            "captions": [f"#{i}: {int(y[i])}" for i in order],
                            "good": [False] * len(order),
                        }
                    ]
                },
            )
        )
    else:
        artifacts.append(
            Artifact(
                "suspects",
                "table",
                "The most suspicious rows",
                {
                    "columns": [
                        "index",
                        "label",
                        "suspicion",
                        *[f"x{j}" for j in range(x.shape[1])],
                    ],
                    "rows": [
                        [int(i), int(y[i]), round(float(suspicion[i]), 3)]
                        + [round(float(v), 4) for v in x[i]]
                        for i in order
                    ],
                },
            )
        )
    kept = ~flagged_any
    metrics.append(
        Metric("kept", float(kept.mean()), label="samples kept", count=(int(kept.sum()), len(y)))
    )
    assessment = Assessment(
        family="poisoning",
        title="Training data screened for poison and label errors",
        target={"name": getattr(model, "name", "no model")},
        dataset=dataset,
        setting={"defences": names},
        metrics=metrics,
        artifacts=artifacts,
        records=[
            {"index": int(i), "label": int(y[i]), "suspicion": float(suspicion[i])} for i in order
        ],
    )
    if flagged_any.any():
        assessment.findings.append(
            Finding(
                id="data-suspects",
                title=f"{int(flagged_any.sum())} training samples look poisoned or mislabelled",
                severity=Severity.MEDIUM,
                techniques=("AML.T0020", "AML.T0019"),
                summary=(
                    "data defences flagged these samples; inspect them, or train on the filtered "
                    "copy and check its provenance"
                ),
                evidence={"flagged": int(flagged_any.sum()), "samples": len(y)},
                mitigations=("AML.M0007", "AML.M0014"),
            )
        )
    return assessment, kept


def backdoor_scan(
    target: Target,
    x_clean: np.ndarray,
    dataset: dict[str, Any],
    *,
    steps: int = 300,
    seed: int = 0,
) -> Assessment:
    """Neural Cleanse on ``target`` with clean inputs: per-class anomaly indices, a verdict,
    the suspected target class, and the reversed trigger of each flagged class as an image."""
    from bastion.defences.detection.neural_cleanse import NeuralCleanse

    started = time.perf_counter()
    nc = NeuralCleanse(steps=steps, seed=seed).fit(target, x_clean)
    lo, hi = target.bounds
    triggers = (nc.triggers() - lo * nc.masks_[:, None]) / (hi - lo if hi > lo else 1.0)
    metrics = [
        Metric(
            "anomaly_index",
            float(a),
            label=f"class {k}: anomaly index",
            unit="index",
            at={"class": k},
        )
        for k, a in enumerate(nc.anomaly_)
    ] + [Metric("backdoored", float(nc.backdoored_), label="backdoor found", unit="verdict")]
    shown = nc.flagged_ or [int(np.argmax(nc.anomaly_))]
    artifacts = [
        Artifact(
            "classes",
            "table",
            "Reverse-engineered triggers per class",
            {
                "columns": ["class", "mask L1", "anomaly index", "success", "flagged"],
                "rows": [
                    [
                        k,
                        round(float(n), 2),
                        round(float(a), 2),
                        round(float(s), 3),
                        k in nc.flagged_,
                    ]
                    for k, (n, a, s) in enumerate(
                        zip(nc.norms_, nc.anomaly_, nc.success_, strict=True)
                    )
                ],
            },
        ),
        Artifact(
            "triggers",
            "images",
            "Reversed triggers (mask x pattern)"
            + ("" if nc.flagged_ else ": most anomalous class"),
            {
                "rows": [
                    {
                        "label": "trigger",
                        "images": [triggers[k] for k in shown],
                        "captions": [f"class {k}" for k in shown],
                        "good": [k not in nc.flagged_ for k in shown],
                    },
                    {
                        "label": "mask",
                        "images": [nc.masks_[k] for k in shown],
                        "captions": [f"mask {k}" for k in shown],
                    },
                ]
            },
        ),
    ]
    findings = []
    if nc.backdoored_:
        findings.append(
            Finding(
                id="backdoor-neural-cleanse",
                title=f"Backdoor suspected: class {nc.target_class_} has a shortcut trigger",
                severity=Severity.HIGH,
                techniques=("AML.T0018.000", "AML.T0018", "AML.T0020"),
                summary=(
                    f"Neural Cleanse found a trigger for class {nc.target_class_} far smaller "
                    f"than for the others (anomaly index {nc.anomaly_[nc.target_class_]:.2f} > "
                    f"{nc.threshold:g})."
                ),
                evidence={
                    "target_class": nc.target_class_,
                    "flagged": nc.flagged_,
                    "anomaly_index": [float(a) for a in nc.anomaly_],
                },
                mitigations=("AML.M0008", "AML.M0007"),
            )
        )
    return Assessment(
        family="poisoning",
        title="Backdoor scan (Neural Cleanse)",
        target=target.describe(),
        dataset=dataset,
        setting={
            "defence": "neural-cleanse",
            "steps": steps,
            "seed": seed,
            "samples": len(x_clean),
        },
        metrics=metrics,
        artifacts=artifacts,
        findings=findings,
        seconds=time.perf_counter() - started,
        details={
            "backdoored": nc.backdoored_,
            "target_class": nc.target_class_,
            "flagged": nc.flagged_,
            "anomaly_index": [float(a) for a in nc.anomaly_],
            "norms": [float(n) for n in nc.norms_],
        },
    )
