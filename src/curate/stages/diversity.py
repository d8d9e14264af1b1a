"""Cluster-balanced selection (Diversify and Conquer, METHODS §5.1) and the cluster-assign stage.

Budget allocation: `proportional` gives each cluster a share of the budget proportional to its
document count (the paper); `equal` gives every cluster the same share (the released code). Both
cap a cluster at what it holds and redistribute the shortfall to the clusters that still have
room (water-filling), which the released code does not do.

Inside a cluster, documents are drawn without replacement with probability ∝ exp(quality / T)
by Gumbel top-k (keys quality/T + Gumbel noise from the document's id hash and the seed; uniform
when there is no quality column), and the cluster takes the longest prefix of its ranking that
fits its share. What the prefixes leave of the budget (each stops short of its share by less
than one document) goes to the clusters' next documents by largest remainder (Hamilton's
apportionment): in order of the fraction of its next document a cluster's unspent share covers,
while they fit. At most one extra document per cluster, and the total ends less than one
document short of the budget.
"""

from __future__ import annotations

from collections.abc import Callable
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
        from curate.kmeans import assign

        x, valid = embedding_matrix(batch, self.column, "batch", 0)
        cluster = np.zeros(batch.num_rows, np.int32)
        dist = np.zeros(batch.num_rows, np.float32)
        if len(x):
            if x.shape[1] != self.centroids.shape[1]:
                from curate.errors import SchemaError

                raise SchemaError(
                    f"embeddings have {x.shape[1]} dimensions, the centroids {self.centroids.shape[1]}"
                )
            labels, d2 = assign(x, self.centroids, self.device)
            cluster[valid] = labels
            dist[valid] = np.sqrt(d2)
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
    rows: list[np.ndarray]  # per part: selected row numbers, sorted
    allocation: np.ndarray  # per cluster, in budget units
    size: np.ndarray  # selectable documents per cluster
    capacity: np.ndarray  # selectable cost per cluster
    got: np.ndarray  # selected cost per cluster
    budget: float
    filled: int  # documents taken by the leftover fill
    candidates: int  # rows the driver held at once (memory)
    selected: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))  # one-part calls: per row

    @property
    def selected_docs(self) -> int:
        return int(sum(len(r) for r in self.rows))

    @property
    def selected_cost(self) -> int:
        return int(self.got.sum())

    def report(self, target: np.ndarray | None = None) -> dict[str, Any]:
        """Coverage and shares; with `target` (the target's documents per cluster), how many of the
        target's clusters the selection reaches and the share of the target's documents in them."""
        k = len(self.size)
        got = self.got
        total = max(float(got.sum()), 1.0)
        pool_cost = max(float(self.capacity.sum()), 1.0)
        covered = int((got > 0).sum())
        budget_pct = 100.0 * float(got.sum()) / pool_cost
        top = np.argsort(-got)[:10]
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
                        "pool_share": float(self.capacity[c] / pool_cost),
                    }
                    for c in top
                    if got[c] > 0
                ],
            },
            "leftover_fill_docs": self.filled,
            "driver_candidate_rows": self.candidates,
            **(_target_coverage(target, got) if target is not None else {}),
        }


def _target_coverage(target: np.ndarray, got: np.ndarray) -> dict[str, Any]:
    t = np.zeros(len(got), np.int64)
    t[: min(len(t), len(target))] = np.asarray(target, np.int64)[: len(t)]
    covered = (t > 0) & (got > 0)
    return {
        "target_clusters": int((t > 0).sum()),
        "target_clusters_covered": int(covered.sum()),
        "target_docs_in_covered_clusters": float(t[covered].sum() / max(t.sum(), 1)),
    }


Part = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # key, tie, cost, cluster of one shard


def _ranked(
    key: np.ndarray, tie: np.ndarray, cost: np.ndarray, cluster: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Selectable rows by (cluster, key desc, tie asc), their clusters, and the cumulative cost
    inside their cluster up to and including each row."""
    rows = np.flatnonzero(np.isfinite(key) & (cluster >= 0))
    order = rows[np.lexsort((tie[rows], -key[rows], cluster[rows]))]
    oc = cluster[order]
    cum = np.cumsum(cost[order])
    base = np.concatenate([[0], cum])[np.searchsorted(oc, np.arange(k))]  # cost before each cluster
    return order, oc, cum - base[oc]


def balanced_from_parts(
    load: Callable[[int], Part],
    parts: int,
    *,
    budget: float,
    allocation: str = "proportional",
    weights: np.ndarray | None = None,
    smoothing: float = 0.0,
) -> BalancedSelection:
    """The cluster-balanced cut over spilled shards, holding only candidate rows in memory.

    Scan 1 counts each cluster's size and cost and fixes the shares. A row is in a cluster's
    share-prefix only if the rows before it in its own shard cost no more than the share, so
    scan 2 keeps just those (plus each shard's first row past it, whose cost marks where the
    prefix ends); the cumulative costs computed over the kept rows are exact for every row whose
    global "cost before" is within the limit, and rows past a dropped one are recognisably over
    it. Memory: the selection plus at most one row per cluster and shard, not the pool
    (METHODS §10.5's idea, per cluster). Keys: larger is better; -inf or cluster < 0 is never selected.
    `weights` (one per cluster) replace the allocation rule, mixed with the clusters' shares of
    the pool by `smoothing`: weight = (1 - smoothing) w / sum(w) + smoothing size / sum(size)."""
    size = np.zeros(0, np.int64)
    capacity = np.zeros(0)
    for i in range(parts):
        key, _, cost, cluster = load(i)
        ok = np.isfinite(key) & (cluster >= 0)
        k_i = int(cluster[ok].max()) + 1 if ok.any() else 0
        if k_i > len(size):
            size = np.concatenate([size, np.zeros(k_i - len(size), np.int64)])
            capacity = np.concatenate([capacity, np.zeros(k_i - len(capacity))])
        size[:k_i] += np.bincount(cluster[ok], minlength=k_i)[:k_i]
        capacity[:k_i] += np.bincount(cluster[ok], weights=cost[ok], minlength=k_i)[:k_i]
    k = len(size)
    if weights is not None:
        weight = np.zeros(k)
        weight[: min(k, len(weights))] = np.asarray(weights, np.float64)[:k]
        if smoothing > 0 and weight.sum() > 0 and size.sum() > 0:
            weight = (1 - smoothing) * weight / weight.sum() + smoothing * size / size.sum()
    elif allocation == "proportional":
        weight = size.astype(np.float64)
    else:
        weight = (size > 0).astype(np.float64)
    alloc = allocate(capacity, weight, budget)

    def gather(limit: np.ndarray) -> tuple[np.ndarray, ...]:
        chunks = []
        for i in range(parts):
            key, tie, cost, cluster = load(i)
            order, oc, within = _ranked(key, tie, cost, cluster, k)
            keep = order[(within - cost[order]) <= limit[oc] + 1e-9]
            chunks.append(
                (np.full(len(keep), i, np.int64), keep, key[keep], tie[keep], cost[keep], cluster[keep])
            )
        part_of, row_of, key, tie, cost, cluster = (np.concatenate([c[j] for c in chunks]) for j in range(6))
        order, oc, within = _ranked(key, tie, cost, cluster, k)
        exact = (within - cost[order]) <= limit[oc] + 1e-9
        return part_of, row_of, tie, cost, cluster, order[exact], oc[exact], within[exact]

    part_of, row_of, tie, cost, cluster, order, oc, within = gather(alloc)
    held = len(part_of)
    take = within <= alloc[oc] + 1e-9
    chosen = order[take]
    leftover = budget - float(cost[chosen].sum())
    filled = 0
    if leftover > 0 and (~take).any():
        # Largest remainder: each cluster's prefix stops short of its share by less than its next
        # row; those next rows (all gathered: their cost-before is within the share) are offered
        # in order of the share of them the cluster already holds, while they fit. At most one
        # extra row per cluster, and the total ends less than one row short of the budget.
        nxt, noc = order[~take], oc[~take]
        _, first = np.unique(noc, return_index=True)
        nxt, noc = nxt[first], noc[first]
        before = within[~take][first] - cost[nxt]
        owned = (alloc[noc] - before) / np.maximum(cost[nxt], 1e-9)
        fill = prefix_mask(owned, tie[nxt], cost[nxt], leftover, policy="under")
        chosen = np.concatenate([chosen, nxt[fill]])
        filled = int(fill.sum())
    got = np.bincount(cluster[chosen], weights=cost[chosen], minlength=k)[:k].astype(np.float64)
    rows = [np.sort(row_of[chosen][part_of[chosen] == i]) for i in range(parts)]
    return BalancedSelection(
        rows=rows,
        allocation=alloc,
        size=size,
        capacity=capacity,
        got=got,
        budget=budget,
        filled=filled,
        candidates=held,
    )


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
    """In-memory form of `balanced_from_parts` (one part): per-cluster shares of `budget`,
    Gumbel top-k inside each cluster on quality / T + noise (or on `key` when given).

    Rows with cluster < 0 (no embedding), a non-finite quality or `exclude` set are never
    selected. `weights` (one per cluster) replaces the allocation rule: shares ∝ weights."""
    cluster = np.asarray(cluster, np.int64)
    cost = np.asarray(cost, np.int64)
    k_ = selection_keys(tie, seed, quality=quality, temperature=temperature, key=key, exclude=exclude)
    sel = balanced_from_parts(
        lambda i: (k_, tie, cost, cluster), 1, budget=budget, allocation=allocation, weights=weights
    )
    mask = np.zeros(len(cluster), bool)
    mask[sel.rows[0]] = True
    sel.selected = mask
    return sel


def selection_keys(
    tie: np.ndarray,
    seed: int,
    *,
    quality: np.ndarray | None = None,
    temperature: float = 1.0,
    key: np.ndarray | None = None,
    exclude: np.ndarray | None = None,
) -> np.ndarray:
    """quality / T + Gumbel noise from the id hash (or `key` as given); excluded rows -inf."""
    if key is None:
        key = gumbel_noise(tie, seed)
        if quality is not None:
            key = key + quality / temperature
    key = np.where(np.isfinite(key), key, -np.inf)
    if exclude is not None:
        key = np.where(exclude, -np.inf, key)
    return key


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
