"""Extraction and membership inference against the issue's goals, in one run.

    python benchmarks/privacy.py                  # every part
    python benchmarks/privacy.py --part extraction --part membership --jobs 2

Goals (issue 11):
- extraction: at least 95% fidelity to the fraud demo (fraud-mlp) within 5,000 queries;
- equation-solving: a logistic regression recovered to 99.9% agreement with at most
  (d+1)*k queries;
- membership: on an MLP overfitted on 2,000 fraud rows (2,000 held out), LiRA's TPR at 1%
  FPR at least 3 times the loss threshold's, TPR at 0.1% reported with its interval;
- DP-SGD at epsilon <= 8 brings LiRA's AUC to at most 0.55, with the accuracy cost;
- inversion: MI-Face reconstructions of every digit recognizable (most like their own class's
  mean image), white-box and score-based; attribute inference against the prior's guess;
- regularization (none, weight decay, label smoothing, early stopping, DP-SGD) measured by
  LiRA and the loss threshold, with the test accuracy each costs;
- ownership: a copy stolen by Knockoff through the watermarked model identified with
  p < 0.01 at every budget, independently trained models (6) not;
- ART 1.20.1 side by side (``pip install --no-deps -r requirements/peers.txt``): KnockoffNets
  against bastion's knockoff on the MNIST-subset CNN with labels only, and ART's membership
  attacks against LiRA on the overfitted fraud MLP.

    python benchmarks/privacy.py --part inversion --part ownership
    python benchmarks/privacy.py --part regularization --shadows 16 --jobs 2
    python benchmarks/privacy.py --part art-extraction --part art-membership
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace

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


def _fraud_halves() -> tuple[torch.Tensor, torch.Tensor, np.ndarray, int]:
    """Every fraud row, shuffled: the first half are the members, the rest held out."""
    data = bastion.load_dataset("fraud")
    x = np.concatenate([data.x_train, data.x_test])
    y = np.concatenate([data.y_train, data.y_test])
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    n = len(x) // 2
    member = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    return torch.from_numpy(x), torch.from_numpy(y), member, n


def _overfit_target(
    xt: torch.Tensor, yt: torch.Tensor, n: int, settings: FitSettings = OVERFIT
) -> TorchTarget:
    model = build_model((20,), 2, settings, seed=123)
    fit_model(model, xt[:n], yt[:n], settings, seed=123)
    return TorchTarget(model, num_classes=2, input_shape=(20,), name="fraud-overfit")


def membership(jobs: int, shadows: int, cache: str | None) -> None:
    xt, yt, member, n = _fraud_halves()
    target = _overfit_target(xt, yt, n)
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
            f"LiRA online, {shadows} shadows, 4 queries",
            "lira",
            {"shadows": shadows, "queries": 4, "noise": 0.02, **shadow},
        ),
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


def _shadow_recipe(settings: FitSettings, jobs: int, cache: str | None) -> dict[str, object]:
    """LiRA's shadows trained as the target was (the adversary knows the recipe)."""
    return {
        "arch": settings.arch,
        "hidden": settings.hidden,
        "epochs": settings.epochs,
        "lr": settings.lr,
        "batch_size": settings.batch_size,
        "weight_decay": settings.weight_decay,
        "label_smoothing": settings.label_smoothing,
        "patience": settings.patience,
        "n_jobs": jobs,
        "cache_dir": cache,
    }


def inversion() -> None:
    from bastion.assess.inversion import class_match

    print("inversion: MI-Face, one reconstruction per digit (recognizable: most like its own")
    print("class's mean training image, chance 10%)")
    print("(judged: how many of the 10 the other two demo models classify as their class)")
    print(
        f"  {'target':16} {'gradients':10} {'recognizable':>17} {'judged':>7} "
        f"{'confidence':>10} {'queries':>9} {'s':>6}"
    )
    demos = ("digits-logreg", "digits-mlp", "digits-cnn")
    judges = {d: bastion.load_demo(d)[0] for d in demos}
    for demo in demos:
        target, data = bastion.load_demo(demo)
        means = np.stack([data.x_train[data.y_train == c].mean(axis=0) for c in range(10)])
        seen = (
            [target]
            if target.access.value != "white-box"
            else [target, DefendedTarget(target, [create_defence("topk:k=10")])]
        )
        for t in seen:
            t.reset_queries()
            r = ATTACKS.create("mi-face").run(t)
            hits = int((class_match(r.images.numpy(), means).argmax(axis=1) == r.classes).sum())
            lo, hi = wilson_interval(hits, 10)
            judged = [
                str(int((j.predict(r.images) == torch.from_numpy(r.classes)).sum()))
                for d, j in judges.items()
                if d != demo
            ]
            print(
                f"  {demo:16} {r.gradients:10} {hits:>5}/10 ({lo:.0%}-{hi:.0%}) "
                f"{'+'.join(judged):>7} {r.confidence.mean():10.3f} {r.queries:9,} "
                f"{r.seconds:6.1f}"
            )
    xt, yt, _, n = _fraud_halves()
    target = _overfit_target(xt, yt, n)
    aux = xt[n + n // 2 :]
    print("attribute inference on the overfitted fraud MLP: each column in 4 quantile bins,")
    print(
        f"  {n} members and {n // 2} non-members; the adversary's prior from {len(aux)} other rows"
    )
    rows = []
    for f in range(20):
        attack = ATTACKS.create("attribute-inference", feature=f)
        rm = attack.run(target, xt[:n], yt[:n], x_aux=aux)
        rn = attack.run(target, xt[n : n + n // 2], yt[n : n + n // 2], x_aux=aux)
        rows.append((rm.accuracy - rm.baseline_accuracy, f, rm, rn))
    rows.sort(key=lambda r: -r[0])
    print(f"  {'column':18} {'members':>8} {'baseline':>9} {'non-members':>12} {'baseline':>9}")
    names = bastion.load_dataset("fraud").feature_names or []
    for _, f, rm, rn in rows[:5]:
        print(
            f"  {names[f]:18} {rm.accuracy:8.1%} {rm.baseline_accuracy:9.1%} "
            f"{rn.accuracy:12.1%} {rn.baseline_accuracy:9.1%}"
        )
    gain = np.mean([r[0] for r in rows])
    print(f"  mean gain over the baseline on members, all 20 columns: {gain:+.1%}")


def regularization(jobs: int, shadows: int, cache: str | None) -> None:
    xt, yt, member, n = _fraud_halves()
    print(f"regularization against membership inference: MLP on {n} fraud rows, {n} held out,")
    print(f"  LiRA online with {shadows} shadows trained with the target's own recipe")
    variants = {
        "none": OVERFIT,
        "weight decay 5e-3": replace(OVERFIT, weight_decay=5e-3),
        "label smoothing 0.2": replace(OVERFIT, label_smoothing=0.2),
        "early stopping (5)": replace(OVERFIT, patience=5),
    }
    for label, settings in variants.items():
        started = time.perf_counter()
        target = _overfit_target(xt, yt, n, settings)
        acc = float((target.predict(xt[n:]) == yt[n:]).float().mean())
        loss = ATTACKS.create("loss-threshold").run(target, xt, yt, member)
        lira = ATTACKS.create("lira", shadows=shadows, **_shadow_recipe(settings, jobs, cache)).run(
            target, xt, yt, member
        )
        print(
            f"  {label:22} test {acc:6.1%}  loss AUC {loss.auc:.3f}  LiRA {_row(lira)}"
            f"  ({time.perf_counter() - started:.0f} s in all)"
        )
    dp = create_defence("dp-sgd:epsilon=8,epochs=30,arch=mlp,hidden=256,seed=0")
    private = TorchTarget(
        dp.fit_arrays(xt[:n], yt[:n], 2), num_classes=2, input_shape=(20,), name="fraud-dp"
    )
    acc = float((private.predict(xt[n:]) == yt[n:]).float().mean())
    loss = ATTACKS.create("loss-threshold").run(private, xt, yt, member)
    lira = ATTACKS.create("lira", shadows=shadows, **_shadow_recipe(OVERFIT, jobs, cache)).run(
        private, xt, yt, member
    )
    print(
        f"  {'DP-SGD eps ' + format(dp.epsilon_, '.1f'):22} test {acc:6.1%}  loss AUC "
        f"{loss.auc:.3f}  LiRA {_row(lira)}  (shadows without DP)"
    )


def ownership(rate: float) -> None:
    from bastion.defences.ownership import WatermarkedTarget, verify_ownership

    owner, data = bastion.load_demo("digits-cnn")
    xtr, ytr = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xte, yte = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    clean = float((owner.predict(xte) == yte).float().mean())
    served = WatermarkedTarget(owner, rate=rate, key="benchmark")
    marked = float((served.predict(xte) == yte).float().mean())
    print(
        f"ownership: digits-cnn served with the watermark at rate {rate}: test accuracy "
        f"{marked:.1%} (without {clean:.1%})"
    )
    print("  copies stolen by knockoff (the adversary's pool: the 360 test images), each")
    print("  through a fresh watermarked endpoint; verified on the records of its own queries")
    print("  matches: the watermark's class; trials: records where the copy differs from the")
    print("  model's own answer (the exact conditional test at 1/9); records: inputs recorded")
    print(
        f"  {'copy':38} {'fidelity':>8} {'matches/trials/records':>22} {'p-value':>9} {'claim':>6}"
    )
    for budget in (250, 500, 1000, 2000):
        for soft, arch in ((False, "auto"), (True, "auto"), (False, "mlp")):
            served = WatermarkedTarget(owner, rate=rate, key="benchmark")
            victim = served if soft else DefendedTarget(served, [create_defence("labels")])
            r = ATTACKS.create("knockoff", max_queries=budget, soft_labels=soft, arch=arch).run(
                victim, xte, x_eval=xte, y_eval=yte, seed=0
            )
            v = verify_ownership(r.as_target(), served)
            label = f"knockoff {budget} {'scores' if soft else 'labels'} {arch}"
            print(
                f"  {label:38} {r.fidelity:8.1%} {f'{v.matches}/{v.trials}/{v.records}':>22} "
                f"{v.p_value:9.1e} {'yes' if v.copied else 'no':>6}"
            )
    # independent models, against the records of a 2,000-query theft
    served = WatermarkedTarget(owner, rate=rate, key="benchmark")
    ATTACKS.create("knockoff", max_queries=2000, soft_labels=False).run(
        DefendedTarget(served, [create_defence("labels")]), xte, seed=0
    )
    claims = 0
    print("  independently trained models (their own seeds; train split unless said)")
    models = [("cnn", 30, s, False) for s in (21, 22, 23)] + [
        ("mlp", 60, s, False) for s in (24, 25)
    ]
    models += [("cnn", 30, 26, True), ("mlp", 60, 27, True)]
    for arch, epochs, seed, test in models:
        settings = FitSettings(arch=arch, hidden=128, epochs=epochs)
        m = build_model((1, 8, 8), 10, settings, seed=seed)
        fit_model(m, xte if test else xtr, yte if test else ytr, settings, seed=seed)
        t = TorchTarget(m, num_classes=10, input_shape=(1, 8, 8))
        v = verify_ownership(t, served)
        claims += v.copied
        acc = float((t.predict(xte) == yte).float().mean())
        label = f"{arch} seed {seed}{' (test split)' if test else ''}, acc {acc:.1%}"
        print(
            f"  {label:38} {'':8} {f'{v.matches}/{v.trials}/{v.records}':>22} {v.p_value:9.1e} "
            f"{'yes' if v.copied else 'no':>6}"
        )
    print(f"  false claims: {claims} of {len(models)}")


def art_extraction(epochs: int) -> None:
    from art.attacks.extraction import KnockoffNets
    from art.estimators.classification import PyTorchClassifier

    victim, data = bastion.load_demo("mnist-cnn")
    pool = torch.from_numpy(data.x_train)
    xe, ye = torch.from_numpy(data.x_test), torch.from_numpy(data.y_test)
    shape = tuple(data.input_shape)
    print(
        f"ART KnockoffNets vs bastion knockoff, labels only: mnist-cnn (test accuracy "
        f"{float((victim.predict(xe) == ye).float().mean()):.1%}); pool: the {len(pool)} "
        f"training images; fidelity on the {len(xe)} test images; both copies SmallCNN, "
        f"{epochs} epochs"
    )
    truth = victim.predict(xe)

    def wrap(model: torch.nn.Module) -> PyTorchClassifier:
        return PyTorchClassifier(
            model,
            loss=torch.nn.CrossEntropyLoss(),
            input_shape=shape,
            nb_classes=10,
            optimizer=torch.optim.Adam(model.parameters(), lr=3e-3),
            clip_values=(0.0, 1.0),
        )

    print(f"  {'budget':>6} {'ART fidelity':>13} {'s':>6} {'bastion fidelity':>17} {'s':>6}")
    for budget in (250, 500, 1000, 2000):
        torch.manual_seed(0)
        started = time.perf_counter()
        art_victim = wrap(victim.model)
        thief = wrap(build_model(shape, 10, FitSettings(arch="cnn"), seed=1))
        stolen = KnockoffNets(
            art_victim,
            batch_size_fit=64,
            batch_size_query=256,
            nb_epochs=epochs,
            nb_stolen=budget,
            sampling_strategy="random",
            use_probability=False,
            verbose=False,
        ).extract(pool.numpy(), thieved_classifier=thief)
        pred = torch.from_numpy(stolen.predict(xe.numpy()).argmax(axis=1))
        art_fid = float((pred == truth).float().mean())
        art_s = time.perf_counter() - started
        started = time.perf_counter()
        labels = DefendedTarget(victim, [create_defence("labels")])
        r = ATTACKS.create("knockoff", max_queries=budget, soft_labels=False, epochs=epochs).run(
            labels, pool, x_eval=xe, seed=0
        )
        print(
            f"  {budget:6} {art_fid:13.1%} {art_s:6.1f} {r.fidelity:17.1%} "
            f"{time.perf_counter() - started:6.1f}"
        )


def art_membership(jobs: int, shadows: int, cache: str | None) -> None:
    from art.attacks.inference.membership_inference import (
        LabelOnlyGapAttack,
        MembershipInferenceBlackBox,
        MembershipInferenceBlackBoxRuleBased,
    )
    from art.estimators.classification import PyTorchClassifier

    from bastion.attacks.inference.roc import auc, tpr_at_fpr

    xt, yt, member, n = _fraud_halves()
    target = _overfit_target(xt, yt, n)
    clf = PyTorchClassifier(
        target.model,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(20,),
        nb_classes=2,
        clip_values=(0.0, 1.0),
    )
    # ART's black-box attack learns from known members and non-members: it gets the first
    # half of each, and every attack is measured on the other halves
    h = n // 2
    fit_m, fit_n = np.arange(h), np.arange(n, n + h)
    ev = np.r_[np.arange(h, n), np.arange(n + h, 2 * n)]
    x, y = xt.numpy(), yt.numpy()
    truth = member[ev]
    scores: dict[str, np.ndarray] = {}
    for kind in ("nn", "rf", "gb"):
        mia = MembershipInferenceBlackBox(clf, input_type="loss", attack_model_type=kind)
        mia.fit(x[fit_m], y[fit_m], x[fit_n], y[fit_n])
        scores[f"ART black-box ({kind}, loss)"] = mia.infer(x[ev], y[ev], probabilities=True)[:, -1]
        mia = MembershipInferenceBlackBox(clf, input_type="prediction", attack_model_type=kind)
        mia.fit(x[fit_m], y[fit_m], x[fit_n], y[fit_n])
        scores[f"ART black-box ({kind}, prediction)"] = mia.infer(x[ev], y[ev], probabilities=True)[
            :, -1
        ]
    scores["ART rule-based"] = MembershipInferenceBlackBoxRuleBased(clf).infer(x[ev], y[ev]).ravel()
    scores["ART label-only gap"] = LabelOnlyGapAttack(clf).infer(x[ev], y[ev]).ravel()
    lira = ATTACKS.create("lira", shadows=shadows, **_shadow_recipe(OVERFIT, jobs, cache)).run(
        target, xt, yt, member
    )
    scores[f"bastion LiRA online, {shadows} shadows"] = lira.scores[ev]
    scores["bastion loss threshold"] = (
        ATTACKS.create("loss-threshold").run(target, xt, yt, member).scores[ev]
    )
    print(
        f"ART membership attacks vs LiRA on the overfitted fraud MLP: measured on {h} "
        f"members and {h} non-members (ART's attack models trained on the other {h} + {h})"
    )
    for label, sc in scores.items():
        sc = np.asarray(sc, dtype=np.float64)
        parts = [f"AUC {auc(sc, truth):.3f}"]
        for fpr in (0.01, 0.001):
            hits, total = tpr_at_fpr(sc, truth, fpr)
            lo, hi = wilson_interval(hits, total)
            parts.append(f"TPR@{fpr:.1%} {hits / total:.2%} ({lo:.2%}-{hi:.2%})")
        print(f"  {label:36} " + "  ".join(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--part",
        action="append",
        choices=[
            "extraction",
            "equations",
            "membership",
            "inversion",
            "regularization",
            "ownership",
            "art-extraction",
            "art-membership",
        ],
    )
    parser.add_argument("--rate", type=float, default=0.02, help="the watermark's rate")
    parser.add_argument("--art-epochs", type=int, default=30, help="epochs of both copies")
    parser.add_argument("--jobs", type=int, default=-1, help="processes for shadow training")
    parser.add_argument("--shadows", type=int, default=16)
    parser.add_argument("--cache", default=None, help="folder to cache shadow answers in")
    args = parser.parse_args()
    parts = args.part or ["extraction", "equations", "membership", "inversion", "ownership"]
    torch.manual_seed(0)
    if "equations" in parts:
        equations()
    if "extraction" in parts:
        extraction()
    if "membership" in parts:
        started = time.perf_counter()
        membership(args.jobs, args.shadows, args.cache)
        print(f"  membership part: {time.perf_counter() - started:.0f} s")
    if "inversion" in parts:
        inversion()
    if "regularization" in parts:
        regularization(args.jobs, args.shadows, args.cache)
    if "ownership" in parts:
        ownership(args.rate)
    if "art-extraction" in parts:
        art_extraction(args.art_epochs)
    if "art-membership" in parts:
        art_membership(args.jobs, args.shadows, args.cache)


if __name__ == "__main__":
    main()
