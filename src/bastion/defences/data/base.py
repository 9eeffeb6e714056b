"""What the data defences share: a suspicion score per sample, and a filtered dataset."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.core.errors import AccessError, ConfigError, DataError
from bastion.core.targets.base import Target
from bastion.core.threat import Access
from bastion.defences.base import Sanitizer

__all__ = ["DataDefence", "activations"]


def _numpy(a: Any) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


class DataDefence(Sanitizer):
    """A sanitizer that scores every training sample: higher means more suspicious.

    ``fit(x, y, model=...)`` sets ``scores_`` (one per sample), ``keep_`` (a boolean tensor:
    the samples that stay) and ``flagged_`` (its complement, as a numpy array);
    :meth:`filter` returns the kept samples. ``model`` is the model trained on the data under
    suspicion, for the defences that read its activations.
    """

    scores_: np.ndarray
    flagged_: np.ndarray
    needs_model = False

    def fit(  # type: ignore[override]
        self, x: Any, y: Any, *, model: Target | None = None
    ) -> DataDefence:
        xs, ys = _numpy(x), _numpy(y).astype(np.int64)
        if len(xs) != len(ys) or len(xs) == 0:
            raise DataError(f"{len(xs)} inputs and {len(ys)} labels: nothing to screen")
        if self.needs_model and model is None:
            raise ConfigError(f"{type(self).__name__} reads a model's activations: give model=")
        check = getattr(self, "_check_params", None)
        if callable(check):
            check()
        scores, flagged = self._score(xs, ys, model)
        self.scores_ = np.asarray(scores, dtype=np.float64)
        self.flagged_ = np.asarray(flagged, dtype=bool)
        self.keep_ = torch.from_numpy(~self.flagged_)
        return self

    def _score(
        self, x: np.ndarray, y: np.ndarray, model: Target | None
    ) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def filter(self, x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
        """The samples of ``x``, ``y`` (as fitted) that were not flagged."""
        if not hasattr(self, "flagged_"):
            raise ConfigError(f"{type(self).__name__} is not fitted: call fit() first")
        keep = ~self.flagged_
        return _numpy(x)[keep], _numpy(y)[keep]


def _last_linear(model: nn.Module) -> nn.Linear:
    last = None
    for module in model.modules():
        if isinstance(module, nn.Linear):
            last = module
    if last is None:
        raise AccessError("the model has no linear layer whose input could serve as features")
    return last


def activations(model: Target, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """The input of ``model``'s last linear layer (its penultimate representation) for ``x``.

    A white-box PyTorch target only: the representation is read with a forward hook.
    """
    module = getattr(model, "model", None)
    if not isinstance(module, nn.Module) or not model.access.allows(Access.WHITE_BOX):
        raise AccessError(f"{model.name} gives no activations: this defence needs a PyTorch model")
    captured: list[torch.Tensor] = []
    hook = _last_linear(module).register_forward_hook(
        lambda _m, inputs, _o: captured.append(inputs[0].detach().flatten(1).cpu())
    )
    try:
        with model.inference_mode(), torch.no_grad():
            for start in range(0, len(x), batch_size):
                model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch_size])))
    finally:
        hook.remove()
    return torch.cat(captured).numpy().astype(np.float64)
