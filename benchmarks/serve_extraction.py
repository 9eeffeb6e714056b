"""Extraction clients against the gateway's detectors, and benign clients beside them.

The demo model (digits CNN, 8x8 inputs) is served on loopback with the ``prada`` and
``query-stats`` detectors set to ``throttle``, calibrated on 500 training images. Each
extraction client sends batches of 10 until the gateway throttles it (429, quarantined) or it
has sent ``--max-queries``:

- ``random``: uniform noise over the input box (Knockoff Nets' "random" query set);
- ``knockoff``: natural images from another distribution (8x8 grey crops of scikit-learn's
  bundled photographs), as in Orekondy et al., "Knockoff Nets", 2019, arXiv:1812.02766;
- ``jbda``: a few test digits walked in small signed steps (the Jacobian-based augmentation
  family that PRADA was designed against; here without gradients).

The benign clients, 20 keys, each send a few (3 to 20) digits drawn from the test set, and one
more sends the whole test set (360 digits) in order. Goal (issue 13): every extraction client
is detected and throttled within 1,000 queries; no benign client is flagged.

    python benchmarks/serve_extraction.py              # seeds 0-4
    python benchmarks/serve_extraction.py --seeds 10 --max-queries 2000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path
from typing import Any

import httpx
import numpy as np

POLICY: dict[str, Any] = {
    "limits": {"rate": None, "budget": None},
    "output": ["round:decimals=2"],
    "detectors": [
        {"detector": "prada", "action": "throttle"},
        {"detector": "query-stats", "action": "throttle"},
    ],
}


def knockoff_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` 8x8 grey crops, of random sizes, of scikit-learn's bundled photographs."""
    from sklearn.datasets import load_sample_images

    photos = [im.mean(axis=2) / 255.0 for im in load_sample_images().images]
    out = np.empty((n, 1, 8, 8), dtype=np.float32)
    for i in range(n):
        photo = photos[int(rng.integers(len(photos)))]
        size = int(rng.integers(8, 64))
        top = int(rng.integers(0, photo.shape[0] - size))
        left = int(rng.integers(0, photo.shape[1] - size))
        idx = (np.arange(8) * size / 8).astype(int)
        out[i, 0] = photo[top : top + size, left : left + size][np.ix_(idx, idx)]
    return out


def extraction_queries(kind: str, n: int, x_test: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.random((n, 1, 8, 8)).astype(np.float32)
    if kind == "knockoff":
        return knockoff_images(n, rng)
    if kind == "jbda":
        current = x_test[rng.choice(len(x_test), 10, replace=False)].copy()
        steps = []
        while sum(len(s) for s in steps) < n:
            current = np.clip(current + 0.1 * np.sign(rng.standard_normal(current.shape)), 0, 1)
            steps.append(current.astype(np.float32))
        return np.concatenate(steps)[:n]
    raise ValueError(kind)


def run(
    client: httpx.Client, key: str, queries: np.ndarray, batch: int = 10
) -> tuple[int, int | None]:
    """Send ``queries`` in batches: (inputs answered, inputs answered before the first 429)."""
    answered = 0
    for i in range(0, len(queries), batch):
        part = queries[i : i + batch]
        r = client.post(
            "/predict",
            json={"inputs": part.tolist()},
            headers={"Authorization": f"Bearer {key}"},
        )
        if r.status_code == 429:
            return answered, answered
        r.raise_for_status()
        answered += len(part)
    return answered, None


def trial(seed: int, max_queries: int, folder: Path) -> dict[str, Any]:
    import bastion
    from bastion.serve import BackgroundServer, Gateway, load_policy

    target, data = bastion.load_demo("digits-cnn", device="cpu")
    rng = np.random.default_rng(seed)
    reference = data.x_train[rng.choice(len(data.x_train), 500, replace=False)]
    policy = load_policy({**POLICY, "database": f"sqlite:///{folder}/extraction-{seed}.db"})
    gateway = Gateway(target, policy, reference=reference)
    out: dict[str, Any] = {"seed": seed}
    with BackgroundServer(gateway) as server, httpx.Client(base_url=server.url) as http:
        benign_keys = []
        for i in range(20):
            _, key = gateway.keys.create(f"benign-{i}")
            n = int(rng.integers(3, 21))
            picks = data.x_test[rng.choice(len(data.x_test), n, replace=False)]
            run(http, key, picks, batch=int(rng.integers(1, 6)))
            benign_keys.append(gateway.keys.find(f"benign-{i}").key_id)
        _, heavy = gateway.keys.create("benign-heavy")
        run(http, heavy, data.x_test)
        benign_keys.append(gateway.keys.find("benign-heavy").key_id)
        for kind in ("random", "knockoff", "jbda"):
            _, key = gateway.keys.create(f"extract-{kind}")
            queries = extraction_queries(kind, max_queries, data.x_test, seed)
            answered, throttled = run(http, key, queries)
            key_id = gateway.keys.find(f"extract-{kind}").key_id
            found = gateway.incidents.list(key_id=key_id)
            out[kind] = {
                "throttled_after": throttled,
                "answered": answered,
                "checks": sorted(f"{i.detector}/{i.check}" for i in found),
            }
        flagged = [k for k in benign_keys if gateway.incidents.list(key_id=k)]
        out["benign_flagged"] = len(flagged)
        out["benign_clients"] = len(benign_keys)
    gateway.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--max-queries", type=int, default=1000)
    args = parser.parse_args()
    import logging

    import torch

    torch.set_num_threads(1)
    logging.getLogger("bastion.serve").setLevel(logging.ERROR)  # the alerts are counted below
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.seeds):
            res = trial(seed, args.max_queries, Path(folder))
            results.append(res)
            print(res)
    print("\nsummary over", len(results), "seeds:")
    for kind in ("random", "knockoff", "jbda"):
        after = [r[kind]["throttled_after"] for r in results]
        caught = [a for a in after if a is not None]
        checks = sorted({c for r in results for c in r[kind]["checks"]})
        median = statistics.median(caught) if caught else None
        print(
            f"  {kind:9s} throttled in {len(caught)}/{len(after)} runs; queries answered "
            f"before the throttle: median {median}, max {max(caught) if caught else None}; "
            f"checks that fired: {', '.join(checks) or '-'}"
        )
    flagged = sum(r["benign_flagged"] for r in results)
    total = sum(r["benign_clients"] for r in results)
    print(f"  benign    flagged: {flagged} of {total} clients")
    goal = all(
        r[k]["throttled_after"] is not None and r[k]["throttled_after"] <= 1000
        for r in results
        for k in ("random", "knockoff", "jbda")
    )
    verdict = "met" if goal and flagged == 0 else "NOT met"
    print(f"goal (every extraction client throttled within 1,000 queries, none benign): {verdict}")


if __name__ == "__main__":
    main()
