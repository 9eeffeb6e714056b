"""Input-agnostic attacks, measured the way they are used: fitted once, then applied to inputs
never seen while fitting.

- :func:`patch_assessment`: an adversarial patch trained on the training split and stuck, at
  random placements, scales and rotations, on held-out images; its success rate beside that of
  a random patch of the same size (the control), and the patch itself as an image.
- :func:`uap_assessment`: a universal perturbation fitted on the training split at each
  epsilon; its fooling rate on held-out inputs beside that of random noise of the same size.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from bastion.assess.stats import wilson_interval
from bastion.attacks.evasion.patch import AdversarialPatch, PatchEvaluation, place_patch
from bastion.attacks.evasion.universal import UniversalPerturbation
from bastion.core.assessment import Artifact, Assessment, Metric
from bastion.core.errors import ConfigError, DataError
from bastion.core.findings import Finding, Severity
from bastion.core.targets.base import Target
from bastion.core.threat import Norm, Threat
from bastion.data import Dataset

__all__ = ["patch_assessment", "uap_assessment"]

_SHOWN = 6
# a success or fooling rate that beats its control, by how much of the inputs it reaches
_RATE_STEPS = ((0.5, Severity.HIGH), (0.2, Severity.MEDIUM))


def _splits(
    data: Dataset, train_samples: int, test_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """A fitting set and a held-out set: the data's own splits, or halves of its test set."""
    if train_samples < 1 or test_samples < 1:
        raise ConfigError("train_samples and test_samples must be at least 1")
    rng = np.random.default_rng(seed)
    limits = []
    if len(data.x_train):
        x_fit, y_fit, x_out, y_out = data.x_train, data.y_train, data.x_test, data.y_test
    else:
        if len(data.x_test) < 2:
            raise DataError(f"{data.name}: too few inputs to fit on some and measure on others")
        order = rng.permutation(len(data.x_test))
        half = len(order) // 2
        x_fit, y_fit = data.x_test[order[:half]], data.y_test[order[:half]]
        x_out, y_out = data.x_test[order[half:]], data.y_test[order[half:]]
        limits.append(f"{data.name} has no training split: fitted on half its test inputs")
    fit = np.sort(rng.permutation(len(x_fit))[:train_samples])
    out = np.sort(rng.permutation(len(x_out))[:test_samples])
    return x_fit[fit], y_fit[fit], x_out[out], y_out[out], limits


def _unit(a: torch.Tensor, bounds: tuple[float, float]) -> np.ndarray:
    out: np.ndarray = ((a.detach().double().cpu() - bounds[0]) / (bounds[1] - bounds[0])).numpy()
    return out.clip(0, 1)


def _rate_metric(name: str, label: str, count: tuple[int, int], **at: Any) -> Metric:
    hits, trials = count
    return Metric(
        name,
        hits / trials if trials else 0.0,
        label,
        wilson_interval(hits, trials),
        (hits, trials),
        at=dict(at),
    )


def patch_assessment(
    target: Target,
    data: Dataset,
    *,
    size: float = 0.1,
    target_class: int | None = None,
    train_samples: int = 500,
    test_samples: int = 300,
    placements: int = 8,
    seed: int = 0,
    attack_params: Mapping[str, Any] | None = None,
) -> Assessment:
    """Train an :class:`~bastion.attacks.evasion.AdversarialPatch` on ``data``'s training
    split and measure it on held-out images at random placements.

    Args:
        target: a white-box target.
        data: image data.
        size: the patch's share of the image's area (0.1).
        target_class: the class the patch should make the model say (None: untargeted).
        train_samples, test_samples: images to train on and to measure on.
        placements: random placements per held-out image.
        seed: sampling, training and placement seed.
        attack_params: other settings of the patch (steps, lr, scale, rotation).

    Returns: an :class:`~bastion.core.assessment.Assessment` of family ``physical``: the
    patch's success rate and a random patch's (with 95% intervals), clean and patched accuracy,
    the patch's share of the image, the patch and patched examples as images, and a finding.
    """
    started = time.perf_counter()
    if data.kind != "image":
        raise DataError(f"an adversarial patch needs images; {data.name} is {data.kind} data")
    settings = dict(attack_params or {})
    for given in ("size", "target_class"):
        settings.pop(given, None)
    attack = AdversarialPatch(size=size, target_class=target_class, **settings)
    x_fit, y_fit, x_out, y_out, limits = _splits(data, train_samples, test_samples, seed)
    dev = target.device
    xf, yf = torch.from_numpy(x_fit).to(dev), torch.from_numpy(y_fit).to(dev)
    xo, yo = torch.from_numpy(x_out).to(dev), torch.from_numpy(y_out).to(dev)
    attack.fit(target, xf, yf, seed=seed)
    patch = attack.patch_
    trained = attack.evaluate(target, xo, yo, placements=placements, seed=seed + 1)
    lo, hi = target.bounds
    draw = torch.rand(patch.shape, generator=torch.Generator().manual_seed(seed + 2))
    control_patch = (lo + (hi - lo) * draw).to(device=patch.device, dtype=patch.dtype)
    control = attack.evaluate(
        target, xo, yo, placements=placements, seed=seed + 1, patch=control_patch
    )
    names = data.class_names or [str(c) for c in range(target.num_classes)]
    goal = (
        f"makes the model say {names[target_class]!r}"
        if target_class is not None
        else "makes the model err"
    )
    metrics = [
        _rate_metric(
            "patch_success_rate", f"held-out images where the patch {goal}", trained.count
        ),
        _rate_metric(
            "random_patch_success_rate",
            "the same with a random patch of the same size (control)",
            control.count,
        ),
        Metric("clean_accuracy", trained.clean_accuracy, "clean accuracy (held-out)"),
        Metric("patched_accuracy", trained.patched_accuracy, "accuracy with the patch on"),
        Metric("patch_share", trained.share, "the patch's share of the image's area"),
    ]
    artifacts = [_patch_images(attack, patch, control_patch, xo, yo, target, names, seed)]
    finding = _patch_finding(trained, control, goal, placements)
    return Assessment(
        family="physical",
        title="Adversarial patch: one printable patch, placed anywhere",
        target=target.describe(),
        dataset=data.describe(),
        setting={
            "attack": "patch",
            "attack_params": attack.get_params(),
            "train_samples": len(x_fit),
            "test_samples": len(x_out),
            "placements per held-out image": placements,
            "seed": seed,
            "protocol": (
                "trained on the training split under random placement, scale and rotation; "
                "measured on held-out images, each at random placements drawn the same way, "
                "beside a random patch of the same size at the same placements"
            ),
        },
        metrics=metrics,
        artifacts=artifacts,
        findings=[finding],
        seconds=time.perf_counter() - started,
        limits=limits,
        details={"patch": _unit(patch, target.bounds).tolist(), "class_names": names},
    )


def _patch_images(
    attack: AdversarialPatch,
    patch: torch.Tensor,
    control: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    target: Target,
    names: list[str],
    seed: int,
) -> Artifact:
    bounds = target.bounds
    shown = x[:_SHOWN]
    generator = torch.Generator().manual_seed(seed + 3)
    centre, scale, angle = attack._draw(
        len(shown),
        (patch.shape[1], patch.shape[2]),
        (x.shape[2], x.shape[3]),
        generator,
        warp=True,
    )
    dev = x.device
    with target.inference_mode(), torch.no_grad():
        stuck, _ = place_patch(
            shown, patch, centre.to(dev), scale=scale.to(dev), angle=angle.to(dev)
        )
        clean = target.predict(shown)
        pred = target.predict(stuck)

    def good(i: int) -> bool:
        if attack.target_class is not None:
            return int(pred[i]) != attack.target_class or int(y[i]) == attack.target_class
        return int(pred[i]) == int(y[i])

    return Artifact(
        "patch",
        "images",
        "The adversarial patch, a random control, and the patch on held-out images",
        {
            "rows": [
                {
                    "label": "patches",
                    "images": [_unit(patch, bounds), _unit(control, bounds)],
                    "captions": ["the patch", "random (control)"],
                    "good": [False, True],
                },
                {
                    "label": "held-out, clean",
                    "images": [_unit(img, bounds) for img in shown],
                    "captions": [f"clean: {names[int(c)]}" for c in clean],
                    "good": [int(c) == int(t) for c, t in zip(clean, y[:_SHOWN], strict=True)],
                },
                {
                    "label": "held-out, patched",
                    "images": [_unit(img, bounds) for img in stuck],
                    "captions": [f"patched: {names[int(p)]}" for p in pred],
                    "good": [good(i) for i in range(len(shown))],
                },
            ]
        },
        caption="the patch is drawn at its own resolution; below, at a random placement",
    )


def _patch_finding(
    trained: PatchEvaluation, control: PatchEvaluation, goal: str, placements: int
) -> Finding:
    rate, base = trained.success_rate, control.success_rate
    lo, _ = wilson_interval(*trained.count)
    _, control_hi = wilson_interval(*control.count)
    beats_control = lo > control_hi
    severity = Severity.INFO
    if beats_control:
        severity = next((s for limit, s in _RATE_STEPS if rate >= limit), Severity.LOW)
    summary = (
        f"A patch covering {trained.share:.1%} of the image {goal} on {rate:.1%} of held-out "
        f"images at random placements ({base:.1%} for a random patch of the same size)."
    )
    return Finding(
        id="physical-patch",
        title="Model fooled by an adversarial patch wherever it lands",
        severity=severity,
        techniques=("AML.T0043.000", "AML.T0043", "AML.T0041", "AML.T0015"),
        summary=summary,
        evidence={
            "success_rate": rate,
            "success_ci95": list(wilson_interval(*trained.count)),
            "random_patch_success_rate": base,
            "patch_share": trained.share,
            "placements_per_image": placements,
            "clean_accuracy": trained.clean_accuracy,
            "patched_accuracy": trained.patched_accuracy,
            "severity_basis": (
                "high when the patch succeeds on half the placements or more, medium on a fifth, "
                "low below; info unless its interval lies above the random patch's"
            ),
        },
        mitigations=("AML.M0015", "AML.M0003", "AML.M0009"),
        attacks=("patch",),
    )


def uap_assessment(
    target: Target,
    data: Dataset,
    threat: Threat,
    *,
    train_samples: int = 500,
    test_samples: int = 300,
    seed: int = 0,
    attack_params: Mapping[str, Any] | None = None,
) -> Assessment:
    """Fit a :class:`~bastion.attacks.evasion.UniversalPerturbation` on ``data``'s training
    split at each epsilon of ``threat``, and measure its fooling rate (the share of held-out
    inputs whose predicted label changes) beside random noise of the same norm and size.

    Returns: an :class:`~bastion.core.assessment.Assessment` of family ``universal``.
    """
    started = time.perf_counter()
    if threat.norm not in (Norm.LINF, Norm.L2):
        raise ConfigError(
            f"a universal perturbation is measured under linf or l2, not {threat.norm.value}"
        )
    threat.check_bounds(target.bounds)
    attack = UniversalPerturbation(**dict(attack_params or {}))
    x_fit, y_fit, x_out, y_out, limits = _splits(data, train_samples, test_samples, seed)
    dev = target.device
    xf, yf = torch.from_numpy(x_fit).to(dev), torch.from_numpy(y_fit).to(dev)
    xo, yo = torch.from_numpy(x_out).to(dev), torch.from_numpy(y_out).to(dev)
    with target.inference_mode(), torch.no_grad():
        clean = target.predict(xo)
    correct = int((clean == yo).sum())
    metrics = [
        Metric(
            "clean_accuracy",
            correct / len(xo),
            "clean accuracy (held-out)",
            wilson_interval(correct, len(xo)),
            (correct, len(xo)),
        )
    ]
    fooled: list[float] = []
    noise_fooled: list[float] = []
    images: list[np.ndarray] = []
    counts: list[tuple[float, tuple[int, int], tuple[int, int]]] = []
    generator = torch.Generator().manual_seed(seed + 1)
    for eps in sorted(threat.epsilons):
        attack.fit(target, xf, yf, eps=eps, norm=threat.norm, seed=seed)
        v = attack.perturbation_
        count = attack.fooling_rate(target, xo)
        noise = torch.randn(v.shape, generator=generator, dtype=torch.float64)
        noise = noise.sign() * eps if threat.norm is Norm.LINF else noise / noise.norm() * eps
        noise_count = attack.fooling_rate(target, xo, perturbation=noise.to(v.dtype))
        with target.inference_mode(), torch.no_grad():
            after = target.predict((xo + v.to(xo.dtype)).clamp(*target.bounds))
        robust = int((after == yo).sum())
        metrics += [
            _rate_metric(
                "fooling_rate",
                f"fooling rate at {threat.norm.value} eps={eps:g}",
                count,
                epsilon=eps,
            ),
            _rate_metric(
                "noise_fooling_rate",
                f"random noise of the same size at eps={eps:g} (control)",
                noise_count,
                epsilon=eps,
            ),
            Metric(
                "accuracy_under_uap",
                robust / len(xo),
                f"accuracy with the perturbation at eps={eps:g}",
                wilson_interval(robust, len(xo)),
                (robust, len(xo)),
                at={"epsilon": eps},
            ),
        ]
        fooled.append(count[0] / count[1])
        noise_fooled.append(noise_count[0] / noise_count[1])
        counts.append((eps, count, noise_count))
        if len(v.shape) == 3:
            # the perturbation drawn around mid-grey: 0.5 + v / (2 * its largest value)
            peak = float(v.abs().max()) or 1.0
            images.append((0.5 + v.detach().double().cpu() / (2 * peak)).numpy())
    eps_axis = sorted(threat.epsilons)
    artifacts = [
        Artifact(
            "fooling-curve",
            "curve",
            "Fooling rate of one perturbation for every input",
            {
                "x_label": f"epsilon ({threat.norm.value})",
                "y_label": "fooling rate (held-out)",
                "series": [
                    {"label": "universal perturbation", "x": eps_axis, "y": fooled},
                    {"label": "random noise (control)", "x": eps_axis, "y": noise_fooled},
                ],
                "y_range": [-0.02, 1.02],
            },
        )
    ]
    if images:
        artifacts.append(
            Artifact(
                "perturbations",
                "images",
                "The universal perturbations (grey is zero)",
                {
                    "rows": [
                        {
                            "label": "perturbation",
                            "images": images,
                            "captions": [f"eps={e:g}" for e in eps_axis],
                            "good": [False] * len(images),
                        }
                    ]
                },
            )
        )
    last_eps, last, last_noise = counts[-1]
    rate = last[0] / last[1]
    noise_rate = last_noise[0] / last_noise[1]
    lo, _ = wilson_interval(*last)
    _, noise_hi = wilson_interval(*last_noise)
    severity = Severity.INFO
    if lo > noise_hi:
        severity = next((s for limit, s in _RATE_STEPS if rate >= limit), Severity.LOW)
    finding = Finding(
        id="universal-perturbation",
        title="One perturbation fools the model on many inputs at once",
        severity=severity,
        techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
        summary=(
            f"A single {threat.norm.value} perturbation of size {last_eps:g}, fitted on "
            f"{len(x_fit)} inputs, changes the prediction of {rate:.1%} of held-out inputs "
            f"(random noise of the same size: {noise_rate:.1%})."
        ),
        evidence={
            "norm": threat.norm.value,
            "fooling_rate": {f"{e:g}": c[0] / c[1] for e, c, _ in counts},
            "noise_fooling_rate": {f"{e:g}": n[0] / n[1] for e, _, n in counts},
            "severity_basis": (
                "at the largest epsilon: high when it fools half the held-out inputs or more, "
                "medium a fifth, low below; info unless its interval lies above the noise's"
            ),
        },
        mitigations=("AML.M0003", "AML.M0015", "AML.M0010"),
        attacks=("uap",),
    )
    return Assessment(
        family="universal",
        title=f"Universal adversarial perturbation ({threat.norm.value})",
        target=target.describe(),
        dataset=data.describe(),
        setting={
            "threat": threat.model_dump(mode="json"),
            "attack": "uap",
            "attack_params": attack.get_params(),
            "train_samples": len(x_fit),
            "test_samples": len(x_out),
            "seed": seed,
            "protocol": (
                "fitted on the training split; the fooling rate is the share of held-out inputs "
                "whose predicted label changes, beside random noise of the same norm and size"
            ),
        },
        metrics=metrics,
        artifacts=artifacts,
        findings=[finding],
        seconds=time.perf_counter() - started,
        limits=limits,
        details={
            "sweep": [
                {"epsilon": e, "fooling": list(c), "noise_fooling": list(n)} for e, c, n in counts
            ]
        },
    )
