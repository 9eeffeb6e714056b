"""Certified defences: randomized smoothing (Cohen, Rosenfeld, Kolter 2019) and the training
under noise its base classifier needs.

- :class:`SmoothedClassifier`: votes of a base classifier over Gaussian noise; ``predict``
  with abstention and ``certify`` (a certified L2 radius per input); a target itself;
- :class:`GaussianAugmentation` (registered ``smoothing``): trains the base model under noise
  and returns it smoothed;
- :func:`certified_accuracy`: the share certified correct at each radius.
"""

from bastion.defences.certify.smoothing import (
    ABSTAIN,
    Certificate,
    SmoothedClassifier,
    certified_accuracy,
    clopper_pearson_lower,
    max_certifiable_radius,
    predict_from_counts,
)
from bastion.defences.certify.training import GaussianAugmentation

__all__ = [
    "ABSTAIN",
    "Certificate",
    "GaussianAugmentation",
    "SmoothedClassifier",
    "certified_accuracy",
    "clopper_pearson_lower",
    "max_certifiable_radius",
    "predict_from_counts",
]
