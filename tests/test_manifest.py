"""Signed data manifests: tampering is found sample by sample; a foreign key is refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.core.errors import IntegrityError
from bastion.data.manifest import (
    generate_keypair,
    make_manifest,
    read_manifest,
    sign_manifest,
    verify_manifest,
    write_manifest,
)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((40, 1, 4, 4)).astype(np.float32)
    y = rng.integers(0, 3, size=40)
    generate_keypair(tmp_path / "key.pem", tmp_path / "key.pub")
    manifest = make_manifest(x, y, name="toy", source="vendor-a", labeler="team-1")
    path = write_manifest(sign_manifest(manifest, tmp_path / "key.pem"), tmp_path / "m.json")
    return path, tmp_path / "key.pub", x, y


def test_untouched_data_verifies(signed: tuple[Path, Path, np.ndarray, np.ndarray]) -> None:
    path, pub, x, y = signed
    result = verify_manifest(read_manifest(path), pub, x, y)
    assert result.ok and result.samples == 40
    result.raise_for_changes()
    assert read_manifest(path)["samples"][3]["labeler"] == "team-1"
    assert oct((path.parent / "key.pem").stat().st_mode & 0o777) == "0o600"


def test_tampering_lists_the_exact_samples(
    signed: tuple[Path, Path, np.ndarray, np.ndarray],
) -> None:
    path, pub, x, y = signed
    x2, y2 = x.copy(), y.copy()
    x2[5, 0, 0, 0] += 0.5  # one pixel of sample 5
    y2[7] = (y2[7] + 1) % 3  # sample 7 relabelled
    x2 = np.delete(x2, 30, axis=0)  # sample 30 removed ...
    y2 = np.delete(y2, 30)
    x2 = np.concatenate([x2, np.ones((1, 1, 4, 4), np.float32)])  # ... and one appended
    y2 = np.append(y2, 0)
    result = verify_manifest(read_manifest(path), pub, x2, y2)
    assert result.modified == [5]
    assert result.relabeled == [(7, int(y[7]), int(y2[7]))]
    assert result.removed == [30]
    assert result.added == [39]
    assert not result.ok
    with pytest.raises(IntegrityError, match="modified 5") as err:
        result.raise_for_changes()
    assert "removed 30" in str(err.value) and "relabelled 7" in str(err.value)


def test_another_key_and_an_edited_manifest_are_refused(
    signed: tuple[Path, Path, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    path, pub, x, y = signed
    generate_keypair(tmp_path / "other.pem", tmp_path / "other.pub")
    with pytest.raises(IntegrityError, match="not by the trusted key"):
        verify_manifest(read_manifest(path), tmp_path / "other.pub", x, y)
    # re-signed by another key but presented as the first: the key id gives it away too
    forged = sign_manifest(read_manifest(path), tmp_path / "other.pem")
    forged["signature"]["key_id"] = read_manifest(path)["signature"]["key_id"]
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_manifest(forged, pub, x, y)
    edited = read_manifest(path)
    edited["samples"][7]["label"] = int(y[7]) + 1  # relabel inside the manifest itself
    with pytest.raises(IntegrityError, match="does not verify"):
        verify_manifest(edited, pub, x, y)
    unsigned = make_manifest(x, y)
    with pytest.raises(IntegrityError, match="not signed"):
        verify_manifest(unsigned, pub, x, y)
