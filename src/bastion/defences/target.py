"""A defended target: a target seen through its defences, and itself a target."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from bastion.core.errors import ConfigError
from bastion.core.targets.base import Target
from bastion.core.threat import Access, OutputKind
from bastion.defences.base import Defence, Postprocessor, Preprocessor

__all__ = ["DefendedTarget"]


class DefendedTarget(Target):
    """``inner`` with ``defences`` applied: preprocessors on the inputs, in order, then the
    model, then postprocessors on its outputs, in order.

    Access follows from what an adversary of the defended system sees. Preprocessors keep
    white-box access (gradients flow through each one's differentiable approximation: BPDA).
    A postprocessor hardens the answers a deployed model gives, so with one the target is a
    black box: score-based, or label-only when the outputs become labels.

    With ``bpda=False`` gradients flow through each preprocessor's real transform instead
    (zero almost everywhere through a rounding, sparse through a median): the defended model
    as a naive attacker sees it, for showing how far plain gradient attacks overstate a
    transform's robustness (:func:`bastion.assess.naive_vs_adaptive`). The forward pass, and
    so every answer, is the same either way.

    Queries are counted here, once per input, whatever the defences do.

    Example:
        >>> from bastion.defences import DefendedTarget, create_defence  # doctest: +SKIP
        >>> defended = DefendedTarget(target, [create_defence("squeeze:bits=4")])  # doctest: +SKIP
    """

    def __init__(
        self,
        inner: Target,
        defences: Sequence[Defence],
        *,
        name: str | None = None,
        bpda: bool = True,
    ) -> None:
        pre = [d for d in defences if isinstance(d, Preprocessor)]
        post = [d for d in defences if isinstance(d, Postprocessor)]
        other = [d for d in defences if not isinstance(d, (Preprocessor, Postprocessor))]
        if other:
            kinds = ", ".join(f"{d.registry_name} ({d.entry.defence_kind})" for d in other)
            raise ConfigError(
                f"only preprocessors and postprocessors act inside a target; {kinds} cannot"
            )
        if list(defences) != pre + post:
            raise ConfigError("give a target's preprocessors before its postprocessors")
        shown = "+".join(d.describe() for d in defences)
        super().__init__(
            num_classes=inner.num_classes,
            bounds=inner.bounds,
            input_shape=inner.input_shape,
            query_budget=inner.query_budget,
            name=name or (f"{inner.name} [{shown}]" if shown else inner.name),
        )
        self.inner = inner
        self.bpda = bpda
        self.preprocessors = pre
        self.postprocessors = post
        kind = inner.output_kind
        for p in post:
            kind = p.output_kind(kind)
        self.output_kind = kind
        if kind is OutputKind.LABELS:
            self.access = Access.LABELS
        elif post or inner.access is not Access.WHITE_BOX:
            self.access = Access.SCORES if inner.access.rank >= Access.SCORES.rank else inner.access
        else:
            self.access = Access.WHITE_BOX

    @property
    def device(self) -> torch.device:
        return self.inner.device

    @contextlib.contextmanager
    def inference_mode(self) -> Iterator[None]:
        with self.inner.inference_mode():
            yield

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        for pre in self.preprocessors:
            x = pre(x, self.bounds) if self.bpda else pre.transform(x, self.bounds)
        out = self.inner._forward(x)
        kind = self.inner.output_kind
        for post in self.postprocessors:
            out = post.transform(out, kind)
            kind = post.output_kind(kind)
        return out

    def gradient(self, x: torch.Tensor, loss: Any) -> torch.Tensor:
        """Gradient of ``loss(outputs)`` with respect to ``x``, through the preprocessors'
        stand-ins (BPDA) or, with ``bpda=False``, their real transforms; white-box only."""
        if self.access is not Access.WHITE_BOX:
            return super().gradient(x, loss)
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(loss(self(x)), x)
        return grad

    def describe(self) -> dict[str, Any]:
        out = super().describe()
        out["defences"] = [d.describe() for d in (*self.preprocessors, *self.postprocessors)]
        out["inner"] = self.inner.describe()
        if not self.bpda:
            out["bpda"] = False
        return out
