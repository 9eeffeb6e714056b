"""Helpers the removal defences share: the clean data they are given, and a model's copy."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from torch import nn

from bastion.core.errors import AccessError, DataError
from bastion.core.targets import Target, TorchTarget
from bastion.data import Dataset


def split_data(data: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a pair of arrays or a :class:`Dataset` (its training split)."""
    if isinstance(data, Dataset):
        x, y = data.x_train, data.y_train
    elif isinstance(data, tuple) and len(data) == 2:
        x, y = np.asarray(data[0]), np.asarray(data[1])
    else:
        raise DataError("give the data as (x, y) arrays or a Dataset")
    if len(x) != len(y) or len(x) == 0:
        raise DataError(f"{len(x)} inputs and {len(y)} labels: nothing to train on")
    return x.astype(np.float32), y.astype(np.int64)


def torch_module(target: Target) -> nn.Module:
    module = getattr(target, "model", None)
    if not isinstance(target, TorchTarget) or not isinstance(module, nn.Module):
        raise AccessError(f"{target.name}: this defence changes weights; it needs a PyTorch model")
    return module


def like(target: TorchTarget, module: nn.Module, name: str) -> TorchTarget:
    """A target around ``module`` with ``target``'s bounds, classes and preprocessing."""
    out = copy.copy(target)
    out.model = module
    out.name = name
    out.reset_queries()
    return out
