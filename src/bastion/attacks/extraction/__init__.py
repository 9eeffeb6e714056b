"""Extraction: steal a copy of a black-box model by querying it (ATLAS AML.T0024.002)."""

from bastion.attacks.extraction.base import (
    Extraction,
    ExtractionLog,
    ExtractionPoint,
    ExtractionResult,
)
from bastion.attacks.extraction.equations import EquationSolving
from bastion.attacks.extraction.jacobian import JacobianAugmentation
from bastion.attacks.extraction.knockoff import KnockoffNets

__all__ = [
    "EquationSolving",
    "Extraction",
    "ExtractionLog",
    "ExtractionPoint",
    "ExtractionResult",
    "JacobianAugmentation",
    "KnockoffNets",
]
