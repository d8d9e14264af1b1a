"""Cluster-balanced selection (Diversify and Conquer, METHODS §5.1) and the cluster-assign stage.

Budget allocation: `proportional` gives each cluster a share of the budget proportional to its
document count (the paper); `equal` gives every cluster the same share (the released code). Both
cap a cluster at what it holds and redistribute the shortfall to the clusters that still have
room (water-filling), which the released code does not do.

Inside a cluster, documents are drawn without replacement with probability ∝ exp(quality / T)
by Gumbel top-k (keys quality/T + Gumbel noise from the document's id hash and the seed; uniform
when there is no quality column), and the cluster takes the longest prefix of its ranking that
fits its share. What the prefixes leave of the budget (each stops short of its share by less
than one document) is filled by the next documents of all clusters, taken in order of how far
each cluster is through its share, so the fill stays balanced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from curate.kmeans import KMeansSummary, lloyd_summary, merge_summaries, update_centroids
from curate.stages.base import Annotator, Fittable
from curate.stages.embed import EMBEDDING, embedding_matrix
from curate.stages.resample import gumbel_noise, prefix_mask

KMEANS_CLUSTER, KMEANS_DISTANCE = "kmeans_cluster", "kmeans_distance"


@dataclass(frozen=True, kw_only=True)
class KMeansAssign(Annotator):
    """Annotator: nearest centroid (`kmeans_cluster`) and the distance to it (`kmeans_distance`)."""

    name: ClassVar[str] = "kmeans"
    centroids: np.ndarray = field(repr=False)
    column: str = EMBEDDING
    device: str = "cpu"

    def requires(self) -> tuple[str, ...]:
        return (self.column,)

    def adds(self) -> dict[str, pa.DataType]:
        return {KMEANS_CLUSTER: pa.int32(), KMEANS_DISTANCE: pa.float32()}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        from curate.kmeans import as_tensor, assign

        x, valid = embedding_matrix(batch, self.column, "batch", 0)
        cluster = np.zeros(batch.num_rows, np.int32)
        dist = np.zeros(batch.num_rows, np.float32)
        if len(x):
            if x.shape[1] != self.centroids.shape[1]:
                from curate.errors import SchemaError

                raise SchemaError(
                    f"embeddings have {x.shape[1]} dimensions, the centroids {self.centroids.shape[1]}"
                )
            labels, d2 = assign(as_tensor(x, self.device), as_tensor(self.centroids, self.device))
            cluster[valid] = labels.cpu().numpy()
            dist[valid] = np.sqrt(d2.cpu().numpy())
        mask = ~valid
        return {
            KMEANS_CLUSTER: pa.array(cluster, pa.int32(), mask=mask),
            KMEANS_DISTANCE: pa.array(dist, pa.float32(), mask=mask),
        }


@dataclass(frozen=True, kw_only=True)
class KMeansStep(Fittable[KMeansSummary]):
    """Fittable: one Lloyd pass under `centroids`. Summaries (per-cluster sums and counts, inertia,
    farthest rows) merge by addition; `finalize` gives the next centroids. The driver runs it for
    several passes (curate.kmeans.fit); the stage never loops over data itself."""

    name: ClassVar[str] = "kmeans-step"
    centroids: np.ndarray = field(repr=False)
    column: str = EMBEDDING
    device: str = "cpu"

    def requires(self) -> tuple[str, ...]:
        return (self.column,)

    def summarize(self, batch: pa.RecordBatch) -> KMeansSummary:
        x, _ = embedding_matrix(batch, self.column, "batch", 0)
        return self.summarize_matrix(x)

    def summarize_matrix(self, x: np.ndarray) -> KMeansSummary:
        from curate.errors import SchemaError

        if len(x) and x.shape[1] != self.centroids.shape[1]:
            raise SchemaError(
                f"embeddings have {x.shape[1]} dimensions, the centroids {self.centroids.shape[1]}"
            )
        return lloyd_summary(x, self.centroids, self.device)

    def merge(self, a: KMeansSummary, b: KMeansSummary) -> KMeansSummary:
        return merge_summaries(a, b)

    def empty(self) -> KMeansSummary:
        return KMeansSummary.empty(*self.centroids.shape)

    def finalize(self, summary: KMeansSummary) -> np.ndarray:
        return update_centroids(summary, self.centroids)[0]


def allocate(capacity: np.ndarray, weight: np.ndarray, budget: float) -> np.ndarray:
    """Water-filling: shares ∝ weight, each capped at its capacity, the excess re-shared."""
    capacity = np.asarray(capacity, np.float64)
    weight = np.asarray(weight, np.float64)
    alloc = np.zeros(len(capacity))
    active = (capacity > 0) & (weight > 0)
    remaining = float(min(budget, capacity[active].sum()))
    while remaining > 1e-9 * max(1.0, budget) and active.any():
        w = np.where(active, weight, 0.0)
        share = remaining * w / w.sum()
        room = capacity - alloc
        full = active & (share >= room)
        if full.any():
            remaining -= float(room[full].sum())
            alloc[full] = capacity[full]
            active &= ~full
            continue
        alloc += share
        remaining = 0.0
    return alloc


@dataclass
class BalancedSelection:
    selected: np.ndarray  # bool per row
    cluster: np.ndarray
    allocation: np.ndarray  # per cluster, in budget units
    size: np.ndarray  # documents per cluster
    budget: float
    filled: int  # documents taken by the leftover fill

    def report(self, cost: np.ndarray, selectable: np.ndarray, pool_cost: int) -> dict[str, Any]:
        k = len(self.size)
        sel = self.selected
        got = np.bincount(self.cluster[sel], weights=cost[sel], minlength=k)
        total = max(float(got.sum()), 1.0)
        covered = int((got > 0).sum())
        budget_pct = 100.0 * total / max(pool_cost, 1)
        top = np.argsort(-got)[:10]
        pool_share = np.bincount(self.cluster[selectable], weights=cost[selectable], minlength=k) / max(
            pool_cost, 1
        )
        return {
            "clusters": k,
            "clusters_nonempty": int((self.size > 0).sum()),
            "clusters_covered": covered,
            "clusters_covered_per_budget_percent": covered / budget_pct if budget_pct else 0.0,
            "budget_share_per_cluster": {
                "max": float(got.max() / total) if k else 0.0,
                "median_of_covered": float(np.median(got[got > 0]) / total) if covered else 0.0,
                "top10": [
                    {
                        "cluster": int(c),
                        "selected_share": float(got[c] / total),
                        "pool_share": float(pool_share[c]),
                    }
                    for c in top
                    if got[c] > 0
                ],
            },
            "leftover_fill_docs": self.filled,
        }


def balanced_selection(
    *,
    cluster: np.ndarray,
    cost: np.ndarray,
    tie: np.ndarray,
    budget: float,
    quality: np.ndarray | None = None,
    temperature: float = 1.0,
    allocation: str = "proportional",
    seed: int = 0,
    weights: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
    key: np.ndarray | None = None,
) -> BalancedSelection:
    """Rows to keep: per-cluster shares of `budget`, Gumbel top-k inside each cluster.

    Rows with cluster < 0 (no embedding), a non-finite quality or `exclude` set are never
    selected. `weights` (one per cluster) replaces the allocation rule: shares ∝ weights.
    `key` gives the ranking keys directly (larger is better; -inf never selected)."""
    cluster = np.asarray(cluster, np.int64)
    cost = np.asarray(cost, np.int64)
    ok = cluster >= 0
    if exclude is not None:
        ok &= ~exclude
    if key is None:  # else precomputed keys (e.g. DSIR log weight / T + Gumbel noise)
        key = gumbel_noise(tie, seed)
        if quality is not None:
            key = key + quality / temperature
    ok &= np.isfinite(key)
    key = np.where(ok, key, -np.inf)
    k = int(cluster.max()) + 1 if ok.any() else 0
    c = np.where(ok, cluster, 0)
    size = np.bincount(c[ok], minlength=k)
    capacity = np.bincount(c[ok], weights=cost[ok], minlength=k)
    if weights is not None:
        weight = np.zeros(k)
        weight[: min(k, len(weights))] = np.asarray(weights, np.float64)[:k]
    elif allocation == "proportional":
        weight = size.astype(np.float64)
    else:
        weight = (size > 0).astype(np.float64)
    alloc = allocate(capacity, weight, budget)

    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((tie[rows], -key[rows], c[rows]))]  # by cluster, best first
    oc = c[order]
    cum = np.cumsum(cost[order])
    starts = np.searchsorted(oc, np.arange(k))
    base = np.concatenate([[0], cum])[starts]  # cost before each cluster's first row
    within = cum - base[oc]  # cumulative cost inside the cluster, this row included
    take = within <= alloc[oc] + 1e-9
    # a cluster's prefix ends at its first row that does not fit
    first_bad = np.full(k, len(order))
    bad_rows = np.flatnonzero(~take)
    if len(bad_rows):
        np.minimum.at(first_bad, oc[bad_rows], bad_rows)
    take = np.arange(len(order)) < first_bad[oc]
    selected = np.zeros(len(cluster), bool)
    selected[order[take]] = True
    leftover = budget - float(cost[selected].sum())
    filled = 0
    if leftover > 0 and (~take).any():
        rest = order[~take]
        progress = within[~take] / np.maximum(alloc[oc[~take]], 1.0)
        fill = prefix_mask(-progress, tie[rest], cost[rest], leftover, policy="under")
        selected[rest[fill]] = True
        filled = int(fill.sum())
    return BalancedSelection(
        selected=selected, cluster=c, allocation=alloc, size=size, budget=budget, filled=filled
    )


def refinement_weights(
    scores: dict[int, float], k: int, *, temperature: float = 1.0
) -> tuple[np.ndarray, int]:
    """Softmax cluster weights from per-cluster scores (METHODS §5.2 step 3) over all k clusters.

    A cluster without a score gets the mean of the others (a neutral prior: no evidence either
    way), so it can still be drawn; the released code's weight vector skipped such clusters and
    broke. Returns (weights, clusters that got the prior)."""
    s = np.full(k, np.nan)
    for c, v in scores.items():
        if 0 <= c < k and np.isfinite(v):
            s[c] = v
    seen = np.isfinite(s)
    prior = float(s[seen].mean()) if seen.any() else 0.0
    s[~seen] = prior
    z = (s - s.max()) / temperature
    w = np.exp(z)
    return w / w.sum(), int((~seen).sum())


def refinement_counts(weights: np.ndarray, n_new: int, seed: int) -> np.ndarray:
    """Step 4: n_new cluster labels drawn with replacement from Categorical(weights), as counts."""
    rng = np.random.default_rng([seed, 0x5EED])
    return rng.multinomial(n_new, weights / weights.sum()).astype(np.int64)
