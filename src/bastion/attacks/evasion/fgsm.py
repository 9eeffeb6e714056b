"""Fast Gradient Sign Method."""

from __future__ import annotations

from bastion.attacks.evasion.gradient import GradientAttack
from bastion.core.registry import register_attack
from bastion.core.threat import Access, Norm

__all__ = ["FGSM"]


@register_attack(
    "fgsm",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=10,
)
class FGSM(GradientAttack):
    """One gradient step of full size epsilon: the cheapest white-box evasion attack.

    Paper: Goodfellow, Shlens, Szegedy, "Explaining and Harnessing Adversarial Examples",
    2014, arXiv:1412.6572. Under L2 the step follows the normalized gradient (the fast
    gradient method).

    Threat: white-box; Linf or L2; untargeted or targeted.

    Args:
        loss: ``"ce"`` (cross-entropy) or ``"margin"``.

    Returns: an :class:`~bastion.core.results.AttackResult`.

    Example:
        >>> result = FGSM().run(target, x, y, eps=0.1)  # doctest: +SKIP
    """

    def __init__(self, *, loss: str = "ce") -> None:
        super().__init__(steps=1, rel_stepsize=1.0, random_start=False, restarts=1, loss=loss)
