"""Turn the strings a user types (target and data specs) into a target and a dataset.

The target spec goes to the registered target loaders (:mod:`bastion.loaders`): a demo name,
an http(s) URL, or a model file, by its suffix. A user's model needs data: its bounds, classes
and input shape come from the data.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from bastion.core.errors import DataError
from bastion.core.targets.base import Target
from bastion.data import Dataset, load_data
from bastion.loaders import TARGET_LOADERS, TargetSpec, load_target

__all__ = ["DEMO", "load_target_and_data"]

DEMO = "digits-cnn"

ProgressFn = Callable[[int, int], None]


def load_target_and_data(
    spec: str | None,
    data_spec: str | None = None,
    *,
    arch: str | None = None,
    trust: bool = False,
    device: str | None = None,
    output_kind: str | None = None,
    query_budget: int | None = None,
    headers: Mapping[str, str] | None = None,
    label_column: str = "label",
    bounds: tuple[float, float] | None = None,
    num_classes: int | None = None,
    progress: ProgressFn | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[Target, Dataset]:
    """The target named by ``spec`` and the data to attack it with.

    With no ``spec`` the built-in demo (a small CNN on scikit-learn's digits) is used, trained
    on first use, with its own test data unless ``data_spec`` names other data.
    """
    source = spec or DEMO
    named = TARGET_LOADERS.by_name(source)
    data: Dataset | None = None
    if data_spec is not None:
        data = load_data(
            data_spec, label_column=label_column, bounds=bounds, num_classes=num_classes
        )
    elif named is None or named.needs_data:
        raise DataError("a model of your own needs data to attack: give --data")
    target_spec = TargetSpec(
        source=source,
        num_classes=data.num_classes if data is not None else None,
        bounds=data.bounds if data is not None else (0.0, 1.0),
        input_shape=data.input_shape if data is not None else None,
        arch=arch,
        trust=trust,
        device=device,
        output_kind=output_kind,
        query_budget=query_budget,
        headers=dict(headers or {}),
        options={**(options or {}), **({"progress": progress} if named is not None else {})},
    )
    target = load_target(target_spec)
    if data is None:
        # a demo brings its own data: the set it was trained on
        from bastion.data import load_dataset
        from bastion.zoo import ZOO

        data = load_dataset(ZOO[target.name].dataset)
    return target, data
