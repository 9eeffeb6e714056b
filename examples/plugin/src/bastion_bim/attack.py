"""The Basic Iterative Method, registered as a bastion attack from outside bastion."""

from __future__ import annotations

from bastion.attacks.evasion.gradient import GradientAttack
from bastion.core.registry import register_attack
from bastion.core.threat import Access, Norm


@register_attack(
    "bim",
    family="evasion",
    access=Access.WHITE_BOX,
    norms=(Norm.LINF, Norm.L2),
    techniques=("AML.T0043.000", "AML.T0043", "AML.T0015"),
    cost=15,
    defaults={"steps": 10},
    fast={"steps": 5},
)
class BIM(GradientAttack):
    """Small gradient steps from the clean input, clipped to the epsilon ball after each.

    Paper: Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world", 2016,
    arXiv:1607.02533. PGD without its random start.

    Args:
        steps: gradient steps (10); each is ``eps / 4``, so the ball is crossed early.
    """

    def __init__(self, *, steps: int = 10) -> None:
        super().__init__(steps=steps, rel_stepsize=0.25, random_start=False, restarts=1)
