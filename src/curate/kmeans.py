"""k-means in torch (GPU when present, the same code on CPU), streamed as mergeable partial sums.

- Initialisation: greedy k-means++ on a sample (at each step 2 + ⌊ln k⌋ candidates drawn by D²
  sampling, the one that lowers the potential most is kept: scikit-learn's default).
- Lloyd passes: each pass assigns every row to its nearest centroid and returns, per cluster,
  the sum of its rows and their count, plus the pass's inertia and the rows farthest from their
  centroid. Summaries merge by addition (associative, so shards and workers merge in any tree);
  the driver turns them into the next centroids. An empty cluster is re-seeded at the farthest
  row not yet used, which splits the worst-fitting cluster.
- Stops when the relative drop in inertia falls below `tol` or after `max_iter` passes.
- Distances: ‖x‖² − 2x·c + ‖c‖² with one matrix product per block of rows, blocks sized to
  keep the distance matrix small (cache on CPU, memory on GPU), in float32.
Everything random comes from one seeded generator, so a fit is reproducible given its seed.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import MissingDependencyError, StageError

FAR_ROWS = 256  # farthest rows each summary keeps, for re-seeding empty clusters


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("k-means needs torch", hint="pip install 'curate[lm]'") from exc
    return torch


def as_tensor(x: np.ndarray, device: str) -> Any:
    """A float32 torch tensor of `x` (copied when numpy's buffer is read-only, e.g. from Arrow)."""
    torch = _torch()
    arr = np.ascontiguousarray(x, np.float32)
    if not arr.flags.writeable:
        arr = arr.copy()
    return torch.from_numpy(arr).to(device)


def _block_rows(k: int, device: str) -> int:
    budget = (1 << 26) if device.startswith("cuda") else (1 << 21)  # distance entries per block
    return max(64, budget // max(1, k))


def assign(x: Any, centroids: Any, sums: Any = None) -> tuple[Any, Any]:
    """(nearest centroid int64[n], squared distance float32[n]) for torch tensors on one device.

    With `sums` (float64[k, d]), each row is also added to its cluster's sum, block by block in
    float32 then float64, so no float64 copy of `x` is made."""
    torch = _torch()
    device = str(x.device)
    c2 = (centroids * centroids).sum(1)
    labels = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    d2 = torch.empty(x.shape[0], dtype=torch.float32, device=x.device)
    step = _block_rows(centroids.shape[0], device)
    block_sums = (
        torch.zeros(centroids.shape, dtype=torch.float32, device=x.device) if sums is not None else None
    )
    for i in range(0, x.shape[0], step):
        xb = x[i : i + step]
        dist = torch.addmm(c2[None, :], xb, centroids.T, alpha=-2.0)  # ‖c‖² − 2x·c
        x2 = (xb * xb).sum(1)
        if centroids.shape[0] > 1:
            two, idx = torch.topk(dist, 2, dim=1, largest=False)
            best, arg = two[:, 0], idx[:, 0].clone()
            # A float32 matrix product may round differently with the BLAS thread count; rows whose
            # two nearest centroids are that close are settled in float64, so the assignment does
            # not depend on the machine's load or the number of workers.
            near = torch.nonzero(two[:, 1] - two[:, 0] <= 1e-4 * (best.abs() + x2 + 1e-12)).flatten()
            if len(near):
                exact = ((xb[near].double()[:, None, :] - centroids.double()[None]) ** 2).sum(-1)
                e_best, e_arg = exact.min(1)
                arg[near] = e_arg
                best[near] = (e_best - x2[near].double()).float()
        else:
            best, arg = dist.min(1)
        labels[i : i + step] = arg
        d2[i : i + step] = (best + x2).clamp_min(0.0)
        if sums is not None and block_sums is not None:
            block_sums.zero_()
            block_sums.index_add_(0, arg, xb)
            sums += block_sums
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
    torch = _torch()
    k, d = centroids.shape
    if len(x) == 0:
        return KMeansSummary.empty(k, d)
    xt = as_tensor(x, device)
    ct = as_tensor(centroids, device)
    sums = torch.zeros((k, d), dtype=torch.float64, device=device)
    labels, d2 = assign(xt, ct, sums)
    counts = torch.bincount(labels, minlength=k)
    m = min(FAR_ROWS, len(x))
    far = torch.topk(d2, m).indices
    far_d2, far_x = _top_far(d2[far].double().cpu().numpy(), xt[far].cpu().numpy())
    return KMeansSummary(
        sums.cpu().numpy(),
        counts.cpu().numpy().astype(np.int64),
        float(np.sum(d2.cpu().numpy().astype(np.float64))),  # numpy's pairwise sum: same bits every run
        len(x),
        far_d2,
        far_x,
    )


def kmeans_plus_plus(
    sample: np.ndarray, k: int, seed: int, device: str = "cpu", trials: int | None = None
) -> np.ndarray:
    """k-means++ centroids (float32[k, d]) chosen among the rows of `sample`; `trials` candidates
    per step, the best kept (default 2 + ⌊ln k⌋, scikit-learn's greedy variant; 1 is plain D²)."""
    torch = _torch()
    n = len(sample)
    if k > n:
        raise StageError(f"k-means++: k={k} is larger than the {n} sample rows")
    gen = torch.Generator(device="cpu").manual_seed(seed)
    x = as_tensor(sample, device)
    x2 = (x * x).sum(1)
    trials = trials or 2 + int(math.log(k))
    chosen = [int(torch.randint(n, (1,), generator=gen))]
    closest = (x2 - 2 * x @ x[chosen[0]] + x2[chosen[0]]).clamp_min(0.0)
    for _ in range(1, k):
        potential = closest.sum()
        if float(potential) <= 0:  # fewer distinct rows than k: take unused rows in seeded order
            unused = torch.ones(n, dtype=torch.bool)
            unused[chosen] = False
            rest = torch.nonzero(unused).flatten()
            perm = rest[torch.randperm(len(rest), generator=gen)]
            chosen.extend(int(i) for i in perm[: k - len(chosen)])
            break
        r = torch.rand(trials, generator=gen, dtype=torch.float64).to(device) * potential.double()
        cand = torch.searchsorted(torch.cumsum(closest.double(), 0), r).clamp(max=n - 1)
        d_cand = (x2[None, :] - 2 * x[cand] @ x.T + x2[cand][:, None]).clamp_min(0.0)
        d_cand = torch.minimum(d_cand, closest[None, :])
        best = int(torch.argmin(d_cand.double().sum(1)))
        chosen.append(int(cand[best]))
        closest = d_cand[best]
    return sample[np.array(chosen)].astype(np.float32)


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
