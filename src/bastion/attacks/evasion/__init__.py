"""Evasion attacks: inputs crafted to be misclassified at test time."""

from bastion.attacks.evasion.constrained import ConstrainedPGD
from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.gradient import GradientAttack
from bastion.attacks.evasion.patch import AdversarialPatch, PatchEvaluation, place_patch
from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.evasion.square import SquareAttack
from bastion.attacks.evasion.transfer import TransferAttack
from bastion.attacks.evasion.universal import UniversalPerturbation

__all__ = [
    "FGSM",
    "PGD",
    "AdversarialPatch",
    "ConstrainedPGD",
    "GradientAttack",
    "PatchEvaluation",
    "SquareAttack",
    "TransferAttack",
    "UniversalPerturbation",
    "place_patch",
]
