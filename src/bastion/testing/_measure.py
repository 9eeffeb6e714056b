"""``robustness()``: one robustness figure of a model, measured for a test."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from bastion.core.errors import ConfigError, DataError
from bastion.testing._result import Figure, RobustnessResult

if TYPE_CHECKING:
    from bastion.core.targets.base import Target
    from bastion.data import Dataset

__all__ = ["robustness"]

#: the keyword arguments that describe how to load a model or data given as a spec
_LOAD_OPTIONS = frozenset(
    {
        "arch",
        "trust",
        "device",
        "output_kind",
        "query_budget",
        "headers",
        "label_column",
        "bounds",
        "num_classes",
    }
)


def robustness(
    model: Any,
    data: Any = None,
    eps: float = 0.1,
    *,
    norm: str = "linf",
    attacks: Sequence[str] | None = None,
    samples: int = 200,
    seed: int = 0,
    preset: str | None = None,
    attack_params: dict[str, dict[str, Any]] | None = None,
    **load_options: Any,
) -> RobustnessResult:
    """The robust accuracy of ``model`` on ``data`` under perturbations of size ``eps``: a
    figure to assert on in a test suite.

    It runs bastion's scan (:func:`bastion.assess.scan`; with ``preset``, the robustness
    evaluation :func:`bastion.evaluate`) at one epsilon, on ``samples`` test inputs drawn
    with ``seed``, so the same call gives the same figure.

    Args:
        model: a bastion ``Target``, a PyTorch ``nn.Module`` (logits out), a fitted
            scikit-learn classifier, or a spec as ``bastion scan --target`` takes it (a demo
            name such as ``"digits-cnn"``, a model file, an http(s) URL).
        data: a ``bastion.data.Dataset``, a spec as ``--data`` takes it (``"digits"``, a
            ``.npz`` or ``.csv``), or test inputs and labels ``(x, y)`` (arrays or tensors,
            inputs within the model's bounds). None only for a demo, which brings its data.
        eps: the perturbation size, in the units of the inputs.
        norm: ``linf`` (default), ``l2``, ``l1`` or ``l0``.
        attacks: the attacks to run (default: every one the model's access allows, as
            ``bastion scan`` runs them; with ``preset``, the preset's chain).
        samples: the test inputs to attack (fewer when the data has fewer).
        seed: the seed of the sample and of the attacks.
        preset: ``quick``, ``standard`` or ``thorough``: the robustness evaluation instead of
            the plain scan.
        attack_params: parameters per attack, ``{"pgd": {"steps": 10}}``.
        load_options: how to load a model or data given as a spec, as the command line's
            flags: ``arch``, ``trust``, ``device``, ``output_kind``, ``query_budget``,
            ``headers``, ``label_column``, ``bounds`` (of inputs given as arrays too),
            ``num_classes``.

    Returns:
        a :class:`RobustnessResult`: ``robust_accuracy`` and ``clean_accuracy`` as floats
        that carry their 95% interval and count, ``interval``, ``samples``, ``assessment``.

    Example::

        from bastion.testing import robustness

        def test_digits_model_holds_at_eps_0_05():
            r = robustness("digits-cnn", eps=0.05, attacks=["fgsm"], samples=100)
            assert r.robust_accuracy >= 0.5
    """
    unknown = sorted(set(load_options) - _LOAD_OPTIONS)
    if unknown:
        raise ConfigError(
            f"robustness() got unknown options {', '.join(unknown)}; it takes "
            f"{', '.join(sorted(_LOAD_OPTIONS))} besides its own"
        )
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not math.isfinite(eps):
        raise ConfigError(f"eps must be one positive number, got {eps!r}")
    if samples < 1:
        raise ConfigError(f"samples must be at least 1, got {samples}")
    if isinstance(attacks, str):
        attacks = [a.strip() for a in attacks.split(",") if a.strip()]

    from bastion.assess.scan import scan
    from bastion.core.threat import Norm, Threat

    target, dataset = _target_and_data(model, data, load_options)
    threat = Threat(norm=Norm.parse(norm), epsilons=(float(eps),), knowledge=target.access)
    if preset is not None:
        from bastion.assess.evaluate import evaluate

        result = evaluate(
            target,
            dataset,
            threat,
            preset=preset,
            samples=samples,
            seed=seed,
            attacks=attacks,
            attack_params=attack_params,
        )
    else:
        result = scan(
            target,
            dataset,
            threat,
            samples=samples,
            seed=seed,
            attacks=attacks,
            attack_params=attack_params,
        )
    point = result.sweep[0]
    setting = f"{threat.norm.value} eps={point.epsilon:g}"
    robust = Figure(
        point.robust_accuracy,
        name="robust accuracy",
        interval=point.interval,
        count=(point.robust, point.total),
        setting=setting + (", limited by the query budget" if point.limited else ""),
    )
    clean = Figure(
        result.clean_accuracy,
        name="clean accuracy",
        interval=_wilson(result.clean_correct, result.samples),
        count=(result.clean_correct, result.samples),
    )
    return RobustnessResult(
        robust_accuracy=robust,
        clean_accuracy=clean,
        interval=point.interval,
        samples=result.samples,
        eps=float(eps),
        norm=threat.norm.value,
        attacks=tuple(result.attacks),
        complete=result.complete,
        warnings=tuple(result.warnings),
        assessment=result.to_assessment(),
    )


def _wilson(hits: int, total: int) -> tuple[float, float]:
    from bastion.assess.stats import wilson_interval

    return wilson_interval(hits, total)


def _target_and_data(model: Any, data: Any, options: dict[str, Any]) -> tuple[Target, Dataset]:
    """The target and the data, from whatever a test gave."""
    from bastion.core.targets.base import Target

    if isinstance(model, str):
        from bastion.assess.specs import load_target_and_data

        if data is None or isinstance(data, str):
            return load_target_and_data(model, data, **options)
        dataset = _dataset(data, None, options)
        return _from_spec(model, dataset, options), dataset
    if data is None:
        raise DataError(
            "robustness() needs data for a model of your own: a Dataset, a spec or (x, y)"
        )
    if isinstance(model, Target):
        dataset = _dataset(data, model, options)
        return model, dataset
    dataset = _dataset(data, None, options)
    return _wrap(model, dataset, options), dataset


def _dataset(data: Any, target: Target | None, options: dict[str, Any]) -> Dataset:
    import numpy as np

    from bastion.data import Dataset, load_data

    if isinstance(data, Dataset):
        return data
    if isinstance(data, str):
        return load_data(
            data,
            label_column=options.get("label_column", "label"),
            bounds=options.get("bounds"),
            num_classes=options.get("num_classes") or (target.num_classes if target else None),
        )
    if isinstance(data, (tuple, list)) and len(data) == 2:
        x, y = (_array(v) for v in data)
        x = x.astype(np.float32)
        if not np.issubdtype(y.dtype, np.integer) and not np.all(y == np.round(y)):
            raise DataError("robustness(): the labels y must be whole class indices")
        y = y.astype(np.int64)
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y):
            raise DataError(
                f"robustness(): (x, y) must be inputs of shape (n, ...) and n labels; got "
                f"{tuple(x.shape)} and {tuple(y.shape)}"
            )
        bounds = options.get("bounds") or (target.bounds if target is not None else (0.0, 1.0))
        classes = options.get("num_classes") or (
            target.num_classes if target is not None else int(y.max(initial=0)) + 1
        )
        empty = np.zeros((0, *x.shape[1:]), dtype=np.float32)
        return Dataset(
            "arrays",
            "image" if x.ndim > 2 else "tabular",
            empty,
            np.zeros(0, dtype=np.int64),
            x,
            y,
            num_classes=max(int(classes), 2),
            bounds=(float(bounds[0]), float(bounds[1])),
        ).check()
    raise ConfigError(
        "robustness() takes data as a bastion Dataset, a spec string or (x, y); got "
        f"{type(data).__name__}"
    )


def _array(value: Any) -> Any:
    import numpy as np

    detach = getattr(value, "detach", None)
    if callable(detach):
        value = detach().cpu().numpy()
    return np.asarray(value)


def _from_spec(spec: str, dataset: Dataset, options: dict[str, Any]) -> Target:
    from bastion.loaders import TargetSpec, load_target

    keys = ("arch", "trust", "device", "output_kind", "query_budget", "headers")
    return load_target(
        TargetSpec(
            source=spec,
            num_classes=dataset.num_classes,
            bounds=dataset.bounds,
            input_shape=dataset.input_shape,
            **{k: options[k] for k in keys if k in options},
        )
    )


def _wrap(model: Any, dataset: Dataset, options: dict[str, Any]) -> Target:
    """A PyTorch module or a scikit-learn classifier as a target on ``dataset``."""
    import torch

    common: dict[str, Any] = {
        "num_classes": dataset.num_classes,
        "bounds": dataset.bounds,
        "input_shape": dataset.input_shape,
        "query_budget": options.get("query_budget"),
    }
    if isinstance(model, torch.nn.Module):
        from bastion.core.targets import TorchTarget

        return TorchTarget(
            model,
            output_kind=options.get("output_kind") or "logits",
            device=options.get("device"),
            name=type(model).__name__,
            **common,
        )
    if hasattr(model, "predict") and hasattr(model, "classes_"):
        from bastion.core.targets import SklearnTarget

        return SklearnTarget(
            model, output_kind=options.get("output_kind"), name=type(model).__name__, **common
        )
    raise ConfigError(
        "robustness() takes a model as a bastion Target, a PyTorch nn.Module, a fitted "
        f"scikit-learn classifier or a spec string; got {type(model).__name__}"
    )
