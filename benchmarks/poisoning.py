"""Poisoning goals of issue 10 on the MNIST subset (5,000 images), over several seeds.

For each seed: BadNets at 5% (all-to-one, target class = seed) against bastion's SmallCNN
recipe; the data defences' recall at 5% false positives (from each one's ROC) and their own
flags; Neural Cleanse on the trojaned and on a clean model; STRIP at 1% false rejection; and
removal by fine-pruning (the defender holds the clean test images 0-499; everything is
measured on 500-999) and by retraining on data the best defence filtered.

    python benchmarks/poisoning.py                 # 3 seeds
    python benchmarks/poisoning.py --seeds 1 --nc-steps 100

Goals: ASR >= 95% with clean accuracy within 2 points; best data defence >= 95% recall at
<= 5% FPR; Neural Cleanse flags the trojaned model with its target class and not the clean
one; STRIP >= 90% at 1% FRR; fine-pruning or retraining: ASR < 10%, accuracy within 3 points.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace

import torch

import bastion
from bastion.assess.poisoning import accuracy, attack_success, detection_metrics, recipe_fit
from bastion.attacks.poisoning import BadNets
from bastion.core.plugins import load_plugins
from bastion.defences.data import (
    ActivationClustering,
    ConfidentLearning,
    KnnConsistency,
    SpectralSignatures,
)
from bastion.defences.detection import STRIP, NeuralCleanse
from bastion.defences.training import FilterRetrain, FinePruning


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--nc-steps", type=int, default=150)
    args = parser.parse_args()
    load_plugins()
    full = bastion.load_dataset("mnist")
    # the defender's clean held-out images, and the part every figure is measured on
    own_x, own_y = full.x_test[:500], full.y_test[:500]
    data = replace(full, x_test=full.x_test[500:], y_test=full.y_test[500:])
    fit = recipe_fit("cnn", epochs=args.epochs)
    rows = []
    for seed in range(args.seeds):
        t0 = time.perf_counter()
        row: dict[str, object] = {"seed": seed}
        attack = BadNets(rate=0.05, target_class=seed)
        clean = fit(data, seed)
        poisoned = attack.poison(data, seed=seed)
        model = fit(poisoned.dataset(data), seed)
        hits, trials = attack_success(attack, model, data)
        row["asr"] = hits / trials
        row["clean_acc"] = accuracy(clean, data.x_test, data.y_test)
        row["poisoned_acc"] = accuracy(model, data.x_test, data.y_test)
        for defence in (
            SpectralSignatures(),
            ActivationClustering(),
            ConfidentLearning(),
            KnnConsistency(),
        ):
            defence.fit(poisoned.x, poisoned.y, model=model if defence.needs_model else None)
            m = detection_metrics(defence.scores_, poisoned.poisoned, defence.flagged_)
            row[defence.registry_name] = {
                "recall_at_5pct_fpr": m["recall_at_5pct_fpr"],
                "auc": m["auc"],
                "flag_recall": m["recall"],
                "flag_fpr": m["fpr"],
            }
        for name, target in (("trojaned", model), ("clean", clean)):
            nc = NeuralCleanse(steps=args.nc_steps, seed=seed).fit(target, own_x)
            row[f"nc_{name}"] = {
                "flagged": nc.backdoored_,
                "target_class": nc.target_class_,
                "max_anomaly": float(nc.anomaly_.max()),
            }
        strip = STRIP(seed=seed).fit(model, own_x[:250])
        strip.calibrate(torch.from_numpy(own_x[250:]), fpr=0.01)
        x_trig, _ = attack.test_inputs(data.x_test, data.y_test, data)
        row["strip_detect_at_1pct"] = float(strip.detect(torch.from_numpy(x_trig)).float().mean())
        row["strip_frr"] = float(strip.detect(torch.from_numpy(data.x_test)).float().mean())
        pruned = FinePruning(seed=seed).fit(model, (own_x, own_y))
        row["fine_pruning"] = {
            "asr": attack_success(attack, pruned, data)[0] / trials,
            "acc": accuracy(pruned, data.x_test, data.y_test),
        }
        best = max(
            ("activation-clustering", "knn-consistency", "spectral-signatures"),
            key=lambda n: row[n]["recall_at_5pct_fpr"],  # type: ignore[index]
        )
        retrained = FilterRetrain(sanitizer=best, epochs=args.epochs, seed=seed).fit(
            model, (poisoned.x, poisoned.y)
        )
        row["filter_retrain"] = {
            "sanitizer": best,
            "asr": attack_success(attack, retrained, data)[0] / trials,
            "acc": accuracy(retrained, data.x_test, data.y_test),
        }
        row["seconds"] = round(time.perf_counter() - t0, 1)
        print(json.dumps(row), flush=True)
        rows.append(row)


if __name__ == "__main__":
    main()
