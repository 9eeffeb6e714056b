"""Fixtures for catalog tests: the reference frameworks, read from ../shared/frameworks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.catalog import AidefendFramework, AtlasFramework, load_aidefend, load_atlas

REPO_ROOT = Path(__file__).resolve().parents[2]


def frameworks_dir() -> Path:
    override = os.environ.get("BASTION_FRAMEWORKS_DIR")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "frameworks"


def _need(name: str) -> Path:
    path = frameworks_dir() / name
    if not path.is_file():
        pytest.skip(
            f"reference framework {name} not found in {frameworks_dir()} "
            "(set BASTION_FRAMEWORKS_DIR to the folder holding ATLAS.yaml and aidefend.json)"
        )
    return path


@pytest.fixture(scope="session")
def atlas_path() -> Path:
    return _need("ATLAS.yaml")


@pytest.fixture(scope="session")
def aidefend_path() -> Path:
    return _need("aidefend.json")


@pytest.fixture(scope="session")
def atlas(atlas_path: Path) -> AtlasFramework:
    return load_atlas(atlas_path)


@pytest.fixture(scope="session")
def aidefend(aidefend_path: Path) -> AidefendFramework:
    return load_aidefend(aidefend_path)
