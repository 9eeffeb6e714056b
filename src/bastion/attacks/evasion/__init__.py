"""Evasion attacks: inputs crafted to be misclassified at test time."""

from bastion.attacks.evasion.apgd import APGD, APGDT
from bastion.attacks.evasion.constrained import ConstrainedPGD
from bastion.attacks.evasion.cw import CarliniWagnerL2
from bastion.attacks.evasion.deepfool import DeepFool
from bastion.attacks.evasion.fab import FAB
from bastion.attacks.evasion.fgsm import FGSM
from bastion.attacks.evasion.gradient import GradientAttack
from bastion.attacks.evasion.hopskipjump import HopSkipJump
from bastion.attacks.evasion.mifgsm import MIFGSM
from bastion.attacks.evasion.nes import NES
from bastion.attacks.evasion.patch import AdversarialPatch, PatchEvaluation, place_patch
from bastion.attacks.evasion.pgd import PGD
from bastion.attacks.evasion.square import SquareAttack
from bastion.attacks.evasion.transfer import TransferAttack
from bastion.attacks.evasion.universal import UniversalPerturbation

__all__ = [
    "APGD",
    "APGDT",
    "FAB",
    "FGSM",
    "MIFGSM",
    "NES",
    "PGD",
    "AdversarialPatch",
    "CarliniWagnerL2",
    "ConstrainedPGD",
    "DeepFool",
    "GradientAttack",
    "HopSkipJump",
    "PatchEvaluation",
    "SquareAttack",
    "TransferAttack",
    "UniversalPerturbation",
    "place_patch",
]
