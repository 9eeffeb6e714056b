"""bastion's PGD against a plain PyTorch PGD loop doing the same passes, in one process.

Both run Linf PGD with a random start drawn from the same seed, the same number of forward
and backward passes, projection and clipping, and one final forward pass to read the labels.
Runs alternate (plain, bastion, plain, ...) so that machine noise hits both alike; the
median time of each is compared.

    python benchmarks/pgd_overhead.py              # CPU, the workloads below
    python benchmarks/pgd_overhead.py --device cuda

Goal: ratio (bastion / plain) at most 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from bastion import PGD, TorchTarget
from bastion.zoo.models import SmallCNN


def plain_pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int, seed: int
) -> torch.Tensor:
    """PGD as people write it by hand."""
    alpha = 2.5 * eps / steps
    gen = torch.Generator().manual_seed(seed)
    noise = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    delta = (x + noise.to(x.device)).clamp(0, 1) - x
    for _ in range(steps):
        x_adv = (x + delta).requires_grad_(True)
        loss = F.cross_entropy(model(x_adv), y, reduction="none")
        (grad,) = torch.autograd.grad(loss.sum(), x_adv)
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    with torch.no_grad():
        return model(x + delta).argmax(1)


def _time(fn: Callable[[], object], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def run(
    name: str,
    model: nn.Module,
    shape: tuple[int, ...],
    batch: int,
    steps: int,
    repeats: int,
    device: torch.device,
) -> float:
    model = model.to(device).eval()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand((batch, *shape), generator=gen).to(device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(device)
    target = TorchTarget(model, num_classes=10, input_shape=shape)
    # every input takes every step, as in the plain loop (early stopping would skip passes)
    attack = PGD(steps=steps, early_stop=False)
    eps = 0.1
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    # same passes, same start: the two must agree on the labels they end with
    ours = attack.run(target, x, y, eps=eps, seed=1).predictions
    theirs = plain_pgd(model, x, y, eps, steps, seed=1)
    agree = float((ours == theirs).float().mean())

    plain_t, ours_t = [], []
    for _ in range(repeats):
        plain_t.append(_time(lambda: plain_pgd(model, x, y, eps, steps, 1), sync))
        ours_t.append(_time(lambda: attack.run(target, x, y, eps=eps, seed=1), sync))
    p, b = statistics.median(plain_t), statistics.median(ours_t)
    ratio = b / p
    print(
        f"{name:<28} batch {batch:>4} steps {steps:>3}  plain {p * 1e3:8.1f} ms  "
        f"bastion {b * 1e3:8.1f} ms  ratio {ratio:5.3f}  labels agree {agree:.1%}"
    )
    return ratio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    ratios = [
        run("digits CNN (8x8)", SmallCNN(1, 10, 8), (1, 8, 8), 200, 40, args.repeats, device),
        run(
            "MNIST-size CNN (28x28)",
            SmallCNN(1, 10, 28),
            (1, 28, 28),
            256,
            40,
            args.repeats,
            device,
        ),
        run(
            "MLP (tabular, 30 features)",
            nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 10)),
            (30,),
            512,
            40,
            args.repeats,
            device,
        ),
    ]
    worst = max(ratios)
    print(f"worst ratio {worst:.3f} (goal <= 1.10): {'met' if worst <= 1.10 else 'NOT met'}")


if __name__ == "__main__":
    main()
