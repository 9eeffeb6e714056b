"""Randomized smoothing on the digits demo: certified accuracy against L2 radius.

    python benchmarks/smoothing.py                       # sigma 0.25 and 0.5, n=10,000
    python benchmarks/smoothing.py --n 1000 --samples 100 --plain

Goal (issue 12): certified accuracy at L2 radius 0.5 on the digits demo, for sigma 0.25 and
0.5. The demo CNN (digits-cnn) is fine-tuned under noise of each sigma with the `smoothing`
trainer (its defaults: 20 epochs, lr 1e-3), smoothed at the same sigma, and the test split
(360 images, 8x8 in [0, 1]) is certified with CERTIFY (n0=100, n, alpha=0.001).
``--plain`` also certifies the demo CNN smoothed without noise training, for comparison.
"""

from __future__ import annotations

import argparse
import time

import torch

import bastion
from bastion.assess.certification import assess_certification
from bastion.core.registry import DEFENCES
from bastion.core.targets import TorchTarget
from bastion.defences.certify import SmoothedClassifier, max_certifiable_radius

RADII = (0.0, 0.25, 0.5, 0.75, 1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma", type=float, action="append", help="default: 0.25 and 0.5")
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=10_000)
    parser.add_argument("--alpha", type=float, default=0.001)
    parser.add_argument("--samples", type=int, default=360, help="test images (360: all)")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--plain", action="store_true", help="also smooth the plain model")
    args = parser.parse_args()
    sigmas = args.sigma or [0.25, 0.5]

    target, data = bastion.load_demo("digits-cnn")
    assert isinstance(target, TorchTarget)
    x = torch.from_numpy(data.x_test[: args.samples])
    y = torch.from_numpy(data.y_test[: args.samples])
    print(
        f"digits-cnn, {len(x)} test images, n0={args.n0}, n={args.n:,}, alpha={args.alpha}, "
        f"torch threads={torch.get_num_threads()}"
    )
    header = " ".join(f"{'r=' + format(r, 'g'):>7}" for r in RADII)
    print(
        f"{'model':18} {'sigma':>5} {'train s':>7} {header} {'clean':>6} {'abstain':>7} "
        f"{'ACR':>6} {'max r':>6} {'cert s':>7}"
    )
    for sigma in sigmas:
        runs: list[tuple[str, SmoothedClassifier, float]] = []
        if args.plain:
            runs.append(("plain", SmoothedClassifier(target, sigma), 0.0))
        started = time.perf_counter()
        smoothed = DEFENCES.create("smoothing", sigma=sigma).fit(target, data)
        runs.append(("noise-trained", smoothed, time.perf_counter() - started))
        for label, model, trained_s in runs:
            result = assess_certification(
                model,
                x,
                y,
                n0=args.n0,
                n=args.n,
                alpha=args.alpha,
                radii=RADII,
                batch_size=args.batch_size,
                seed=0,
            )
            cells = " ".join(
                f"{result.metric('certified_accuracy', radius=r).value:7.1%}" for r in RADII
            )
            clean = result.metric("clean_accuracy").value
            abstain = result.metric("abstention_rate", procedure="certify").value
            acr = result.metric("average_certified_radius").value
            ceiling = max_certifiable_radius(sigma, args.n, args.alpha)
            print(
                f"{label:18} {sigma:5g} {trained_s:7.1f} {cells} {clean:6.1%} {abstain:7.1%} "
                f"{acr:6.3f} {ceiling:6.3f} {result.seconds:7.1f}"
            )
            lo, hi = result.metric("certified_accuracy", radius=0.5).ci95 or (0.0, 1.0)
            print(f"{'':18} certified accuracy at r=0.5: 95% CI {lo:.1%}-{hi:.1%}")


if __name__ == "__main__":
    main()
