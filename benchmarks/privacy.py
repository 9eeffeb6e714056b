"""Extraction and membership inference against the issue's goals, in one run.

    python benchmarks/privacy.py                  # every part
    python benchmarks/privacy.py --part extraction --part membership --jobs 2

Goals (issue 11):
- extraction: at least 95% fidelity to the fraud demo (fraud-mlp) within 5,000 queries;
- equation-solving: a logistic regression recovered to 99.9% agreement with at most
  (d+1)*k queries;
- membership: on an MLP overfitted on 2,000 fraud rows (2,000 held out), LiRA's TPR at 1%
  FPR at least 3 times the loss threshold's, TPR at 0.1% reported with its interval;
- DP-SGD at epsilon <= 8 brings LiRA's AUC to at most 0.55, with the accuracy cost.

ART side by side is not run: see docs/privacy.md.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import bastion
from bastion.assess.stats import wilson_interval
from bastion.attacks.inference.membership import MembershipResult
from bastion.core.registry import ATTACKS
from bastion.core.targets import TorchTarget
from bastion.defences import DefendedTarget, create_defence
from bastion.zoo.fit import FitSettings, build_model, fit_model

OVERFIT = FitSettings(arch="mlp", hidden=256, epochs=100, lr=1e-3, batch_size=64)


def extraction() -> None:
    target, data = bastion.load_demo("fraud-mlp")
    victim = DefendedTarget(target, [])  # seen as a score-based black box
    pool = torch.from_numpy(data.x_train)
    xe, ye = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    print("extraction of fraud-mlp (fidelity on the 800 test rows; adversary pool: 3,200 rows)")
    print(f"{'attack':34} {'queries':>8} {'fidelity':>9} {'95% CI':>13} {'accuracy':>9} {'s':>6}")
    for name, params in (
        ("knockoff", {}),
        ("knockoff", {"soft_labels": False}),
        ("knockoff", {"sampler": "random"}),
        ("jacobian", {}),
    ):
        for budget in (250, 500, 1000, 2000, 5000):
            started = time.perf_counter()
            r = ATTACKS.create(name, max_queries=budget, **params).run(
                victim, pool, x_eval=xe, y_eval=ye, seed=0
            )
            lo, hi = wilson_interval(*(r.agreed or (0, 0)))
            label = name + "".join(f" {k}={v}" for k, v in params.items())
            print(
                f"{label:34} {r.queries:8,} {r.fidelity:9.1%} {lo:6.1%}-{hi:6.1%} "
                f"{r.accuracy:9.1%} {time.perf_counter() - started:6.1f}"
            )


def equations() -> None:
    print("equation-solving (uniform random queries; agreement on the test split)")
    for demo in ("digits-logreg",):
        target, data = bastion.load_demo(demo)
        d, k = int(np.prod(data.input_shape)), data.num_classes
        xe = torch.from_numpy(data.x_test)
        for defence in ([], ["round:decimals=4"], ["round:decimals=2"]):
            t = DefendedTarget(target, [create_defence(s) for s in defence]) if defence else target
            r = ATTACKS.create("equation-solving").run(t, x_eval=xe)
            print(
                f"  {t.name:36} queries {r.queries:5} (cap (d+1)*k = {(d + 1) * k}) "
                f"agreement {r.fidelity:.2%}"
            )
    from sklearn.linear_model import LogisticRegression

    data = bastion.load_dataset("fraud")
    est = LogisticRegression(max_iter=2000).fit(data.x_train, data.y_train)
    t = bastion.SklearnTarget(est, bounds=(0, 1), input_shape=(20,), name="fraud-logreg")
    r = ATTACKS.create("equation-solving").run(t, x_eval=torch.from_numpy(data.x_test))
    print(
        f"  {t.name:36} queries {r.queries:5} (cap (d+1)*k = {21 * 2}) agreement {r.fidelity:.2%}"
    )


def _row(r: MembershipResult) -> str:
    parts = [f"AUC {r.auc:.3f} ({r.auc_ci[0]:.3f}-{r.auc_ci[1]:.3f})"]
    for fpr in (0.01, 0.001):
        hits, total = r.tpr_at(fpr)
        lo, hi = wilson_interval(hits, total)
        parts.append(f"TPR@{fpr:.1%} {hits / total:.2%} ({lo:.2%}-{hi:.2%}, {hits}/{total})")
    return "  ".join(parts) + f"  {r.seconds:.1f} s"


def membership(jobs: int, shadows: int, cache: str | None) -> None:
    data = bastion.load_dataset("fraud")
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = len(x) // 2
    member = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = build_model((20,), 2, OVERFIT, seed=123)
    fit_model(model, xt[:n], yt[:n], OVERFIT, seed=123)
    target = TorchTarget(model, num_classes=2, input_shape=(20,), name="fraud-overfit")
    acc = float((target.predict(xt[n:]) == yt[n:]).float().mean())
    train = float((target.predict(xt[:n]) == yt[:n]).float().mean())
    print(
        f"membership: MLP overfitted on {n} fraud rows, {n} held out; train {train:.1%}, "
        f"test {acc:.1%}"
    )
    shadow = {
        "arch": "mlp",
        "hidden": 256,
        "epochs": 100,
        "lr": 1e-3,
        "n_jobs": jobs,
        "cache_dir": cache,
    }
    runs = {}
    for label, name, params in (
        ("loss threshold", "loss-threshold", {}),
        ("label-only", "label-only-membership", {}),
        (f"LiRA online, {shadows} shadows", "lira", {"shadows": shadows, **shadow}),
        (
            f"LiRA offline, {shadows} shadows",
            "lira",
            {"shadows": shadows, "online": False, **shadow},
        ),
    ):
        kw = {}
        if name == "lira" and not params.get("online", True):
            # offline: the adversary's own rows are the held-out half, so score members
            # against them... and the shadows must never see candidates: use half of it
            kw = {"x_aux": xt[n + n // 2 :], "y_aux": yt[n + n // 2 :]}
            cand = np.r_[np.arange(n // 2), np.arange(n, n + n // 2)]
            r = ATTACKS.create(name, **params).run(target, xt[cand], yt[cand], member[cand], **kw)
        else:
            r = ATTACKS.create(name, **params).run(target, xt, yt, member)
        runs[label] = r
        print(f"  {label:32} {_row(r)}")
    loss = runs["loss threshold"].tpr_at(0.01)[0]
    lira = runs[f"LiRA online, {shadows} shadows"].tpr_at(0.01)[0]
    print(f"  LiRA / loss threshold at 1% FPR: {lira} / {loss} = {lira / max(loss, 1):.1f}x")

    dp = create_defence("dp-sgd:epsilon=8,epochs=30,arch=mlp,hidden=256,seed=0")
    private = TorchTarget(
        dp.fit_arrays(xt[:n], yt[:n], 2), num_classes=2, input_shape=(20,), name="fraud-dp"
    )
    dp_acc = float((private.predict(xt[n:]) == yt[n:]).float().mean())
    print(
        f"  DP-SGD: epsilon {dp.epsilon_:.2f} at delta {dp.delta_:.1e}, test accuracy "
        f"{dp_acc:.1%} (non-private {acc:.1%})"
    )
    for label, name, params in (
        ("loss threshold", "loss-threshold", {}),
        (f"LiRA online, {shadows} shadows", "lira", {"shadows": shadows, **shadow}),
    ):
        r = ATTACKS.create(name, **params).run(private, xt, yt, member)
        print(f"  DP {label:29} {_row(r)}")
    print("  (the shadows are trained without DP, with the non-private recipe)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part", action="append", choices=["extraction", "equations", "membership"]
    )
    parser.add_argument("--jobs", type=int, default=-1, help="processes for shadow training")
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--cache", default=None, help="folder to cache shadow answers in")
    args = parser.parse_args()
    parts = args.part or ["extraction", "equations", "membership"]
    torch.manual_seed(0)
    if "equations" in parts:
        equations()
    if "extraction" in parts:
        extraction()
    if "membership" in parts:
        started = time.perf_counter()
        membership(args.jobs, args.shadows, args.cache)
        print(f"  membership part: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
