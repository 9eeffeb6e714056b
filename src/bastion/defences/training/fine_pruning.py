"""Fine-pruning: prune the neurons clean data leaves dormant, then fine-tune on clean data."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune

from bastion.core.errors import AccessError, ConfigError
from bastion.core.registry import register_defence
from bastion.core.targets import Target, TorchTarget
from bastion.core.threat import Access
from bastion.defences.base import Trainer
from bastion.defences.training._common import like, split_data, torch_module

__all__ = ["FinePruning"]


def _last_hidden(module: nn.Module, layer: str = "conv") -> nn.Module:
    """The last convolution (``layer="conv"``, when there is one), or the last linear layer
    before the output one."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if convs and layer == "conv":
        return convs[-1]
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if len(linears) < 2:
        raise AccessError("fine-pruning needs a hidden convolution or linear layer to prune")
    return linears[-2]


@register_defence(
    "fine-pruning",
    family="poisoning",
    defence_kind="trainer",
    access=Access.WHITE_BOX,
    techniques=("AML.T0018.000", "AML.T0018"),
    mitigations=("AML.M0008",),
    data_kinds=("image", "tabular"),
)
class FinePruning(Trainer):
    """Remove a backdoor by pruning dormant neurons of the last hidden layer, then fine-tuning.

    Paper: Liu, Dolan-Gavitt, Garg, "Fine-Pruning: Defending Against Backdooring Attacks on
    Deep Neural Networks", 2018, arXiv:1805.12185.

    A backdoor tends to live in neurons that clean inputs leave quiet. The channels of the
    last convolution (or units of the last hidden linear layer) are pruned in increasing
    order of their mean activation on clean data, as long as clean accuracy on a held-out
    part stays within ``max_drop`` of the start (or up to ``fraction`` when given); the
    pruned model is then fine-tuned on the clean data with the pruned weights held at zero
    (``torch.nn.utils.prune`` masks, which survive in the state dict).

    The paper prunes the last convolution (``layer="conv"``); in a network whose head has a
    hidden linear layer, the backdoor may live there instead (``layer="linear"``). Measured on
    the MNIST subset (BadNets 5%, SmallCNN, 500 clean images, ``benchmarks/poisoning.py``):
    with the defaults the backdoor survives on 2 seeds of 3; ``layer="linear", lr=1e-2``
    removes it on all 3 (attack success under 10%, clean accuracy within 3 points), and so
    does fine-tuning alone at that rate (``fraction=0, lr=1e-2``): there, the learning rate
    of the fine-tuning does the removing, not the pruning.

    Threat: a trojaned model; needs white-box access and a little clean labelled data.

    Args:
        layer: which layer to prune: ``conv`` (the last convolution; the last hidden linear
            layer in a network without one) or ``linear`` (the last hidden linear layer).
        fraction: prune exactly this share of the layer (None: prune by ``max_drop``).
        max_drop: the clean accuracy the pruning may cost before fine-tuning (0.05).
        epochs: fine-tuning epochs (10).
        lr: fine-tuning learning rate (1e-3).
        batch_size: fine-tuning batch size (64).
        seed: seed of the held-out split and the fine-tuning order (0).

    ``fit(target, (x_clean, y_clean))`` returns a new target (the input's model is not
    changed); ``pruned_`` says how many units were pruned of ``units_``.

    Example::

        repaired = FinePruning().fit(trojaned, (x_clean, y_clean))
    """

    def __init__(
        self,
        *,
        layer: str = "conv",
        fraction: float | None = None,
        max_drop: float = 0.05,
        epochs: int = 10,
        lr: float = 1e-3,
        batch_size: int = 64,
        seed: int = 0,
    ) -> None:
        self.layer = layer
        self.fraction = fraction
        self.max_drop = max_drop
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.seed = seed

    def _check_params(self) -> None:
        if self.layer not in ("conv", "linear"):
            raise ConfigError(f"layer is 'conv' or 'linear', got {self.layer!r}")
        if self.fraction is not None and not 0 <= self.fraction < 1:
            raise ConfigError(f"fraction must be in [0, 1), got {self.fraction}")
        if not 0 <= self.max_drop < 1:
            raise ConfigError(f"max_drop must be in [0, 1), got {self.max_drop}")
        if self.epochs < 0:
            raise ConfigError(f"epochs must be non-negative, got {self.epochs}")

    def fit(self, target: Target, data: Any) -> TorchTarget:
        self._check_params()
        module = copy.deepcopy(torch_module(target))
        assert isinstance(target, TorchTarget)  # torch_module() checked it
        x, y = split_data(data)
        rng = np.random.default_rng(self.seed)
        order = rng.permutation(len(x))
        held = order[: max(1, len(x) // 5)]
        work = like(target, module, f"{target.name}+fine-pruning")
        layer = _last_hidden(module, self.layer)

        # mean activation of each unit (after the ReLU that follows: negative parts are dead)
        acts: list[torch.Tensor] = []
        hook = layer.register_forward_hook(
            lambda _m, _i, out: acts.append(
                out.detach().clamp_min(0).flatten(2).mean(2) if out.ndim > 2 else out.detach()
            )
        )
        try:
            with work.inference_mode(), torch.no_grad():
                work.outputs(torch.from_numpy(x))
        finally:
            hook.remove()
        mean = torch.cat(acts).clamp_min(0).mean(0)
        units = int(mean.numel())
        ranked = torch.argsort(mean).tolist()

        def accuracy() -> float:
            with work.inference_mode(), torch.no_grad():
                pred = work.predict(torch.from_numpy(x[held])).cpu().numpy()
            return float((pred == y[held]).mean())

        mask = torch.ones(units)
        if self.fraction is not None:
            n = round(self.fraction * units)
            mask[ranked[:n]] = 0
            pruned = n
            self._apply(layer, mask)
        else:
            start = accuracy()
            pruned = 0
            for unit in ranked[:-1]:
                trial = mask.clone()
                trial[unit] = 0
                self._apply(layer, trial)
                if accuracy() < start - self.max_drop:
                    self._apply(layer, mask)
                    break
                mask, pruned = trial, pruned + 1
        self.units_ = units
        self.pruned_ = pruned
        self._fine_tune(work, module, x, y)
        return work

    @staticmethod
    def _apply(layer: nn.Module, mask: torch.Tensor) -> None:
        for name in ("weight", "bias"):
            if getattr(layer, name, None) is None:
                continue
            if prune.is_pruned(layer) and hasattr(layer, f"{name}_orig"):
                prune.remove(layer, name)  # type: ignore[no-untyped-call]
            param = getattr(layer, name)
            shape = (-1,) + (1,) * (param.ndim - 1)
            full = mask.to(param.device, param.dtype).view(shape).expand_as(param).clone()
            prune.custom_from_mask(layer, name, full)  # type: ignore[no-untyped-call]

    def _fine_tune(
        self, work: TorchTarget, module: nn.Module, x: np.ndarray, y: np.ndarray
    ) -> None:
        if self.epochs == 0:
            return
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam([p for p in module.parameters() if p.requires_grad], lr=self.lr)
        loss_fn = nn.CrossEntropyLoss()
        xs, ys = torch.from_numpy(x), torch.from_numpy(y)
        module.train()
        try:
            for _ in range(self.epochs):
                perm = torch.randperm(len(xs), generator=gen)
                for start in range(0, len(xs), self.batch_size):
                    idx = perm[start : start + self.batch_size]
                    opt.zero_grad()
                    loss_fn(work(xs[idx].to(work.device)), ys[idx].to(work.device)).backward()
                    opt.step()
        finally:
            module.eval()
