"""Compact pictures of a selection for its report: the score distribution of the pool and of the
selection, the cumulative budget against rank, and the budget per cluster. Each reads the
per-shard spills one at a time (memory is one shard's keys) and keeps a few hundred numbers.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.engine.phases import Decision, ShardResults
from curate.engine.spills import read_spill
from curate.io.inputs import Shard

SCORE_BINS = 40
RANK_POINTS = 120
CLUSTER_POINTS = 200


def _finite_range(paths: list[str], column: str) -> tuple[float, float] | None:
    lo, hi = np.inf, -np.inf
    for p in paths:
        z = read_spill(p)
        if column not in z:
            return None
        v = z[column]
        v = v[np.isfinite(v)]
        if len(v):
            lo, hi = min(lo, float(v.min())), max(hi, float(v.max()))
    if not np.isfinite(lo):
        return None
    return (lo, hi) if hi > lo else (lo - 0.5, lo + 0.5)


def _counts(
    paths: list[str], rows: list[np.ndarray] | None, column: str, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Histograms of the pool's and the chosen rows' finite values; values past an end edge
    count in the end bin."""
    pool = np.zeros(len(edges) - 1, np.int64)
    chosen = np.zeros(len(edges) - 1, np.int64)
    for i, p in enumerate(paths):
        v = read_spill(p)[column]
        clipped = np.clip(v, edges[0], edges[-1])
        pool += np.histogram(clipped[np.isfinite(v)], edges)[0]
        if rows is not None:
            w = clipped[rows[i]]
            chosen += np.histogram(w[np.isfinite(w)], edges)[0]
    return pool, chosen


def score_histogram(
    paths: list[str], rows: list[np.ndarray], column: str, bins: int = SCORE_BINS
) -> dict[str, Any] | None:
    """Counts of the finite values of `column` in every spill (the pool) and in the chosen rows.
    The range starts at the pool's 0.5% quantile (from a fine first histogram), so a long tail
    of outliers does not squash the picture; the values below it count in the first bin."""
    span = _finite_range(paths, column)
    if span is None:
        return None
    fine_edges = np.linspace(span[0], span[1], 2001)
    fine, _ = _counts(paths, None, column, fine_edges)
    lo = float(fine_edges[np.searchsorted(np.cumsum(fine), 0.005 * fine.sum(), side="right")])
    edges = np.linspace(min(lo, span[1] - 1e-9), span[1], bins + 1)
    pool, chosen = _counts(paths, rows, column, edges)
    return {
        "edges": edges.tolist(),
        "pool": pool.tolist(),
        "selected": chosen.tolist(),
        "below_first_edge": "counted in the first bin",
    }


def rank_curve(paths: list[str], points: int = RANK_POINTS) -> dict[str, Any] | None:
    """Cumulative documents and cost of the pool taken in key order (best first), at `points`
    key levels: where a budget line crosses it is where the cut falls."""
    span = _finite_range(paths, "key")
    if span is None:
        return None
    edges = np.linspace(span[0], span[1], points + 1)
    docs = np.zeros(points, np.int64)
    cost = np.zeros(points, np.int64)
    for p in paths:
        z = read_spill(p)
        key, c = z["key"], z["cost"]
        ok = np.isfinite(key)
        b = np.clip(np.searchsorted(edges, key[ok], side="right") - 1, 0, points - 1)
        docs += np.bincount(b, minlength=points)
        cost += np.bincount(b, weights=c[ok], minlength=points).astype(np.int64)
    # Best (highest key) first.
    return {
        "key": edges[::-1][1:].tolist(),
        "docs": np.cumsum(docs[::-1]).tolist(),
        "cost": np.cumsum(cost[::-1]).tolist(),
    }


def selection_distribution(keys: ShardResults, decision: Decision, shards: list[Shard]) -> dict[str, Any]:
    """A selection job's score histogram (pool and selection) and cumulative cost by rank."""
    paths = [keys.paths[s.index] for s in shards]
    rows = [decision.rows.get(s.index, np.zeros(0, np.int64)) for s in shards]
    return {"score": score_histogram(paths, rows, "score"), "rank": rank_curve(paths)}


def cluster_profile(
    size: np.ndarray, capacity: np.ndarray, allocation: np.ndarray, got: np.ndarray
) -> dict[str, Any]:
    """Clusters by size (a log2 histogram) and, largest first, each one's share of the pool, of
    the budget it was given, and of the selection (at most CLUSTER_POINTS clusters, evenly spaced)."""
    size = np.asarray(size, np.int64)
    order = np.argsort(-np.asarray(capacity, np.float64), kind="stable")
    pick = order[np.unique(np.linspace(0, len(order) - 1, min(len(order), CLUSTER_POINTS)).astype(int))]

    def share(x: np.ndarray) -> list[float]:
        x = np.asarray(x, np.float64)
        return (x[pick] / max(float(x.sum()), 1.0)).round(6).tolist()

    log2 = np.floor(np.log2(np.maximum(size, 1))).astype(int)
    return {
        "size_log2_histogram": np.bincount(log2[size > 0], minlength=1).tolist() if (size > 0).any() else [],
        "empty_clusters": int((size == 0).sum()),
        "largest_first": {
            "cluster": pick.tolist(),
            "pool_share": share(capacity),
            "allocated_share": share(allocation),
            "selected_share": share(got),
        },
    }
