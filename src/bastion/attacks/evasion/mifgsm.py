"""Momentum Iterative FGSM."""

from __future__ import annotations

import torch

from bastion.attacks.evasion.gradient import GradientAttack
from bastion.core.errors import ConfigError
from bastion.core.registry import register_attack
from bastion.core.threat import Access, Norm

__all__ = ["MIFGSM"]


@register_attack(
    "mifgsm",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=18,
    defaults={"steps": 10},
    fast={"steps": 5},
    # in the evaluation presets (bastion scan --preset); a scan's defaults are PGD and Square
    in_scan=False,
)
class MIFGSM(GradientAttack):
    """Iterative gradient steps along an accumulated momentum of normalized gradients.

    The momentum keeps the direction steady across steps, which escapes poor local maxima and
    makes the adversarial inputs transfer better to other models than PGD's do: the attack
    to craft on a surrogate for a transfer attack.

    Paper: Dong, Liao, Pang, Su, Zhu, Hu, Li, "Boosting Adversarial Attacks with Momentum",
    2018, arXiv:1710.06081.

    Threat: white-box; Linf or L2; untargeted or targeted.

    Args:
        steps: iterations (10); each moves ``eps / steps`` unless a step size is given.
        decay: the momentum's decay factor mu (1.0).
        rel_stepsize: step size as a fraction of epsilon (None: ``1 / steps``).
        abs_stepsize: step size in input units.
        random_start: begin at a random point of the ball (False, as in the paper).
        loss: ``"ce"``, ``"margin"``, ``"dlr"`` or ``"dlr-targeted"``.
        eot_samples: gradients averaged over this many forward passes (1).
        early_stop: stop each input as soon as it reaches the goal (True).

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> result = MIFGSM(steps=10).run(target, x, y, eps=0.3)  # doctest: +SKIP
    """

    def __init__(
        self,
        *,
        steps: int = 10,
        decay: float = 1.0,
        rel_stepsize: float | None = None,
        abs_stepsize: float | None = None,
        random_start: bool = False,
        loss: str = "ce",
        eot_samples: int = 1,
        early_stop: bool = True,
    ) -> None:
        super().__init__(
            steps=steps,
            rel_stepsize=rel_stepsize,
            abs_stepsize=abs_stepsize,
            random_start=random_start,
            restarts=1,
            loss=loss,
            eot_samples=eot_samples,
            early_stop=early_stop,
        )
        self.decay = decay

    def _check_params(self) -> None:
        super()._check_params()
        if self.decay < 0:
            raise ConfigError(f"decay must be non-negative, got {self.decay}")

    def step_size(self, eps: float) -> float:
        if self.abs_stepsize is None and self.rel_stepsize is None:
            return eps / self.steps
        return super().step_size(eps)

    def accumulate(self, grad: torch.Tensor, memory: torch.Tensor | None) -> torch.Tensor:
        # each gradient normalized by its mean absolute entry (its L1 norm up to a constant)
        scale = grad.abs().flatten(1).mean(dim=1).clamp_min(1e-12)
        unit = grad / scale.view((-1,) + (1,) * (grad.ndim - 1))
        return unit if memory is None else self.decay * memory + unit
