"""Threat modeling, control gap analysis and incident mapping for AI systems.

Describe a system (:class:`SystemDescription`, a YAML file), then:

* :func:`build_threat_model` ranks the catalog's techniques for it, finds attack paths,
  prioritizes mitigations and emits an :class:`AssessmentPlan` for ``bastion scan --plan``;
* :func:`analyse_gaps` compares the threat model with declared controls and scan evidence;
* :func:`map_incident` turns observed signals into candidate techniques and playbook steps.
"""

from __future__ import annotations

from bastion.threats.model import (
    AssetTechnique,
    PathScore,
    PrioritizedMitigation,
    ThreatModel,
    build_threat_model,
)
from bastion.threats.plan import AssessmentPlan, PlanItem, load_plan, save_plan
from bastion.threats.system import SystemDescription, load_system

__all__ = [
    "AssessmentPlan",
    "AssetTechnique",
    "PathScore",
    "PlanItem",
    "PrioritizedMitigation",
    "SystemDescription",
    "ThreatModel",
    "build_threat_model",
    "load_plan",
    "load_system",
    "save_plan",
]
