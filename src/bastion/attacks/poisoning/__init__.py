"""Poisoning attacks: training data changed so that the model learns what the attacker wants.

Each holds only its hyperparameters and returns a :class:`PoisonedData` (the poisoned training
split and the exact samples changed); :func:`bastion.assess.poisoning.assess_poisoning` trains
the victim's recipe on it and measures clean accuracy, attack success and the curve of
success against the number of poisoned samples.
"""

from bastion.attacks.poisoning.badnets import BackdoorAttack, BadNets
from bastion.attacks.poisoning.base import PoisonedData, PoisoningAttack
from bastion.attacks.poisoning.blended import Blended
from bastion.attacks.poisoning.clean_label import CleanLabel
from bastion.attacks.poisoning.label_flip import LabelFlip
from bastion.attacks.poisoning.tabular import Availability, TabularTrigger

__all__ = [
    "Availability",
    "BackdoorAttack",
    "BadNets",
    "Blended",
    "CleanLabel",
    "LabelFlip",
    "PoisonedData",
    "PoisoningAttack",
    "TabularTrigger",
]
