"""Ownership verification: evidence that a suspect model was copied from ours."""

from bastion.defences.ownership.watermark import (
    OwnershipResult,
    WatermarkedTarget,
    null_agreement,
    verify_ownership,
)

__all__ = ["OwnershipResult", "WatermarkedTarget", "null_agreement", "verify_ownership"]
