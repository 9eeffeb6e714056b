"""Fixtures for threat-modeling tests: the example systems shipped in examples/threats."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.threats import SystemDescription, ThreatModel, build_threat_model, load_system

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "threats"
SYSTEM_EXAMPLES = sorted(p for p in EXAMPLES.glob("*.yaml") if not p.stem.endswith("controls"))


@pytest.fixture(scope="session")
def examples_dir() -> Path:
    return EXAMPLES


@pytest.fixture(scope="session")
def models() -> dict[str, ThreatModel]:
    return {p.stem: build_threat_model(load_system(p)) for p in SYSTEM_EXAMPLES}


@pytest.fixture(scope="session")
def fraud_system() -> SystemDescription:
    return load_system(EXAMPLES / "fraud-scoring-api.yaml")
