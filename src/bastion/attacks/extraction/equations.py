"""Equation-solving extraction: a logistic regression recovered exactly from its probabilities."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from bastion.attacks.extraction.base import Extraction, ExtractionLog
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.targets.base import Target
from bastion.core.threat import Access

__all__ = ["EquationSolving"]

# probabilities are floored here before their logarithm: a saturated answer (an exact 0)
# carries no equation, and the least-squares fit then leans on the others
_FLOOR = 1e-30


@register_attack(
    "equation-solving",
    family="extraction",
    access=Access.SCORES,
    techniques=("AML.T0024.002", "AML.T0024"),
    cost=10,
    defaults={"oversample": 1.0},
    fast={"oversample": 1.0},
)
class EquationSolving(Extraction):
    """Recover a softmax-linear model (a logistic regression) from its probabilities by
    solving linear equations: for a model ``p = softmax(W x + b)``,
    ``log p_i - log p_0 = (w_i - w_0) x + (b_i - b_0)``, so ``d + 1`` answers to inputs in
    general position determine every class's weights up to what the softmax ignores.

    Paper: Tramer, Zhang, Juels, Reiter, Ristenpart, "Stealing Machine Learning Models via
    Prediction APIs", 2016, arXiv:1609.02943 (section 4.1).

    Threat: score-based black box returning probabilities (or logits) to full precision;
    rounded scores make the equations inconsistent, which the copy's fidelity then shows.
    Only models that are softmax-linear in their inputs are recovered; on others the copy is
    the best linear fit.

    Args:
        oversample: queries as a multiple of ``d + 1`` (1.0), never more than
            ``(d + 1) * k``; more than 1 fits in least squares, which absorbs float32
            rounding of the answers.
        max_queries: a cap on the queries (``None``: ``(d + 1) * k``).

    Returns:
        an :class:`ExtractionResult` whose copy is a linear layer on the flattened input.
    """

    uses_scores = True

    def __init__(self, *, oversample: float = 1.0, max_queries: int | None = None) -> None:
        self.oversample = oversample
        self.max_queries = max_queries

    def _check_params(self) -> None:
        if not self.oversample >= 1:
            raise ConfigError(f"equation-solving oversample must be at least 1: {self.oversample}")

    def run(self, target: Target, x_seed: torch.Tensor | None = None, **kwargs):  # type: ignore[no-untyped-def,override]
        """See :meth:`Extraction.run`; the budget defaults to the queries the equations need."""
        if kwargs.get("max_queries") is None and self.max_queries is None:
            if target.input_shape is None:
                ref = x_seed if x_seed is not None else kwargs.get("x_eval")
                dims = math.prod(ref.shape[1:]) if ref is not None else 0
            else:
                dims = math.prod(target.input_shape)
            kwargs["max_queries"] = (dims + 1) * target.num_classes
        return super().run(target, x_seed, **kwargs)

    def _extract(
        self,
        target: Target,
        x_seed: torch.Tensor | None,
        input_shape: tuple[int, ...],
        generator: torch.Generator,
        log: ExtractionLog,
    ) -> nn.Module:
        d = math.prod(input_shape)
        k = target.num_classes
        n = min(math.ceil(self.oversample * (d + 1)), (d + 1) * k, log.left)
        if n < d + 1:
            log.notes.append(
                f"only {n} queries for {d + 1} unknowns per class: the system is underdetermined"
            )
        lo, hi = target.bounds
        x = lo + (hi - lo) * torch.rand((n, *input_shape), generator=generator)
        probs = log.ask(x.to(target.device)).cpu().double().numpy()
        logp = np.log(np.clip(probs, _FLOOR, None))
        a = np.hstack([x.reshape(n, d).double().numpy(), np.ones((n, 1))])
        rhs = logp[:, 1:] - logp[:, :1]
        solution, *_ = np.linalg.lstsq(a, rhs, rcond=None)
        weights = np.zeros((k, d + 1))
        weights[1:] = solution.T
        layer = nn.Linear(d, k)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weights[:, :d]).float())
            layer.bias.copy_(torch.from_numpy(weights[:, d]).float())
        copy = nn.Sequential(nn.Flatten(), layer)
        copy.eval()
        return copy
