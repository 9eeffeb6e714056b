"""Assessments: scans that run attacks against a target and conclude findings."""

from bastion.assess.scan import EpsilonResult, Example, ScanResult, default_attacks, scan
from bastion.assess.stats import wilson_interval

__all__ = ["EpsilonResult", "Example", "ScanResult", "default_attacks", "scan", "wilson_interval"]
