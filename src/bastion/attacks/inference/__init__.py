"""Inference attacks: what a model leaks about its training data (ATLAS AML.T0024.000, .001)."""

from bastion.attacks.inference.inversion import (
    AttributeInference,
    AttributeResult,
    InversionResult,
    MIFace,
)
from bastion.attacks.inference.membership import (
    LabelOnlyMembership,
    LiRA,
    LossThreshold,
    MembershipInference,
    MembershipResult,
    ShadowMembership,
)

__all__ = [
    "AttributeInference",
    "AttributeResult",
    "InversionResult",
    "LabelOnlyMembership",
    "LiRA",
    "LossThreshold",
    "MIFace",
    "MembershipInference",
    "MembershipResult",
    "ShadowMembership",
]
