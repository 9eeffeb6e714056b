"""Data defences: find poison in training data, score every sample, and filter it out."""

from bastion.defences.data.activation_clustering import ActivationClustering
from bastion.defences.data.base import DataDefence, activations
from bastion.defences.data.confident import ConfidentLearning
from bastion.defences.data.knn import KnnConsistency
from bastion.defences.data.spectral import SpectralSignatures

__all__ = [
    "ActivationClustering",
    "ConfidentLearning",
    "DataDefence",
    "KnnConsistency",
    "SpectralSignatures",
    "activations",
]
