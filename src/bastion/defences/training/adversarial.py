"""Adversarial training: PGD (Madry 2018), TRADES (Zhang 2019) and fast FGSM training (Wong 2020).

The three share one training loop (:class:`AdversarialTraining`) and differ in two hooks: how
the training batch is perturbed (:meth:`~AdversarialTraining.perturb`) and what loss the
perturbed batch is trained on (:meth:`~AdversarialTraining.loss`). The loop holds out a
validation split and measures robust accuracy on it under PGD after every epoch; the weights
with the best robust validation accuracy are the ones returned (early stopping against robust
overfitting: Rice, Wong, Kolter, "Overfitting in adversarially robust deep learning", 2020,
arXiv:2002.11569), and a collapse of robust accuracy (catastrophic overfitting, the failure of
single-step training: after the warm-up, below half its best and at least 5 points under it)
is detected, reported and stops the run.

Epsilon is in the units of the model's inputs (before any normalization the target applies),
like the threat of a scan. Training can be resumed: give ``fit`` a checkpoint path and an
interrupted run picks up after the last finished epoch, with the same result as a run that was
never interrupted (the batch order and the random starts come from the seed and the epoch).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bastion.attacks._ops import project, random_in_ball
from bastion.core.errors import ConfigError, DataError
from bastion.core.registry import register_defence
from bastion.core.targets import Target, TorchTarget
from bastion.core.threat import Access, Norm
from bastion.defences.base import Trainer
from bastion.defences.training._common import like, split_data, torch_module

__all__ = ["AdversarialTraining", "FastAdversarialTraining", "PGDTraining", "Trades", "reinit"]

log = logging.getLogger(__name__)

ProgressFn = Callable[[int, int, dict[str, Any]], None]
Forward = Callable[[torch.Tensor], torch.Tensor]

#: after the warm-up, robust validation accuracy below this share of its best so far, and at
#: least _COLLAPSE_POINTS below it, is a collapse (catastrophic overfitting)
_COLLAPSE_SHARE = 0.5
_COLLAPSE_POINTS = 0.05


def reinit(module: nn.Module, seed: int) -> nn.Module:
    """Fresh weights for ``module`` (every layer's ``reset_parameters``), drawn from ``seed``
    without touching the caller's random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for m in module.modules():
            reset = getattr(m, "reset_parameters", None)
            if callable(reset):
                reset()
    return module


class _Box:
    """Where a perturbed training input may go: the epsilon ball, the input bounds and, for
    tabular data with constraints, each feature's own range, step and mutability."""

    def __init__(
        self,
        norm: Norm,
        eps: float,
        bounds: tuple[float, float],
        constraints: Any = None,
    ) -> None:
        self.norm, self.eps, self.bounds, self.rules = norm, eps, bounds, constraints

    def __call__(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        delta = project(x_adv - x, self.norm, self.eps)
        out = (x + delta).clamp(*self.bounds)
        if self.rules is not None:
            flat = x.reshape(len(x), -1)
            lo, hi = self.rules.box(flat, self.norm, self.eps)
            out = torch.maximum(torch.minimum(out.reshape_as(flat), hi), lo).reshape_as(x)
        return out

    def snap(self, x: torch.Tensor, x_adv: torch.Tensor) -> torch.Tensor:
        """Stepped and whole features back on their grid (constraints only)."""
        if self.rules is None:
            return x_adv
        flat = x.reshape(len(x), -1)
        lo, hi = self.rules.box(flat, self.norm, self.eps)
        return self.rules.snap(x_adv.reshape_as(flat), lo, hi).reshape_as(x)  # type: ignore[no-any-return]


def _ascend(grad: torch.Tensor, norm: Norm) -> torch.Tensor:
    """The steepest-ascent direction of unit size under ``norm``."""
    if norm is Norm.LINF:
        return grad.sign()
    flat = grad.reshape(len(grad), -1)
    size = flat.norm(dim=1).clamp_min(1e-12).view((-1,) + (1,) * (grad.ndim - 1))
    unit: torch.Tensor = grad / size
    return unit


def pgd(
    forward: Forward,
    x: torch.Tensor,
    y: torch.Tensor,
    box: _Box,
    *,
    steps: int,
    step_size: float,
    generator: torch.Generator,
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> torch.Tensor:
    """Untargeted PGD from a random start inside the ball (cross-entropy unless ``loss``)."""
    loss_fn = loss or (lambda out, y_: F.cross_entropy(out, y_))
    x_adv = box(x, x + random_in_ball(x, box.norm, box.eps, generator))
    for _ in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_fn(forward(x_adv), y), x_adv)
        x_adv = box(x, x_adv.detach() + step_size * _ascend(grad, box.norm))
    return box.snap(x, x_adv).detach()


class AdversarialTraining(Trainer):
    """The shared loop of the adversarial trainers (not registered itself)."""

    def __init__(
        self,
        *,
        epsilon: float = 0.3,
        norm: str = "linf",
        steps: int = 10,
        step_size: float | None = None,
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 0.0,
        val_fraction: float = 0.1,
        val_steps: int = 10,
        patience: int | None = None,
        warmup: int = 5,
        from_scratch: bool = True,
        seed: int = 0,
    ) -> None:
        self.epsilon = epsilon
        self.norm = norm
        self.steps = steps
        self.step_size = step_size
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.val_fraction = val_fraction
        self.val_steps = val_steps
        self.patience = patience
        self.warmup = warmup
        self.from_scratch = from_scratch
        self.seed = seed

    # ------------------------------------------------------------------ checks
    def _norm(self) -> Norm:
        try:
            norm = Norm(str(self.norm).lower())
        except ValueError:
            raise ConfigError(f"norm must be linf or l2 for training, got {self.norm!r}") from None
        if norm not in (Norm.LINF, Norm.L2):
            raise ConfigError(f"adversarial training supports linf and l2, not {norm.value}")
        return norm

    def _check_params(self) -> None:
        self._norm()
        if not self.epsilon > 0:
            raise ConfigError(f"epsilon must be positive, got {self.epsilon}")
        if self.steps < 1 or self.epochs < 1 or self.batch_size < 1 or self.val_steps < 1:
            raise ConfigError("steps, epochs, batch_size and val_steps must be at least 1")
        if self.step_size is not None and not self.step_size > 0:
            raise ConfigError(f"step_size must be positive, got {self.step_size}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ConfigError("lr must be positive and weight_decay at least 0")
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"patience must be at least 1 (or None), got {self.patience}")
        if self.warmup < 0:
            raise ConfigError(f"warmup must be at least 0 epochs, got {self.warmup}")

    def _step(self, eps: float) -> float:
        """The attack's step for a ball of radius ``eps`` (a given step_size scales with it
        during the warm-up)."""
        if self.step_size is not None:
            return self.step_size * eps / self.epsilon
        return 2.5 * eps / self.steps

    def _ramp(self, epoch: float) -> float:
        """The share of epsilon trained against at ``epoch`` (fractional, counted from 0):
        linear over the warm-up, which lasts ``warmup`` epochs but at most a third of them."""
        length = min(self.warmup, self.epochs // 3)
        return 1.0 if length == 0 else min(1.0, (epoch + 1e-9) / length)

    # ------------------------------------------------------------------ the hooks
    def perturb(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, gen: torch.Generator
    ) -> torch.Tensor:
        """The training batch's adversarial counterpart."""
        raise NotImplementedError

    def loss(
        self, forward: Forward, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The loss to minimize and the logits whose accuracy is the training accuracy."""
        out = forward(x_adv)
        return F.cross_entropy(out, y), out

    # ------------------------------------------------------------------ the loop
    def _fingerprint(self, target: TorchTarget, n: int) -> str:
        blob = json.dumps(
            {
                "trainer": type(self).registry_name,
                "params": self.get_params(),
                "arch": type(target.model).__name__,
                "samples": n,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def fit(
        self,
        target: Target,
        data: Any,
        *,
        progress: ProgressFn | None = None,
        checkpoint: str | Path | None = None,
        constraints: Any = None,
    ) -> TorchTarget:
        """Train adversarially and return the hardened target (``target`` is unchanged).

        Args:
            target: a PyTorch target; its architecture, bounds and normalization are kept.
            data: ``(x, y)`` arrays or a :class:`~bastion.data.Dataset` (its training split).
            progress: called after every epoch with ``(epoch, epochs, record)``.
            checkpoint: a file to save each finished epoch to, and to resume from.
            constraints: tabular :class:`~bastion.core.constraints.Constraints`, resolved to
                the data's columns: the training perturbations respect them.
        """
        self._check_params()
        module = copy.deepcopy(torch_module(target))
        assert isinstance(target, TorchTarget)  # torch_module() checked it
        if self.from_scratch:
            reinit(module, self.seed)
        x_all, y_all = split_data(data)
        if len(x_all) < 10:
            raise DataError(f"{len(x_all)} training samples: too few to train and validate on")
        device = target.device
        work = like(target, module, f"{target.name}+{type(self).registry_name}")

        def forward(x: torch.Tensor) -> torch.Tensor:
            return module(work._normalize(x))  # type: ignore[no-any-return]

        rules = None
        if constraints is not None:
            names = getattr(data, "feature_names", None)
            if names:
                constraints = constraints.with_columns(names)
            rules = constraints.resolve(int(np.prod(x_all.shape[1:])), target.bounds)
            rules.check_data(torch.from_numpy(x_all))
        box = _Box(self._norm(), float(self.epsilon), target.bounds, rules)

        order = np.random.default_rng(self.seed).permutation(len(x_all))
        n_val = max(1, round(len(x_all) * self.val_fraction))
        val, train = order[:n_val], order[n_val:]
        x_val = torch.from_numpy(x_all[val]).to(device)
        y_val = torch.from_numpy(y_all[val]).to(device)
        x_tr = torch.from_numpy(x_all[train]).to(device)
        y_tr = torch.from_numpy(y_all[train]).to(device)

        opt = torch.optim.Adam(module.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        state = _Checkpoint(checkpoint, self._fingerprint(target, len(x_all)))
        start, history = state.restore(module, opt)
        best = max(history, key=lambda r: r["robust_accuracy"], default=None)
        best_state = state.best if best is not None else copy.deepcopy(module.state_dict())
        self.catastrophic_overfitting_: int | None = None
        for r in history:
            if r.get("collapsed"):
                self.catastrophic_overfitting_ = int(r["epoch"])
        stop = self.catastrophic_overfitting_ is not None or self._patience_spent(history)
        began = time.perf_counter() - sum(r["seconds"] for r in history)
        for epoch in range(start, self.epochs) if not stop else ():
            t0 = time.perf_counter()
            gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
            perm = torch.randperm(len(x_tr), generator=gen).to(device)
            total, hits, seen = 0.0, 0, 0
            for i in range(0, len(perm), self.batch_size):
                idx = perm[i : i + self.batch_size]
                x, y = x_tr[idx], y_tr[idx]
                scale = self._ramp(epoch + i / len(perm))
                ball = box if scale >= 1 else _Box(box.norm, box.eps * scale, box.bounds, rules)
                module.eval()
                x_adv = self.perturb(forward, x, y, ball, gen)
                module.train()
                loss, out = self.loss(forward, x, x_adv, y)
                opt.zero_grad()
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()
                total += float(loss.detach()) * len(idx)
                hits += int((out.argmax(1) == y).sum())
                seen += len(idx)
            module.eval()
            clean, robust = self._validate(forward, x_val, y_val, box, epoch)
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": total / max(seen, 1),
                "train_accuracy": hits / max(seen, 1),
                "clean_accuracy": clean,
                "robust_accuracy": robust,
                "seconds": time.perf_counter() - t0,
                "collapsed": False,
            }
            warm = epoch + 1 > min(self.warmup, self.epochs // 3)
            top = best["robust_accuracy"] if best is not None else 0.0
            collapsed = robust < _COLLAPSE_SHARE * top and top - robust >= _COLLAPSE_POINTS
            if warm and best is not None and collapsed:
                # robust accuracy collapsed: catastrophic overfitting
                record["collapsed"] = True
                self.catastrophic_overfitting_ = epoch + 1
                log.warning(
                    "catastrophic overfitting at epoch %d: robust validation accuracy fell "
                    "from %.1f%% to %.1f%%; keeping epoch %d",
                    epoch + 1,
                    100 * best["robust_accuracy"],
                    100 * robust,
                    best["epoch"],
                )
            elif best is None or robust > best["robust_accuracy"]:
                best = record
                best_state = copy.deepcopy(module.state_dict())
            history.append(record)
            state.save(module, opt, epoch + 1, best_state, history)
            if progress is not None:
                progress(epoch + 1, self.epochs, record)
            if record["collapsed"] or self._patience_spent(history):
                break
        module.load_state_dict(best_state)
        module.eval()
        self.history_ = history
        self.best_epoch_ = int(best["epoch"]) if best is not None else 0
        self.stopped_early_ = len(history) < self.epochs
        self.seconds_ = time.perf_counter() - began
        return work

    def _patience_spent(self, history: list[dict[str, Any]]) -> bool:
        if self.patience is None or not history:
            return False
        best_at = max(range(len(history)), key=lambda i: history[i]["robust_accuracy"])
        return len(history) - 1 - best_at >= self.patience

    def _validate(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, epoch: int
    ) -> tuple[float, float]:
        """Clean and PGD robust accuracy on the validation split."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7_919)
        clean = robust = 0
        for i in range(0, len(x), 256):
            xb, yb = x[i : i + 256], y[i : i + 256]
            with torch.no_grad():
                clean += int((forward(xb).argmax(1) == yb).sum())
            step = 2.5 * box.eps / self.val_steps
            x_adv = pgd(forward, xb, yb, box, steps=self.val_steps, step_size=step, generator=gen)
            with torch.no_grad():
                robust += int((forward(x_adv).argmax(1) == yb).sum())
        return clean / len(x), robust / len(x)


class _Checkpoint:
    """A training run's state after each finished epoch, in one file, written atomically and
    read back as numbers only (``weights_only``); refused when it belongs to other settings."""

    def __init__(self, path: str | Path | None, fingerprint: str) -> None:
        self.path = Path(path) if path is not None else None
        self.fingerprint = fingerprint
        self.best: dict[str, torch.Tensor] = {}

    def restore(
        self, module: nn.Module, opt: torch.optim.Optimizer
    ) -> tuple[int, list[dict[str, Any]]]:
        if self.path is None or not self.path.is_file():
            return 0, []
        try:
            saved = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # a damaged checkpoint: say so rather than train over it
            raise ConfigError(
                f"cannot read the checkpoint {self.path}: {exc}; delete it to start over"
            ) from exc
        if not isinstance(saved, dict) or saved.get("fingerprint") != self.fingerprint:
            raise ConfigError(
                f"the checkpoint {self.path} belongs to another training run (other settings, "
                "model or data); delete it to start over"
            )
        module.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        self.best = saved["best"]
        log.info("resuming adversarial training after epoch %d", saved["epoch"])
        return int(saved["epoch"]), list(saved["history"])

    def save(
        self,
        module: nn.Module,
        opt: torch.optim.Optimizer,
        epoch: int,
        best: dict[str, torch.Tensor],
        history: list[dict[str, Any]],
    ) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        blob = {
            "fingerprint": self.fingerprint,
            "epoch": epoch,
            "model": module.state_dict(),
            "optimizer": opt.state_dict(),
            "best": best,
            "history": history,
        }
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".part")
        os.close(fd)
        try:
            torch.save(blob, tmp)
            os.replace(tmp, self.path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


_REGISTRATION: dict[str, Any] = {
    "family": "evasion",
    "defence_kind": "trainer",
    "access": Access.WHITE_BOX,
    "techniques": ("AML.T0015", "AML.T0043"),
    "mitigations": ("AML.M0003",),
    "data_kinds": ("image", "tabular"),
}


@register_defence(
    "pgd-at", defaults={"epsilon": 0.3}, fast={"epochs": 1, "steps": 2}, **_REGISTRATION
)
class PGDTraining(AdversarialTraining):
    """PGD adversarial training: train on the worst case PGD finds in the epsilon ball.

    Paper: Madry, Makelov, Schmidt, Tsipras, Vladu, "Towards Deep Learning Models Resistant to
    Adversarial Attacks", 2018, arXiv:1706.06083. Each batch is replaced by its PGD
    counterpart (``steps`` steps of ``step_size``, 2.5 * epsilon / steps by default, from a
    random start) and the model is trained on those with cross-entropy.

    Threat: evasion (white-box and transfer) within the Linf or L2 ball of ``epsilon``.

    Args:
        epsilon: radius of the ball trained against, in input units (0.3).
        norm: ``linf`` or ``l2`` (``linf``).
        steps: PGD steps per batch (10).
        step_size: PGD step (None: 2.5 * epsilon / steps).
        epochs: passes over the training data (30).
        lr: Adam's learning rate (1e-3).
        batch_size: samples per step (128).
        weight_decay: L2 penalty (0).
        val_fraction: share of the data held out to measure robust accuracy each epoch (0.1).
        val_steps: PGD steps of that measurement (10).
        patience: stop after this many epochs without a better robust validation accuracy
            (None: train every epoch; the best epoch's weights are returned either way).
        warmup: epochs over which the training epsilon (and step) ramps up linearly from 0,
            at most a third of ``epochs`` (5; 0 trains at full epsilon from the start). A
            model trained from scratch against a large epsilon can otherwise sit at chance.
        from_scratch: re-initialize the weights first (True) or fine-tune them (False).
        seed: seed of the split, the batch order, the random starts and the weights (0).

    After ``fit``: ``history_`` (per epoch: loss, training accuracy on the adversarial
    batches, clean and robust validation accuracy, seconds), ``best_epoch_``,
    ``stopped_early_``, ``catastrophic_overfitting_`` (the epoch of a collapse, or None).

    Example::

        robust = PGDTraining(epsilon=0.3, epochs=30).fit(target, dataset)
    """

    def perturb(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, gen: torch.Generator
    ) -> torch.Tensor:
        return pgd(
            forward, x, y, box, steps=self.steps, step_size=self._step(box.eps), generator=gen
        )


@register_defence(
    "trades", defaults={"epsilon": 0.3}, fast={"epochs": 1, "steps": 2}, **_REGISTRATION
)
class Trades(AdversarialTraining):
    """TRADES: trade clean accuracy against robustness with a smoothness term.

    Paper: Zhang, Yu, Jiao, Xing, El Ghaoui, Jordan, "Theoretically Principled Trade-off
    between Robustness and Accuracy", 2019, arXiv:1901.08573. The loss is the cross-entropy
    on the clean batch plus ``beta`` times the KL divergence between the model's predictions
    on the clean batch and on a perturbed one, where the perturbation (``steps`` PGD steps
    from a small Gaussian start) maximizes that KL divergence.

    Threat: evasion (white-box and transfer) within the Linf or L2 ball of ``epsilon``.

    Args:
        beta: weight of the robustness term (6.0, the paper's choice); the other arguments
            are :class:`PGDTraining`'s.

    Example::

        robust = Trades(epsilon=0.3, beta=6.0).fit(target, dataset)
    """

    def __init__(self, *, beta: float = 6.0, **kwargs: Any) -> None:
        # the registry reads the parent's parameters through **kwargs
        super().__init__(**kwargs)
        self.beta = beta

    def _check_params(self) -> None:
        super()._check_params()
        if not self.beta >= 0:
            raise ConfigError(f"beta must be at least 0, got {self.beta}")

    def perturb(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, gen: torch.Generator
    ) -> torch.Tensor:
        with torch.no_grad():
            p_clean = F.softmax(forward(x), dim=1)
        noise = torch.randn(x.shape, generator=gen).to(x.device, x.dtype) * 1e-3
        x_adv = box(x, x + noise)
        for _ in range(self.steps):
            x_adv.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(forward(x_adv), dim=1), p_clean, reduction="sum")
            (grad,) = torch.autograd.grad(kl, x_adv)
            x_adv = box(x, x_adv.detach() + self._step(box.eps) * _ascend(grad, box.norm))
        return box.snap(x, x_adv).detach()

    def loss(
        self, forward: Forward, x: torch.Tensor, x_adv: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        out = forward(x)
        out_adv = forward(x_adv)
        robust = F.kl_div(
            F.log_softmax(out_adv, dim=1), F.softmax(out, dim=1), reduction="batchmean"
        )
        return F.cross_entropy(out, y) + self.beta * robust, out_adv


@register_defence(
    "fast-at",
    defaults={"epsilon": 0.3},
    fast={"epochs": 1},
    **_REGISTRATION,
)
class FastAdversarialTraining(AdversarialTraining):
    """Fast adversarial training: one FGSM step from a random start per batch.

    Paper: Wong, Rice, Kolter, "Fast is better than free: Revisiting adversarial training",
    2020, arXiv:2001.03994. Each batch is perturbed by a uniform random start in the ball and
    one signed-gradient step of ``step_size`` (1.25 * epsilon by default), projected back.
    Single-step training can suddenly stop being robust ("catastrophic overfitting"): the
    robust validation accuracy measured with PGD after every epoch catches it, the run stops
    and the last good epoch's weights are returned, and ``catastrophic_overfitting_`` records
    the epoch.

    Threat: evasion (white-box and transfer) within the Linf or L2 ball of ``epsilon``.

    Args:
        step_size: the FGSM step (None: 1.25 * epsilon); ``steps`` is not used. The other
            arguments are :class:`PGDTraining`'s.

    Example::

        robust = FastAdversarialTraining(epsilon=0.3, epochs=15).fit(target, dataset)
    """

    def _step(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size * eps / self.epsilon
        return 1.25 * eps

    def perturb(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, gen: torch.Generator
    ) -> torch.Tensor:
        start = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device, x.dtype)
        start = project(start, Norm.L2, box.eps) if box.norm is Norm.L2 else start * box.eps
        x_adv = box(x, x + start).requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(x_adv), y), x_adv)
        x_adv = box(x, x_adv.detach() + self._step(box.eps) * _ascend(grad, box.norm))
        return box.snap(x, x_adv).detach()


@register_defence(
    "n-fgsm",
    defaults={"epsilon": 0.3},
    fast={"epochs": 1},
    **_REGISTRATION,
)
class NoiseFGSMTraining(FastAdversarialTraining):
    """Single-step adversarial training that resists catastrophic overfitting: N-FGSM.

    Paper: de Jorge, Bibi, Volpi, Sanyal, Torr, Rogez, Dokania, "Make Some Noise: Reliable
    and Efficient Single-Step Adversarial Training", 2022, arXiv:2202.01181. Like
    :class:`FastAdversarialTraining`, one gradient step per batch, but from a stronger random
    start (uniform in twice the epsilon ball) with a step of ``step_size`` (epsilon by
    default), and without projecting the result back into the epsilon ball: the training
    perturbation may reach three times epsilon. The paper finds this avoids the collapse that
    RS-FGSM suffers at large radii, at the same cost.

    Threat: evasion (white-box and transfer) within the Linf or L2 ball of ``epsilon``.

    Args:
        step_size: the gradient step (None: epsilon). The other arguments are
            :class:`PGDTraining`'s.

    Example::

        robust = NoiseFGSMTraining(epsilon=0.3, epochs=30).fit(target, dataset)
    """

    #: the random start's radius, in epsilons
    NOISE = 2.0

    def _step(self, eps: float) -> float:
        if self.step_size is not None:
            return self.step_size * eps / self.epsilon
        return eps

    def perturb(
        self, forward: Forward, x: torch.Tensor, y: torch.Tensor, box: _Box, gen: torch.Generator
    ) -> torch.Tensor:
        reach = self.NOISE * box.eps
        # no projection to the epsilon ball: only the noise's and the step's own reach (and
        # the bounds, and any constraints) limit the training perturbation
        wide = _Box(box.norm, reach + self._step(box.eps), box.bounds, box.rules)
        start = (torch.rand(x.shape, generator=gen) * 2 - 1).to(x.device, x.dtype)
        start = project(start, Norm.L2, reach) if box.norm is Norm.L2 else start * reach
        x_adv = wide(x, x + start).requires_grad_(True)
        (grad,) = torch.autograd.grad(F.cross_entropy(forward(x_adv), y), x_adv)
        x_adv = wide(x, x_adv.detach() + self._step(box.eps) * _ascend(grad, box.norm))
        return wide.snap(x, x_adv).detach()
