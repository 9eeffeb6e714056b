"""Shadow models: copies of the target's training recipe, trained on known data, in parallel
processes, with their answers cached.

With one process (``n_jobs=1``) each shadow is a task of :func:`bastion.core.parallel.task_map`,
so an engine that installs a map of its own (a Ray cluster) trains them as separate tasks.

A shadow is trained on a known subset of a population and asked about the candidates; only
its answers (probabilities, numbers) are kept, in ``.npz`` files named by a hash of
everything that made them (the data, the subset, the recipe, the seed), so a rerun trains
nothing and a cache file can never carry code.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.parallel import task_map
from bastion.zoo.fit import FitSettings

__all__ = ["ShadowJob", "shadow_recipe", "train_shadows"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    """One shadow: trained on ``x_train`` (indices ``train`` of the population), answering
    about ``x_query``."""

    index: int
    train: np.ndarray
    seed: int


def shadow_recipe(target: Any, settings: FitSettings) -> Any:
    """What shadows of ``target`` are: a clone of its scikit-learn estimator when it has one
    (the adversary knows the training algorithm, as LiRA assumes), else ``settings``."""
    inner = target
    while inner is not None and not hasattr(inner, "estimator"):
        inner = getattr(inner, "inner", None)
    if inner is not None:
        from sklearn.base import clone

        return clone(inner.estimator)
    return settings


def _key(recipe: Any, x: np.ndarray, y: np.ndarray, xq: np.ndarray, job: ShadowJob) -> str:
    h = hashlib.sha256()
    desc = repr(asdict(recipe)) if isinstance(recipe, FitSettings) else repr(recipe)
    for part in (desc.encode(), x.tobytes(), y.tobytes(), xq.tobytes(), job.train.tobytes()):
        h.update(hashlib.sha256(part).digest())
    h.update(str(job.seed).encode())
    return h.hexdigest()[:24]


def _fit_one(
    recipe: Any,
    x: np.ndarray,
    y: np.ndarray,
    xq: np.ndarray,
    num_classes: int,
    job: ShadowJob,
) -> np.ndarray:
    """Train one shadow and return its log-probabilities on ``xq`` (in a worker process)."""
    import torch

    torch.set_num_threads(1)
    xt, yt = x[job.train], y[job.train]
    if isinstance(recipe, FitSettings):
        from bastion.zoo.fit import build_model, fit_model

        model = build_model(x.shape[1:], num_classes, recipe, seed=job.seed)
        fit_model(model, torch.from_numpy(xt), torch.from_numpy(yt), recipe, seed=job.seed)
        with torch.no_grad():
            # a worker process may get xq as a read-only memory map, which torch will not wrap
            queries = torch.from_numpy(np.array(xq, copy=True))
            return model(queries).double().log_softmax(dim=1).numpy()  # type: ignore[no-any-return]
    from sklearn.base import clone

    est = clone(recipe)
    if "random_state" in est.get_params():
        est.set_params(random_state=job.seed)
    est.fit(xt.reshape(len(xt), -1), yt)
    flat = xq.reshape(len(xq), -1)
    if hasattr(est, "predict_log_proba"):
        logp = np.asarray(est.predict_log_proba(flat), dtype=np.float64)
    else:
        logp = np.log(np.clip(np.asarray(est.predict_proba(flat), dtype=np.float64), 1e-300, None))
    out = np.full((len(xq), num_classes), -np.inf)
    out[:, np.asarray(est.classes_, dtype=int)] = logp
    return np.asarray(np.maximum(out, -1e4))


def train_shadows(
    recipe: Any,
    x: np.ndarray,
    y: np.ndarray,
    x_query: np.ndarray,
    num_classes: int,
    jobs: list[ShadowJob],
    *,
    n_jobs: int = 1,
    cache_dir: str | Path | None = None,
) -> np.ndarray:
    """(shadows, queries, classes) log-probabilities: each job's shadow trained on its subset of
    ``x, y`` and asked about ``x_query``; trained in ``n_jobs`` processes (with one, each
    shadow is a task of the current :func:`~bastion.core.parallel.task_map`), read from
    ``cache_dir`` when it holds them."""
    if n_jobs == 0 or n_jobs < -1:
        raise ConfigError(f"n_jobs must be a positive number of processes or -1, got {n_jobs}")
    cache = Path(cache_dir).expanduser() if cache_dir is not None else None
    out: list[np.ndarray | None] = [None] * len(jobs)
    keys = [_key(recipe, x, y, x_query, job) for job in jobs]
    if cache is not None:
        for i, key in enumerate(keys):
            path = cache / f"shadow-{key}.npz"
            if path.is_file():
                try:
                    with np.load(path, allow_pickle=False) as f:
                        out[i] = f["logp"]
                except (OSError, ValueError, KeyError) as exc:
                    log.warning("ignoring unreadable cached shadow %s: %s", path, exc)
    todo = [i for i, o in enumerate(out) if o is None]
    if todo:
        if n_jobs == 1 or len(todo) == 1:
            fit = functools.partial(_fit_one, recipe, x, y, x_query, num_classes)
            fresh = task_map(fit, [jobs[i] for i in todo])
        else:
            from joblib import Parallel, delayed

            fresh = Parallel(n_jobs=n_jobs, backend="loky")(
                delayed(_fit_one)(recipe, x, y, x_query, num_classes, jobs[i]) for i in todo
            )
        for i, proba in zip(todo, fresh, strict=True):
            out[i] = proba
            if cache is not None:
                _save(cache / f"shadow-{keys[i]}.npz", proba)
    return np.stack([o for o in out if o is not None])


def _save(path: Path, proba: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, logp=proba)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
