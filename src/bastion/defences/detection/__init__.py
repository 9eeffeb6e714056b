"""Detectors: of trojans in a model (Neural Cleanse) and in its inputs at run time (STRIP), and
of adversarial inputs (feature squeezing)."""

from bastion.defences.detection.neural_cleanse import NeuralCleanse, anomaly_index
from bastion.defences.detection.squeeze import SqueezeDetector
from bastion.defences.detection.strip import STRIP

__all__ = ["STRIP", "NeuralCleanse", "SqueezeDetector", "anomaly_index"]
