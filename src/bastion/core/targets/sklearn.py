"""scikit-learn estimators as score-based (or label-only) black boxes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bastion.core.errors import TargetError
from bastion.core.targets.base import BlackBoxTarget
from bastion.core.threat import OutputKind

__all__ = ["SklearnTarget"]


class SklearnTarget(BlackBoxTarget):
    """A fitted scikit-learn classifier, queried through ``predict_proba`` or ``predict``.

    Inputs are flattened to (N, features) before they reach the estimator, so an estimator
    trained on flattened images is attacked in image space. Labels the estimator knows as
    ``classes_`` must be ``0..num_classes-1``.

    Args:
        estimator: a fitted classifier.
        output_kind: ``"probabilities"`` (the default when ``predict_proba`` exists) or
            ``"labels"`` to expose only ``predict``, as a label-only black box.
    """

    def __init__(
        self,
        estimator: Any,
        *,
        num_classes: int | None = None,
        bounds: tuple[float, float] = (0.0, 1.0),
        input_shape: Sequence[int] | None = None,
        output_kind: OutputKind | str | None = None,
        query_budget: int | None = None,
        name: str = "sklearn-model",
    ) -> None:
        classes = getattr(estimator, "classes_", None)
        if classes is None or not hasattr(estimator, "predict"):
            raise TargetError(f"{type(estimator).__name__} is not a fitted scikit-learn classifier")
        classes = np.asarray(classes)
        if num_classes is None:
            num_classes = len(classes)
        if not np.issubdtype(classes.dtype, np.integer) or list(classes) != list(
            range(len(classes))
        ):
            raise TargetError(
                f"the estimator's classes are {list(classes)[:10]}; bastion needs labels 0..C-1"
            )
        if output_kind is None:
            output_kind = (
                OutputKind.PROBABILITIES
                if hasattr(estimator, "predict_proba")
                else OutputKind.LABELS
            )
        output_kind = OutputKind(output_kind)
        if output_kind is OutputKind.LOGITS:
            raise TargetError("scikit-learn estimators give probabilities or labels, not logits")
        if output_kind is OutputKind.PROBABILITIES and not hasattr(estimator, "predict_proba"):
            raise TargetError(f"{type(estimator).__name__} has no predict_proba: use labels")
        super().__init__(
            output_kind=output_kind,
            num_classes=num_classes,
            bounds=bounds,
            input_shape=input_shape,
            query_budget=query_budget,
            name=name,
        )
        self.estimator = estimator

    def _predict_numpy(self, x: np.ndarray) -> np.ndarray:
        flat = x.reshape(len(x), -1)
        try:
            if self.output_kind is OutputKind.LABELS:
                return np.asarray(self.estimator.predict(flat))
            proba = np.asarray(self.estimator.predict_proba(flat), dtype=np.float32)
        except ValueError as exc:
            raise TargetError(
                f"the estimator rejected inputs of shape {x.shape[1:]}: {exc}"
            ) from exc
        if proba.shape[1] < self.num_classes:
            proba = np.pad(proba, ((0, 0), (0, self.num_classes - proba.shape[1])))
        return proba
