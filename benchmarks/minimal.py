"""Minimal-perturbation attacks side by side: median L2 at matched success, success, time.

C-W, DeepFool, FAB and FAB-T run with their scan defaults under an L2 epsilon generous enough
that it rarely binds (3/8 of the input range times the root of the dimension: 3.0 on the 8x8
digits), so each returns its smallest successful point. PGD-L2 (40 steps, the scan default)
does not minimize anything: its point sits near the ball's surface whatever the model. Its
fair figure is the smallest epsilon at which it fools each input, found on a fine sweep
(``--grid``) that attacks only the inputs still standing; the size of its successful point
there is its distance (at most one grid step above the size PGD needed).

The medians are over the inputs every attack fooled (matched success), among the inputs the
model classifies correctly; "vs best" divides by the better of C-W and DeepFool.

    python benchmarks/minimal.py                                   # digits CNN, 200 inputs
    python benchmarks/minimal.py --models digits-cnn mnist-cnn --samples 100
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass

import torch

import bastion
from bastion import ATTACKS, PGD
from bastion.core.targets import Target


@dataclass
class Row:
    name: str
    fooled: torch.Tensor
    sizes: torch.Tensor
    seconds: float
    queries: int


def minimal(
    name: str, target: Target, x: torch.Tensor, y: torch.Tensor, eps: float, **kw: object
) -> Row:
    """One run with the entry's scan defaults (and ``kw``) at the generous epsilon."""
    entry = ATTACKS.get(name)
    attack = ATTACKS.create(name, **{**entry.defaults, **kw})
    result = attack.run(target, x, y, eps=eps, norm="l2")
    label = name if not kw else f"{name} ({', '.join(f'{k}={v}' for k, v in kw.items())})"
    return Row(label, result.success, result.distances, result.seconds, result.queries)


def pgd_sweep(target: Target, x: torch.Tensor, y: torch.Tensor, top: float, grid: float) -> Row:
    """PGD-L2 at each epsilon of the sweep, on the inputs still standing."""
    fooled = torch.zeros(len(x), dtype=torch.bool)
    sizes = torch.full((len(x),), math.inf)
    seconds, queries = 0.0, 0
    for i in range(1, round(top / grid) + 1):
        todo = (~fooled).nonzero().squeeze(1)
        if len(todo) == 0:
            break
        result = PGD(steps=40).run(target, x[todo], y[todo], eps=i * grid, norm="l2")
        seconds += result.seconds
        queries += result.queries
        hit = todo[result.success]
        fooled[hit] = True
        sizes[hit] = result.distances[result.success]
    return Row(f"pgd-l2 (smallest eps, grid {grid:g})", fooled, sizes, seconds, queries)


def bench(model: str, samples: int, grid: float) -> None:
    target, data = bastion.load_demo(model, device="cpu")
    x = torch.from_numpy(data.x_test[:samples])
    y = torch.from_numpy(data.y_test[:samples])
    correct = target.predict(x) == y
    x, y = x[correct], y[correct]
    lo, hi = target.bounds
    eps = round(0.375 * (hi - lo) * math.prod(x.shape[1:]) ** 0.5, 2)
    rows = [
        minimal("cw", target, x, y, eps),
        minimal("deepfool", target, x, y, eps),
        minimal("fab", target, x, y, eps),
        minimal("fab", target, x, y, eps, targets=9),
        pgd_sweep(target, x, y, eps, grid),
    ]
    matched = torch.stack([r.fooled for r in rows]).all(dim=0)
    medians = [float(r.sizes[matched].median()) for r in rows]
    best = min(medians[0], medians[1])
    print(
        f"\n{model}: {len(x)} correctly classified of the first {samples} test inputs; "
        f"L2 epsilon {eps:g}; matched success on {int(matched.sum())}"
    )
    header = ("attack", "success", "median L2", "vs best", "seconds", "queries")
    print("{:<36} {:>8} {:>10} {:>8} {:>8} {:>9}".format(*header))
    for row, med in zip(rows, medians, strict=True):
        print(
            f"{row.name:<36} {row.fooled.float().mean():>8.1%} {med:>10.3f} {med / best:>8.3f} "
            f"{row.seconds:>8.2f} {row.queries:>9}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["digits-cnn"])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--grid", type=float, default=0.02, help="PGD sweep step (L2)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("command: python " + " ".join(sys.argv))
    print(f"torch {torch.__version__}, cpu, threads {torch.get_num_threads()}")
    for model in args.models:
        bench(model, args.samples, args.grid)


if __name__ == "__main__":
    main()
