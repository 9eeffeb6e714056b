"""Demo models: small architectures, deterministic training recipes and a weights cache.

Weights are cached in the user cache directory (``BASTION_CACHE_DIR`` overrides it) as
PyTorch state dicts, written atomically and read with ``weights_only=True``, so loading a
cached model never unpickles code. The file name carries a hash of the recipe, so a changed
recipe never reads stale weights.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.core.errors import ConfigError, TargetError
from bastion.core.targets import SklearnTarget, Target, TorchTarget
from bastion.data import Dataset, load_dataset

__all__ = ["MLP", "ZOO", "Recipe", "SmallCNN", "cache_dir", "load_demo", "train_classifier"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int], None]


class SmallCNN(nn.Module):
    """Two convolutions and a linear head, for small greyscale or colour images."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 8) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1, stride=2),
            nn.ReLU(),
        )
        side = (image_size + 1) // 2
        self.head = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * side * side, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))  # type: ignore[no-any-return]


class MLP(nn.Module):
    """A fully connected network for tabular rows or flattened images."""

    def __init__(self, in_features: int, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class Recipe:
    """How a demo model is made: dataset, architecture, and training settings."""

    dataset: str
    arch: str  # "cnn", "mlp" or "logreg"
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    seed: int = 0

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


ZOO: dict[str, Recipe] = {
    "digits-cnn": Recipe("digits", "cnn", epochs=20),
    "digits-mlp": Recipe("digits", "mlp", epochs=40),
    "digits-logreg": Recipe("digits", "logreg"),
    "breast-cancer-mlp": Recipe("breast-cancer", "mlp", epochs=60),
    "fraud-mlp": Recipe("fraud", "mlp", epochs=20),
    "mnist-cnn": Recipe("mnist", "cnn", epochs=6),
}


def cache_dir() -> Path:
    """Where demo weights live: ``$BASTION_CACHE_DIR`` or the user cache directory."""
    env = os.environ.get("BASTION_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("bastion", appauthor=False))


def build_module(recipe: Recipe, data: Dataset) -> nn.Module:
    if recipe.arch == "cnn":
        c, h, _ = data.input_shape
        return SmallCNN(c, data.num_classes, h)
    if recipe.arch == "mlp":
        return MLP(int(np.prod(data.input_shape)), data.num_classes)
    raise ConfigError(f"recipe {recipe} has no PyTorch architecture")


def train_classifier(
    module: nn.Module, data: Dataset, recipe: Recipe, progress: ProgressFn | None = None
) -> nn.Module:
    """Train ``module`` on ``data``'s training split, deterministically for a given seed."""
    gen = torch.Generator().manual_seed(recipe.seed)
    x = torch.from_numpy(data.x_train)
    y = torch.from_numpy(data.y_train)
    # class weights keep a rare class (fraud) from being ignored
    counts = torch.bincount(y, minlength=data.num_classes).float().clamp_min(1)
    weight = (counts.sum() / counts) / data.num_classes
    loss_fn = nn.CrossEntropyLoss(weight=weight)
    opt = torch.optim.Adam(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    module.train()
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            opt.zero_grad()
            loss_fn(module(x[idx]), y[idx]).backward()
            opt.step()
        if progress is not None:
            progress(epoch + 1, recipe.epochs)
    module.eval()
    return module


def _atomic_save(state: dict[str, torch.Tensor], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    os.close(fd)
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load_state(path: Path) -> dict[str, torch.Tensor] | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged cache file is rebuilt, whatever the error
        log.warning("ignoring unreadable cached weights %s: %s", path, exc)
        return None
    return state if isinstance(state, dict) else None


def _logreg(data: Dataset, recipe: Recipe) -> Any:
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=2000, C=10.0, random_state=recipe.seed)
    model.fit(data.x_train.reshape(len(data.x_train), -1), data.y_train)
    return model


def load_demo(
    name: str = "digits-cnn",
    *,
    device: str | torch.device | None = "cpu",
    progress: ProgressFn | None = None,
    retrain: bool = False,
) -> tuple[Target, Dataset]:
    """A built-in demo model as a target, with its dataset; trained on first use and cached."""
    if name not in ZOO:
        raise TargetError(f"no demo model {name!r}; built-in: {', '.join(ZOO)}")
    recipe = ZOO[name]
    data = load_dataset(recipe.dataset)
    if recipe.arch == "logreg":
        # seconds to fit and nothing to unpickle: refit rather than cache
        est = _logreg(data, recipe)
        if progress is not None:
            progress(1, 1)
        target: Target = SklearnTarget(
            est,
            num_classes=data.num_classes,
            bounds=data.bounds,
            input_shape=data.input_shape,
            name=name,
        )
        return target, data
    # the initial weights come from the recipe's seed too, and the caller's RNG is left alone
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        module = build_module(recipe, data)
    path = cache_dir() / f"{name}-{recipe.key()}.pt"
    state = None if retrain or not path.exists() else _load_state(path)
    if state is not None:
        module.load_state_dict(state)
        module.eval()
    else:
        log.info("training demo model %s (cached at %s)", name, path)
        train_classifier(module, data, recipe, progress)
        _atomic_save(module.state_dict(), path)
    target = TorchTarget(
        module,
        num_classes=data.num_classes,
        bounds=data.bounds,
        input_shape=data.input_shape,
        device=device,
        name=name,
    )
    return target, data
