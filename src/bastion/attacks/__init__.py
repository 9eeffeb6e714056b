"""Attacks, registered in :data:`bastion.core.registry.ATTACKS` on import."""

from bastion.attacks.base import Attack, RunLog
from bastion.attacks.evasion import (
    APGD,
    APGDT,
    FAB,
    FGSM,
    MIFGSM,
    NES,
    PGD,
    CarliniWagnerL2,
    DeepFool,
    GradientAttack,
    HopSkipJump,
    SquareAttack,
)

__all__ = [
    "APGD",
    "APGDT",
    "FAB",
    "FGSM",
    "MIFGSM",
    "NES",
    "PGD",
    "Attack",
    "CarliniWagnerL2",
    "DeepFool",
    "GradientAttack",
    "HopSkipJump",
    "RunLog",
    "SquareAttack",
]
