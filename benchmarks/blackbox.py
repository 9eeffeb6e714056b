"""The black-box attacks on the demo CNNs: how often, and with how many queries, they succeed.

- Square Attack, Linf eps 0.3 (1,000 queries at most): success rate on the correctly
  classified test inputs, and the median queries of the successful ones.
  Goal: at least 90% success with a median of at most 200 queries on digits-cnn.
- HopSkipJump, label-only, L2 and Linf: the median distance at its start (uniform noise,
  bisected toward the input) and after 2,000 queries, spent to the end (early_stop=False).
  Goal: the median L2 distance falls at least 5x on digits-cnn. For scale, the success rate
  of white-box PGD (100 steps, 2 restarts, margin loss) at HopSkipJump's final median
  distance: near 50% means HopSkipJump ends near the smallest perturbation PGD finds.
- Square Attack (L2) and NES (L2 and Linf), 1,000 queries at most, at a middling epsilon.

    python benchmarks/blackbox.py                   # digits-cnn, 200 inputs
    python benchmarks/blackbox.py --mnist           # and mnist-cnn (trains it once, ~1 min)
    python benchmarks/blackbox.py --samples 100 --threads 1

Every figure is on the inputs the model classifies correctly; seeds are fixed.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time

import torch

import bastion
from bastion.attacks import NES, PGD, HopSkipJump, SquareAttack
from bastion.core.targets import Target
from bastion.core.threat import Norm

Row = tuple[str, str, str, str, str]


def _success(
    attack: bastion.Attack, target: Target, x: torch.Tensor, y: torch.Tensor, eps: float, norm: str
) -> tuple[str, str, str]:
    started = time.perf_counter()
    result = attack.run(target, x, y, eps=eps, norm=norm, seed=0)
    seconds = time.perf_counter() - started
    rate = float(result.success.float().mean())
    queries = result.queries_per_sample
    median = "-"
    if queries is not None and bool(result.success.any()):
        median = f"{float(queries[result.success].float().median()):.0f}"
    return f"{rate:.1%} success", f"median queries {median}", f"{seconds:.1f} s"


def _shrink(
    target: Target, x: torch.Tensor, y: torch.Tensor, norm: Norm, budget: int
) -> tuple[str, str, str]:
    # an epsilon no perturbation needs, so nothing is projected and the run never stops early
    lo, hi = target.bounds
    dims = x[0].numel()
    far = (hi - lo) * (dims**0.5 if norm is Norm.L2 else 1.0) * 0.999
    started = time.perf_counter()
    start = HopSkipJump(steps=0, early_stop=False).run(target, x, y, eps=far, norm=norm)
    end = HopSkipJump(max_queries=budget, early_stop=False).run(target, x, y, eps=far, norm=norm)
    seconds = time.perf_counter() - started
    first, last = float(start.distances.median()), float(end.distances.median())
    pgd = PGD(steps=100, restarts=2, loss="margin").run(target, x, y, eps=last, norm=norm)
    return (
        f"median {first:.3f} -> {last:.3f} ({first / last:.2f}x)",
        f"PGD at {last:.3f}: {float(pgd.success.float().mean()):.0%}",
        f"{seconds:.1f} s",
    )


def bench(name: str, samples: int) -> list[Row]:
    target, data = bastion.load_demo(name)
    x = torch.from_numpy(data.x_test[:samples])
    y = torch.from_numpy(data.y_test[:samples])
    right = target.predict(x) == y
    x, y = x[right], y[right]
    tag = f"{name} ({len(x)})"
    l2 = 1.0 if name.startswith("digits") else 2.0
    rows: list[Row] = [
        (tag, "square linf eps 0.3", *_success(SquareAttack(), target, x, y, 0.3, "linf")),
        (tag, f"square l2 eps {l2:g}", *_success(SquareAttack(), target, x, y, l2, "l2")),
        (tag, f"nes l2 eps {l2:g}", *_success(NES(), target, x, y, l2, "l2")),
        (tag, "nes linf eps 0.15", *_success(NES(), target, x, y, 0.15, "linf")),
    ]
    for norm in (Norm.L2, Norm.LINF):
        rows.append((tag, f"hopskipjump {norm.value} 2000 q", *_shrink(target, x, y, norm, 2000)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200, help="test inputs per model")
    parser.add_argument("--mnist", action="store_true", help="also mnist-cnn")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print("$ python " + " ".join(shlex.quote(a) for a in sys.argv))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    rows = bench("digits-cnn", args.samples)
    if args.mnist:
        rows += bench("mnist-cnn", args.samples)
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
