"""k-means: curate's torch Lloyd passes vs scikit-learn's MiniBatchKMeans, same data, same k.

Data: `--rows` x `--dim` float32 points around 2k Gaussian centres of random scales (synthetic:
this machine has no million-document corpus with embeddings), L2-normalised like curate's
embeddings. scikit-learn's MiniBatchKMeans runs with its defaults (batch 1024, k-means++ init,
early stopping); curate runs k-means++ on a sample then Lloyd passes, and the line reports the
time curate needed to reach MiniBatchKMeans' final inertia (equal inertia) and its own final
inertia. Both use every core.

    python bench/bench_kmeans.py [--rows 200000] [--dim 256] [--k 1024] [--device auto]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import cores


def make_data(rows: int, dim: int, centres: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 1, (centres, dim)).astype(np.float32)
    scale = rng.uniform(0.3, 1.2, centres).astype(np.float32)
    x = np.empty((rows, dim), np.float32)
    for i in range(0, rows, 100_000):
        lab = rng.integers(0, centres, min(100_000, rows - i))
        x[i : i + len(lab)] = c[lab] + scale[lab, None] * rng.normal(0, 1, (len(lab), dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main() -> None:
    import torch
    from sklearn.cluster import MiniBatchKMeans

    from curate.kmeans import default_sample_rows, fit, kmeans_plus_plus, lloyd_summary
    from curate.stages.lm import resolve_device

    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--k", type=int, default=1024)
    ap.add_argument("--max-iter", type=int, default=20)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sample-rows", type=int, default=None, help="k-means++ sample (default: curate's)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    x = make_data(args.rows, args.dim, 2 * args.k, args.seed)

    start = time.perf_counter()
    mb = MiniBatchKMeans(args.k, random_state=args.seed, n_init=1).fit(x)
    sk_s = time.perf_counter() - start
    sk_inertia = float(lloyd_summary(x, mb.cluster_centers_.astype(np.float32), device).inertia)

    rng = np.random.default_rng(args.seed)
    sample = x[
        np.sort(
            rng.choice(len(x), min(len(x), args.sample_rows or default_sample_rows(args.k)), replace=False)
        )
    ]
    times: list[float] = []
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def one_pass(c: np.ndarray):  # type: ignore[no-untyped-def]
        s = lloyd_summary(x, c, device)  # on a GPU x is copied over each pass, as shards would be
        sync()
        return s

    init_start = time.perf_counter()
    kmeans_plus_plus(sample, args.k, args.seed, device)  # timed alone for the line
    init_s = time.perf_counter() - init_start
    start = time.perf_counter()
    model = fit(
        sample,
        one_pass,
        args.k,
        seed=args.seed,
        max_iter=args.max_iter,
        tol=1e-4,
        device=device,
        on_pass=lambda i, inertia: times.append(time.perf_counter() - start),
    )
    ours_s = time.perf_counter() - start
    final = float(lloyd_summary(x, model.centroids, device).inertia)
    # inertia[i] is measured under the centroids pass i started with, so reaching MiniBatchKMeans'
    # inertia at pass i means the centroids of pass i-1's update: time of pass i.
    reach = next((times[i] for i, v in enumerate(model.inertia) if v <= sk_inertia), None)
    line = {
        "bench": "kmeans",
        "device": device,
        "cores": cores(),
        "rows": args.rows,
        "dim": args.dim,
        "k": args.k,
        "sklearn_minibatch_s": round(sk_s, 2),
        "sklearn_minibatch_inertia": round(sk_inertia, 2),
        "curate_init_s": round(init_s, 2),
        "curate_init_sample_rows": len(sample),
        "curate_s": round(ours_s, 2),
        "curate_passes": model.iterations,
        "curate_inertia": round(final, 2),
        "curate_s_to_sklearn_inertia": None if reach is None else round(reach, 2),
        "speedup_at_equal_inertia": None if reach is None else round(sk_s / reach, 2),
        "inertia_ratio_final": round(final / sk_inertia, 4),
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
