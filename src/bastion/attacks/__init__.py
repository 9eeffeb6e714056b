"""Attacks, registered in :data:`bastion.core.registry.ATTACKS` on import."""

from bastion.attacks.base import Attack, RunLog
from bastion.attacks.evasion import FGSM, PGD, GradientAttack, SquareAttack

__all__ = ["FGSM", "PGD", "Attack", "GradientAttack", "RunLog", "SquareAttack"]
