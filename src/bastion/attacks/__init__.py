"""Attacks, registered in :data:`bastion.core.registry.ATTACKS` on import."""

from bastion.attacks.base import Attack, RunLog
from bastion.attacks.evasion import (
    APGD,
    APGDT,
    FGSM,
    MIFGSM,
    NES,
    PGD,
    GradientAttack,
    HopSkipJump,
    SquareAttack,
)

__all__ = [
    "APGD",
    "APGDT",
    "FGSM",
    "MIFGSM",
    "NES",
    "PGD",
    "Attack",
    "GradientAttack",
    "HopSkipJump",
    "RunLog",
    "SquareAttack",
]
