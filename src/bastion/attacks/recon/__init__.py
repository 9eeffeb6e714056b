"""Reconnaissance: what a black box accepts and returns (ATLAS AML.T0013, AML.T0014)."""

from bastion.attacks.recon.endpoint import Reconnaissance, ReconResult

__all__ = ["ReconResult", "Reconnaissance"]
