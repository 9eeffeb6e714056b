"""An ensemble: several models, or one model behind several transforms, as one target."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind

__all__ = ["COMBINE", "EnsembleTarget"]

#: how an ensemble combines its members' answers
COMBINE = ("mean-prob", "vote")


class EnsembleTarget(Target):
    """Members answering together, as one target that every attack and the scan run against.

    ``combine="mean-prob"`` answers the weighted mean of the members' probabilities (logits
    go through a softmax first, so members of different scales weigh what their weights
    say). Averaging probabilities rather than logits keeps a member that is sure from being
    outvoted by the scale of another's logits, and is what the ensembles of the adversarial
    literature average (Tramer et al., "Ensemble Adversarial Training", 2018,
    arXiv:1705.07204; He et al., "Adversarial Example Defenses: Ensembles of Weak Defenses
    are not Strong", 2017, arXiv:1706.04701, which also shows why an ensemble must be
    attacked as one model). The ensemble is white-box when every member is, since the mean
    is differentiable, and score-based otherwise.

    ``combine="vote"`` answers each class's weighted share of the members' predicted labels
    as probabilities. A vote has no useful gradient, so the ensemble is score-based at
    most; members may be label-only.

    Members are targets or :class:`~bastion.defences.DefendedTarget`-s, so an ensemble of
    transforms is an ensemble of defended targets over one model:
    ``EnsembleTarget([DefendedTarget(m, [JpegCompression()]), DefendedTarget(m,
    [MedianFilter()])])``. Each input counts one query here, whatever the members do, and
    members' own budgets are not charged (as a defended target charges only itself).

    Args:
        members: two or more targets with the same classes, bounds and input shape.
        weights: one non-negative weight per member, not all zero (equal weights).
        combine: ``"mean-prob"`` or ``"vote"`` ("mean-prob").
        query_budget: the most inputs the ensemble answers (no limit).
        name: for reports (the members' names joined by ``+``).
    """

    def __init__(
        self,
        members: Sequence[Target],
        weights: Sequence[float] | None = None,
        combine: str = "mean-prob",
        *,
        query_budget: int | None = None,
        name: str | None = None,
    ) -> None:
        members = list(members)
        if len(members) < 2:
            raise ConfigError(f"an ensemble needs at least 2 members, got {len(members)}")
        if combine not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
        first = members[0]
        for m in members[1:]:
            if m.num_classes != first.num_classes:
                raise ConfigError(
                    f"ensemble members disagree on classes: {first.name} has "
                    f"{first.num_classes}, {m.name} has {m.num_classes}"
                )
            if m.bounds != first.bounds:
                raise ConfigError(
                    f"ensemble members disagree on bounds: {first.name} has {first.bounds}, "
                    f"{m.name} has {m.bounds}"
                )
            if (
                None not in (m.input_shape, first.input_shape)
                and m.input_shape != first.input_shape
            ):
                raise ConfigError(
                    f"ensemble members disagree on input shape: {first.name} takes "
                    f"{first.input_shape}, {m.name} takes {m.input_shape}"
                )
        labels = [m.name for m in members if m.output_kind is OutputKind.LABELS]
        if combine == "mean-prob" and labels:
            raise ConfigError(
                f"combine='mean-prob' needs scores, and {', '.join(labels)} returns labels "
                "only: use combine='vote'"
            )
        if weights is None:
            weights = [1.0] * len(members)
        w = [float(v) for v in weights]
        if len(w) != len(members):
            raise ConfigError(f"{len(members)} members but {len(w)} weights")
        if any(v < 0 for v in w) or sum(w) <= 0:
            raise ConfigError(f"weights must be non-negative and not all zero, got {w}")
        shape = next((m.input_shape for m in members if m.input_shape is not None), None)
        super().__init__(
            num_classes=first.num_classes,
            bounds=first.bounds,
            input_shape=shape,
            query_budget=query_budget,
            name=name or "+".join(m.name for m in members),
        )
        self.members = members
        self.weights = [v / sum(w) for v in w]
        self.combine = combine
        self.output_kind = OutputKind.PROBABILITIES
        if combine == "mean-prob" and all(m.access is Access.WHITE_BOX for m in members):
            self.access = Access.WHITE_BOX
        else:
            self.access = Access.SCORES

    @property
    def device(self) -> torch.device:
        return self.members[0].device

    @contextlib.contextmanager
    def inference_mode(self) -> Iterator[None]:
        with contextlib.ExitStack() as stack:
            for m in self.members:
                stack.enter_context(m.inference_mode())
            yield

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), self.num_classes, device=x.device, dtype=x.dtype)
        for member, weight in zip(self.members, self.weights, strict=True):
            answer = member._forward(x.to(member.device)).to(x.device)
            if self.combine == "vote":
                labels = answer if answer.ndim == 1 else answer.argmax(dim=1)
                share = torch.nn.functional.one_hot(labels.long(), self.num_classes).to(x.dtype)
            elif member.output_kind is OutputKind.LOGITS:
                share = answer.softmax(dim=1)
            else:
                share = answer
            out = out + weight * share
        return out

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["combine"] = self.combine
        out["weights"] = list(self.weights)
        out["members"] = [m.describe() for m in self.members]
        return out
