"""Assessments: scans that run attacks against a target and conclude findings."""

from bastion.assess.adaptive import NaiveVsAdaptive, naive_target, naive_vs_adaptive
from bastion.assess.scan import EpsilonResult, Example, ScanResult, default_attacks, scan
from bastion.assess.stats import wilson_interval

__all__ = [
    "EpsilonResult",
    "Example",
    "NaiveVsAdaptive",
    "ScanResult",
    "default_attacks",
    "naive_target",
    "naive_vs_adaptive",
    "scan",
    "wilson_interval",
]
