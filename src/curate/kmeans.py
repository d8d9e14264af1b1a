"""k-means in numpy on the CPU (torch on a GPU: `curate.kmeans_cuda`), streamed as mergeable
partial sums. The CPU path needs no torch, so `select --diversity` and `curate cluster` run on
the base install and their workers do not pay torch's import (about 0.8 CPU-s each).

- Initialisation: greedy k-means++ on a sample (at each step 2 + ⌊ln k⌋ candidates drawn by D²
  sampling, the one that lowers the potential most is kept: scikit-learn's default).
- Lloyd passes: each pass assigns every row to its nearest centroid and returns, per cluster,
  the sum of its rows and their count, plus the pass's inertia and the rows farthest from their
  centroid. Summaries merge by addition (associative, so shards and workers merge in any tree);
  the driver turns them into the next centroids. An empty cluster is re-seeded at the farthest
  row not yet used, which splits the worst-fitting cluster.
- Stops when the relative drop in inertia falls below `tol` or after `max_iter` passes.
- Distances: ‖x‖² − 2x·c + ‖c‖² with one matrix product per block of rows, blocks sized to
  keep the distance matrix small (cache on CPU, memory on GPU), in float32. Rows whose two
  nearest centroids are within float32's rounding are settled in float64, so an assignment does
  not depend on the BLAS, its thread count or the device.
Everything random comes from one seeded numpy generator (on either device), so a fit is
reproducible given its seed.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import StageError

FAR_ROWS = 256  # farthest rows each summary keeps, for re-seeding empty clusters
NEAR_TIE = 1e-4  # relative gap between the two nearest centroids below which float64 decides
EXACT_ENTRIES = 1 << 22  # float64 entries of one brute-force block (32 MB)


def on_gpu(device: str) -> bool:
    return device.startswith("cuda")


def kmeans_device(device: str) -> str:
    """`auto` is a GPU only where torch sees one; torch is not imported on a machine without an
    NVIDIA driver, so the CPU path stays torch-free."""
    if device == "cpu":
        return device
    if device == "auto" and not os.path.exists("/proc/driver/nvidia/version"):
        return "cpu"
    try:
        import torch  # noqa: F401
    except ImportError:
        if device == "auto":
            return "cpu"
    from curate.stages.lm_models import resolve_device

    return str(resolve_device(device))


def block_rows(k: int, device: str) -> int:
    budget = (1 << 26) if on_gpu(device) else (1 << 21)  # distance entries per block
    return max(64, budget // max(1, k))


def settle_exactly(x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid, squared distance) by brute force in float64, in bounded blocks."""
    c = centroids.astype(np.float64)
    step = max(1, EXACT_ENTRIES // max(1, c.size))
    arg = np.empty(len(x), np.int64)
    best = np.empty(len(x), np.float64)
    for i in range(0, len(x), step):
        d = ((x[i : i + step].astype(np.float64)[:, None, :] - c[None]) ** 2).sum(-1)
        arg[i : i + step] = d.argmin(1)
        best[i : i + step] = d.min(1)
    return arg, best


def _cluster_sums(labels: np.ndarray, x: np.ndarray, k: int) -> np.ndarray:
    """float64[k, d]: the sum of each cluster's rows in this block, added in row order in
    float32 (the block is small; the caller accumulates blocks in float64): the same bits on
    every run, whatever the BLAS."""
    grouped = x[np.argsort(labels, kind="stable")]
    counts = np.bincount(labels, minlength=k)
    ends = np.cumsum(counts)
    out = np.zeros((k, x.shape[1]))
    for c in np.flatnonzero(counts):  # a slice sum per cluster: 4x faster than np.add.reduceat
        out[c] = grouped[ends[c] - counts[c] : ends[c]].sum(0)
    return out


def assign(
    x: np.ndarray, centroids: np.ndarray, device: str = "cpu", sums: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(nearest centroid int64[n], squared distance float32[n]) of the rows of `x`.

    With `sums` (float64[k, d]), each row is also added to its cluster's sum."""
    x = np.ascontiguousarray(x, np.float32)
    centroids = np.ascontiguousarray(centroids, np.float32)
    if on_gpu(device):
        from curate.kmeans_cuda import assign_cuda

        return assign_cuda(
            x,
            centroids,
            device,
            sums,
            step=block_rows(len(centroids), device),
            near_tie=NEAR_TIE,
            settle=settle_exactly,
        )
    k = centroids.shape[0]
    c2 = np.einsum("ij,ij->i", centroids, centroids)
    labels = np.empty(len(x), np.int64)
    d2 = np.empty(len(x), np.float32)
    step = block_rows(k, device)
    for i in range(0, len(x), step):
        xb = x[i : i + step]
        dist = xb @ centroids.T
        dist *= -2.0
        dist += c2[None, :]  # ‖c‖² − 2x·c
        x2 = np.einsum("ij,ij->i", xb, xb)
        arg = dist.argmin(1)
        rows = np.arange(len(xb))
        best = dist[rows, arg]
        if k > 1:
            dist[rows, arg] = np.inf  # the runner-up is then the minimum (a partition cost 4x more)
            second = dist.min(1)
            near = np.flatnonzero(second - best <= NEAR_TIE * (np.abs(best) + x2 + 1e-12))
            if len(near):
                e_arg, e_best = settle_exactly(xb[near], centroids)
                arg[near] = e_arg
                best[near] = (e_best - x2[near].astype(np.float64)).astype(np.float32)
        labels[i : i + step] = arg
        d2[i : i + step] = np.maximum(best + x2, 0.0)
        if sums is not None:
            sums += _cluster_sums(arg, xb, k)
    return labels, d2


@dataclass
class KMeansSummary:
    """Mergeable statistics of one Lloyd pass over some rows."""

    sums: np.ndarray  # float64[k, d]
    counts: np.ndarray  # int64[k]
    inertia: float
    rows: int
    far_d2: np.ndarray = field(default_factory=lambda: np.zeros(0))  # descending
    far_x: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))

    @staticmethod
    def empty(k: int, d: int) -> KMeansSummary:
        return KMeansSummary(
            np.zeros((k, d)), np.zeros(k, np.int64), 0.0, 0, np.zeros(0), np.zeros((0, d), np.float32)
        )


def _top_far(d2: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # (distance desc, then the row's bytes) so the kept set does not depend on merge order
    keys = np.ascontiguousarray(x).view(np.uint8).reshape(len(x), -1)
    order = np.lexsort((*keys.T[::-1], -d2)) if len(d2) else np.zeros(0, np.int64)
    order = order[:FAR_ROWS]
    return d2[order], x[order]


def merge_summaries(a: KMeansSummary, b: KMeansSummary) -> KMeansSummary:
    far_d2, far_x = _top_far(np.concatenate([a.far_d2, b.far_d2]), np.concatenate([a.far_x, b.far_x]))
    return KMeansSummary(
        a.sums + b.sums, a.counts + b.counts, a.inertia + b.inertia, a.rows + b.rows, far_d2, far_x
    )


def lloyd_summary(x: np.ndarray, centroids: np.ndarray, device: str = "cpu") -> KMeansSummary:
    """One pass's statistics for the rows `x` (float32[n, d]) under `centroids`."""
    k, d = centroids.shape
    if len(x) == 0:
        return KMeansSummary.empty(k, d)
    x = np.ascontiguousarray(x, np.float32)
    sums = np.zeros((k, d))
    labels, d2 = assign(x, centroids, device, sums)
    m = min(FAR_ROWS, len(x))
    far = np.argpartition(d2, len(x) - m)[len(x) - m :]
    far_d2, far_x = _top_far(d2[far].astype(np.float64), x[far])
    return KMeansSummary(
        sums,
        np.bincount(labels, minlength=k).astype(np.int64),
        float(np.sum(d2.astype(np.float64))),  # numpy's pairwise sum: same bits every run
        len(x),
        far_d2,
        far_x,
    )


def kmeans_plus_plus(
    sample: np.ndarray, k: int, seed: int, device: str = "cpu", trials: int | None = None
) -> np.ndarray:
    """k-means++ centroids (float32[k, d]) chosen among the rows of `sample`; `trials` candidates
    per step, the best kept (default 2 + ⌊ln k⌋, scikit-learn's greedy variant; 1 is plain D²)."""
    n = len(sample)
    if k > n:
        raise StageError(f"k-means++: k={k} is larger than the {n} sample rows")
    rng = np.random.default_rng(seed)
    trials = trials or 2 + int(math.log(k))
    x = np.ascontiguousarray(sample, np.float32)
    if on_gpu(device):
        from curate.kmeans_cuda import plus_plus_cuda

        return x[np.array(plus_plus_cuda(x, k, rng, device, trials, unused_rows))]
    x2 = np.einsum("ij,ij->i", x, x)
    chosen = [int(rng.integers(n))]
    closest = np.maximum(x2 - 2 * (x @ x[chosen[0]]) + x2[chosen[0]], 0.0)
    for _ in range(1, k):
        cum = np.cumsum(closest, dtype=np.float64)
        if cum[-1] <= 0:  # fewer distinct rows than k: take unused rows in seeded order
            chosen.extend(unused_rows(n, chosen, rng)[: k - len(chosen)])
            break
        cand = np.minimum(np.searchsorted(cum, rng.random(trials) * cum[-1]), n - 1)
        d_cand = x2[None, :] - 2 * (x[cand] @ x.T) + x2[cand][:, None]
        np.minimum(np.maximum(d_cand, 0.0, out=d_cand), closest[None, :], out=d_cand)
        best = int(np.argmin(d_cand.sum(1, dtype=np.float64)))
        chosen.append(int(cand[best]))
        closest = d_cand[best]
    return x[np.array(chosen)]


def unused_rows(n: int, chosen: list[int], rng: np.random.Generator) -> list[int]:
    unused = np.ones(n, bool)
    unused[chosen] = False
    return [int(i) for i in rng.permutation(np.flatnonzero(unused))]


def update_centroids(summary: KMeansSummary, previous: np.ndarray) -> tuple[np.ndarray, int]:
    """Means of the assigned rows; empty clusters re-seeded at the farthest rows (count returned)."""
    out = previous.astype(np.float64).copy()
    filled = summary.counts > 0
    out[filled] = summary.sums[filled] / summary.counts[filled, None]
    empty = np.flatnonzero(~filled)
    for j, c in enumerate(empty[: len(summary.far_x)]):
        out[c] = summary.far_x[j]
    return out.astype(np.float32), len(empty)


@dataclass
class KMeansModel:
    centroids: np.ndarray  # float32[k, d]
    inertia: list[float]  # per pass, under the centroids that pass started with
    iterations: int
    converged: bool
    reseeded: int
    rows: int
    seed: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])

    @property
    def dim(self) -> int:
        return int(self.centroids.shape[1])

    def save(self, path: str | Path) -> None:
        """`path`.npz (centroids) and `path`.json (everything else), written atomically."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp.npz")
        np.savez(tmp, centroids=self.centroids)
        tmp.replace(p.with_suffix(".npz"))
        meta = {
            "format": "curate-kmeans",
            "format_version": 1,
            "k": self.k,
            "dim": self.dim,
            "inertia": self.inertia,
            "iterations": self.iterations,
            "converged": self.converged,
            "reseeded": self.reseeded,
            "rows": self.rows,
            "seed": self.seed,
            **self.info,
        }
        tmpj = p.with_name(p.name + ".tmp.json")
        tmpj.write_text(json.dumps(meta, indent=2) + "\n")
        tmpj.replace(p.with_suffix(".json"))

    @staticmethod
    def load(path: str | Path) -> KMeansModel:
        p = Path(path)
        npz, js = p.with_suffix(".npz"), p.with_suffix(".json")
        try:
            meta = json.loads(js.read_text())
            with np.load(npz, allow_pickle=False) as z:
                centroids = z["centroids"].astype(np.float32)
        except (OSError, ValueError, KeyError) as exc:
            raise StageError(f"{p}: not a k-means model (.npz + .json) ({exc})") from exc
        if meta.get("format") != "curate-kmeans" or centroids.shape != (meta.get("k"), meta.get("dim")):
            raise StageError(f"{js}: not a curate k-means model, or it does not match {npz.name}")
        info = {k: v for k, v in meta.items() if k not in _MODEL_KEYS}
        return KMeansModel(
            centroids=centroids,
            inertia=list(meta["inertia"]),
            iterations=int(meta["iterations"]),
            converged=bool(meta["converged"]),
            reseeded=int(meta["reseeded"]),
            rows=int(meta["rows"]),
            seed=int(meta["seed"]),
            info=info,
        )


_MODEL_KEYS = {
    "format",
    "format_version",
    "k",
    "dim",
    "inertia",
    "iterations",
    "converged",
    "reseeded",
    "rows",
    "seed",
}


def fit(
    sample: np.ndarray,
    one_pass: Callable[[np.ndarray], KMeansSummary],
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 20,
    tol: float = 1e-4,
    device: str = "cpu",
    on_pass: Callable[[int, float], None] | None = None,
    sample_iter: int = 3,
) -> KMeansModel:
    """k-means++ on `sample` refined by `sample_iter` Lloyd steps on the sample alone (cheap:
    the sample is small), then Lloyd passes; `one_pass(centroids)` summarises all the data."""
    centroids = kmeans_plus_plus(sample, k, seed, device)
    for _ in range(sample_iter):
        centroids, _ = update_centroids(lloyd_summary(sample, centroids, device), centroids)
    history: list[float] = []
    reseeded = 0
    converged = False
    rows = 0
    for it in range(max_iter):
        summary = one_pass(centroids)
        rows = summary.rows
        history.append(summary.inertia)
        centroids, empty = update_centroids(summary, centroids)
        reseeded += empty
        if on_pass:
            on_pass(it, summary.inertia)
        if len(history) > 1 and empty == 0:
            prev = history[-2]
            if prev <= 0 or (prev - history[-1]) / prev < tol:
                converged = True
                break
    return KMeansModel(
        centroids=centroids,
        inertia=history,
        iterations=len(history),
        converged=converged,
        reseeded=reseeded,
        rows=rows,
        seed=seed,
    )


def fit_array(
    x: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 20,
    tol: float = 1e-4,
    device: str = "cpu",
    sample_rows: int | None = None,
) -> KMeansModel:
    """k-means on an in-memory matrix (tests, benchmarks): the same passes as the streamed fit."""
    n = len(x)
    if k > n:
        raise StageError(f"k={k} is larger than the {n} rows")
    rng = np.random.default_rng(seed)
    size = min(n, sample_rows or default_sample_rows(k))
    sample = x[np.sort(rng.choice(n, size, replace=False))] if size < n else x
    return fit(
        sample,
        lambda c: lloyd_summary(x, c, device),
        k,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        device=device,
    )


def default_sample_rows(k: int) -> int:
    """Rows k-means++ seeds from: 10 per cluster, at least 10,000. Greedy k-means++ costs
    O(k² x sample / k) distance work, so this bounds the init to about a second at k = 1024 on
    two CPU cores; Lloyd passes over all rows then correct a rough start (bench/bench_kmeans.py:
    one pass after this init already beats MiniBatchKMeans' final inertia). A larger sample
    (--sample-rows) helps on well-separated data where a missed cluster is a lasting local optimum."""
    return max(10_000, 10 * k)


def inertia_of(x: np.ndarray, centroids: np.ndarray, device: str = "cpu") -> float:
    return lloyd_summary(x, centroids, device).inertia
