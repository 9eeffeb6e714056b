"""Success criteria: the one place that decides what "fooled" means.

A criterion is a small value object. It answers two questions every attack and the scan ask:
:meth:`~Criterion.is_success` (did this output reach the adversary's goal?) and
:meth:`~Criterion.margin` (how far from it, as a number that is at most zero exactly where the
goal is reached; score-based attacks search on it, gradient attacks may ascend its negative).

- :class:`Misclassification`: any label but the true one (the default).
- :class:`TargetedMisclassification`: the label the adversary chose (``y`` holds those labels).
- :class:`TopKMisclassification`: the true label is not among the ``k`` best.
- :class:`ConfidentMisclassification`: a wrong label, with probability at least ``threshold``.

>>> import torch
>>> scores = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
>>> Misclassification().is_success(scores, torch.tensor([0, 0])).tolist()
[False, True]
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.core.errors import AccessError

if TYPE_CHECKING:
    import torch

__all__ = [
    "ConfidentMisclassification",
    "Criterion",
    "CriterionSpec",
    "Misclassification",
    "TargetedMisclassification",
    "TopKMisclassification",
]


class Criterion(BaseModel):
    """Base of the success criteria; subclasses define :meth:`margin`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str
    #: whether the criterion can only be judged from scores, not labels alone
    needs_scores: ClassVar[bool] = False

    def margin(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per input: > 0 while the goal is not reached, <= 0 once it is."""
        raise NotImplementedError

    def is_success(self, outputs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Per input: whether ``outputs`` ((N, C) scores, or (N,) labels) reach the goal."""
        if outputs.ndim == 1:
            if self.needs_scores:
                raise AccessError(
                    f"the {self.kind} criterion needs scores; the target returns labels only"
                )
            return self._from_labels(outputs.long(), y)
        return self.margin(outputs, y) <= 0

    def _from_labels(self, labels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return labels != y

    def describe(self) -> str:
        return self.kind


def _tie(value: torch.Tensor) -> torch.Tensor:
    # a tie goes to the model (argmax picks the first class), so zero counts as not reached
    return value.masked_fill(value == 0, 1e-12)


def _true_and_best_other(scores: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
    true = scores.gather(1, y[:, None]).squeeze(1)
    others = scores.scatter(1, y[:, None], float("-inf"))
    return true, others


class Misclassification(Criterion):
    """Any label but the true one."""

    kind: Literal["misclassification"] = "misclassification"

    def margin(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true, others = _true_and_best_other(scores, y)
        value = true - others.amax(dim=1)
        return _tie(value)


class TargetedMisclassification(Criterion):
    """The label the adversary chose; ``y`` holds the target labels."""

    kind: Literal["targeted"] = "targeted"

    def margin(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        wanted, others = _true_and_best_other(scores, y)
        value = others.amax(dim=1) - wanted
        return _tie(value)

    def _from_labels(self, labels: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return labels == y


class TopKMisclassification(Criterion):
    """The true label is not among the ``k`` highest scores (a ranked answer misses it)."""

    kind: Literal["top-k"] = "top-k"
    k: int = Field(default=5, ge=1)
    needs_scores: ClassVar[bool] = True

    def margin(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        true, others = _true_and_best_other(scores, y)
        k = min(self.k, scores.shape[1] - 1)
        kth = others.topk(k, dim=1).values[:, -1]
        value = true - kth
        return _tie(value)

    def describe(self) -> str:
        return f"top-{self.k}"


class ConfidentMisclassification(Criterion):
    """A wrong label, given with probability at least ``threshold``.

    Logits are turned into probabilities with a softmax; rows that already sum to one are
    taken as probabilities.
    """

    kind: Literal["confidence"] = "confidence"
    threshold: float = Field(default=0.9, gt=0, lt=1)
    needs_scores: ClassVar[bool] = True

    def margin(self, scores: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        rows = scores.sum(dim=1)
        is_prob = bool((scores >= 0).all()) and bool(((rows - 1).abs() <= 1e-3).all())
        probs = scores if is_prob else scores.softmax(dim=1)
        true, others = _true_and_best_other(probs, y)
        best = others.amax(dim=1)
        wrong = true - best
        return _tie(wrong).maximum(self.threshold - best)

    def describe(self) -> str:
        return f"confidence>={self.threshold:g}"


#: any criterion, told apart by ``kind`` (for configs and reports)
CriterionSpec = Annotated[
    Misclassification
    | TargetedMisclassification
    | TopKMisclassification
    | ConfidentMisclassification,
    Field(discriminator="kind"),
]
