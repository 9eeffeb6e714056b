"""Trainers that return a new model: adversarial training (PGD, TRADES, fast FGSM),
defensive distillation, and backdoor removal by fine-pruning or by retraining on data a data
defence has screened."""

from bastion.defences.training.adversarial import (
    AdversarialTraining,
    FastAdversarialTraining,
    NoiseFGSMTraining,
    PGDTraining,
    Trades,
)
from bastion.defences.training.distillation import DefensiveDistillation
from bastion.defences.training.fine_pruning import FinePruning
from bastion.defences.training.retrain import FilterRetrain

__all__ = [
    "AdversarialTraining",
    "DefensiveDistillation",
    "FastAdversarialTraining",
    "FilterRetrain",
    "FinePruning",
    "NoiseFGSMTraining",
    "PGDTraining",
    "Trades",
]
