"""Adversarial training against the issue's goals: robust accuracy under the `standard`
evaluation, clean accuracy, and training time, per method, side by side in one run.

    python benchmarks/hardening.py --dataset mnist --eps 0.3 --epochs 30
    python benchmarks/hardening.py --dataset digits --eps 0.2 --epochs 30 --samples 360

Each method trains the demo architecture (SmallCNN) from scratch with the same seed; the
undefended demo model of the same data is the "before". Training time is wall time on this
machine; the figures that matter for the goals are ratios (fast-at's time over pgd-at's) and
robust accuracy, which does not depend on the load.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from bastion.assess.hardening import measure
from bastion.core.registry import DEFENCES
from bastion.core.threat import Threat
from bastion.zoo import load_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("mnist", "digits"), default="mnist")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--methods", default="pgd-at,trades,fast-at")
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup", type=int, default=None, help="epochs of epsilon warm-up")
    args = parser.parse_args()

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    target, data = load_demo(f"{args.dataset}-cnn")
    threat = Threat(norm="linf", epsilons=(args.eps,))
    print(
        f"{args.dataset}: {len(data.x_train)} training, {len(data.x_test)} test inputs; "
        f"eps {args.eps}; {args.preset} evaluation on {args.samples} inputs; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores",
        flush=True,
    )
    rows = []
    before = measure(target, data, threat, preset=args.preset, samples=args.samples)
    rows.append(("undefended", before, 0.0, None))
    print(f"undefended: {_line(before, args.eps)}", flush=True)
    for name in args.methods.split(","):
        params = {"epsilon": args.eps, "epochs": args.epochs, "seed": args.seed}
        if args.warmup is not None:
            params["warmup"] = args.warmup
        if name not in ("fast-at", "n-fgsm"):
            params["steps"] = args.steps
        trainer = DEFENCES.create(name, **params)

        def tick(epoch: int, total: int, r: dict, name: str = name) -> None:
            print(
                f"  {name} epoch {epoch}/{total}: clean {r['clean_accuracy']:.1%}, "
                f"robust (PGD-10, validation) {r['robust_accuracy']:.1%}, {r['seconds']:.0f} s",
                flush=True,
            )

        t0 = time.perf_counter()
        hardened = trainer.fit(target, data, progress=tick)
        seconds = time.perf_counter() - t0
        after = measure(hardened, data, threat, preset=args.preset, samples=args.samples)
        rows.append((name, after, seconds, trainer))
        print(f"{name}: {_line(after, args.eps)}; trained in {seconds:.0f} s", flush=True)

    print()
    print("| method | clean accuracy | robust accuracy (standard) | plain PGD | training time |")
    print("| --- | --- | --- | --- | --- |")
    pgd_time = next((s for n, _, s, _ in rows if n == "pgd-at"), None)
    for name, m, seconds, trainer in rows:
        extra = ""
        if trainer is not None and getattr(trainer, "catastrophic_overfitting_", None):
            extra = f" (catastrophic overfitting at epoch {trainer.catastrophic_overfitting_})"
        ratio = (
            f" ({seconds / pgd_time:.2f}x pgd-at)"
            if pgd_time and trainer is not None and name != "pgd-at"
            else ""
        )
        print(
            f"| {name} | {m.clean_accuracy:.1%} | {m.robust_accuracy(args.eps):.1%} | "
            f"{m.plain_accuracy(args.eps):.1%} | "
            f"{seconds:.0f} s{ratio}{extra} |"
        )


def _line(m: object, eps: float) -> str:
    return (
        f"clean {m.clean_accuracy:.1%}, robust {m.robust_accuracy(eps):.1%}, "  # type: ignore[attr-defined]
        f"plain PGD {m.plain_accuracy(eps):.1%}"  # type: ignore[attr-defined]
    )


if __name__ == "__main__":
    main()
