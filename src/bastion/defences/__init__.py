"""Defences: what hardens a model, registered in :data:`bastion.core.registry.DEFENCES`.

Five kinds, by where they act:

- :class:`Preprocessor`: transforms inputs inside a target (feature squeezing, JPEG, ...);
- :class:`Postprocessor`: hardens outputs (label-only, top-k, rounding);
- :class:`Trainer`: fits and returns a new model (adversarial training, DP, distillation);
- :class:`Detector`: scores inputs or training samples, with a threshold calibrated to a chosen
  false-positive rate;
- :class:`Sanitizer`: filters a dataset (poison removal).

A :class:`DefendedTarget` (a target plus its pre- and postprocessors) is itself a target, so
every attack and the whole scan run against it unchanged; so is an :class:`EnsembleTarget`
(several models, or one model behind several transforms, answering together).
"""

from bastion.defences.base import (
    Defence,
    Detector,
    Postprocessor,
    Preprocessor,
    Sanitizer,
    Trainer,
    create_defence,
    parse_defence,
)
from bastion.defences.ensemble import EnsembleTarget
from bastion.defences.target import DefendedTarget

__all__ = [
    "Defence",
    "DefendedTarget",
    "Detector",
    "EnsembleTarget",
    "Postprocessor",
    "Preprocessor",
    "Sanitizer",
    "Trainer",
    "create_defence",
    "parse_defence",
]
