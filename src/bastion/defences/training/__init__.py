"""Trainers that return a new model: backdoor removal by fine-pruning, or by retraining on
data a data defence has screened."""

from bastion.defences.training.fine_pruning import FinePruning
from bastion.defences.training.retrain import FilterRetrain

__all__ = ["FilterRetrain", "FinePruning"]
