"""Cutting a budget from spilled selection keys (`curate select`, `curate resample`).

`prefix_cut` is the exact global budget prefix from per-shard prefixes (METHODS §10.5): memory
O(selected). `balanced_cut` gives each k-means cluster a share and fills it in key order
(`select --diversity`). `correct_to_exact` re-cuts a token budget measured by an estimate so
that the selection's exact tokens meet it, from the documents pass 1 counted exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from curate.budget import Budget
from curate.engine.spills import read_spill
from curate.io.inputs import Shard, count_rows
from curate.stages.resample import prefix_mask
from curate.tokens import TokenCounter, exact_counter

MIN_CORRECTION_SAMPLE = 20
EXACT_SAMPLE_TARGET_DOCS = 1_000

Cut = Callable[[Budget], tuple[list[np.ndarray], dict[str, Any]]]


def prefix_cut(keys_paths: list[str], budget: Budget, policy: str) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Per spill (in order), the sorted rows of the global budget prefix, and its statistics."""
    parts = []
    for si, path in enumerate(keys_paths):
        z = read_spill(path)
        key, tie, cost = z["key"], z["tie"], z["cost"]
        # The local cut keeps a superset of both policies' prefixes: the crossing item must survive
        # it, since it still blocks the items after it in the global prefix.
        local = np.flatnonzero(prefix_mask(key, tie, cost, budget.amount, policy="local"))
        parts.append((np.full(len(local), si, np.int64), local, key[local], tie[local], cost[local]))
    if parts:
        shard_ix = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        key = np.concatenate([p[2] for p in parts])
        tie = np.concatenate([p[3] for p in parts])
        cost = np.concatenate([p[4] for p in parts])
    else:
        shard_ix = rows = cost = np.zeros(0, np.int64)
        key = np.zeros(0)
        tie = np.zeros(0, np.uint64)
    keep = prefix_mask(key, tie, cost, budget.amount, policy)
    per_shard = [np.sort(rows[keep & (shard_ix == si)]) for si in range(len(keys_paths))]
    threshold = float(key[keep].min()) if keep.any() else float("nan")
    return per_shard, {
        "selected_cost": int(cost[keep].sum()),
        "selected_docs": int(keep.sum()),
        "key_threshold": threshold,
    }


def balanced_cut(
    keys_paths: list[str],
    budget: Budget,
    allocation: str,
    target: np.ndarray | None = None,
    smoothing: float = 0.0,
    plain_share: float = 0.0,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Each cluster (the spill's `row_col`) gets a share of the budget and takes its rows in key
    order (DSIR log weight / T + Gumbel noise): importance resampling inside each cluster's
    share. The spills are scanned per shard; memory is the candidates, not the pool.
    `target`: the target's documents per cluster, the weights of the `target` allocation
    (smoothed toward the pool's cluster sizes) and, for any allocation, reported against.
    `plain_share` of those weights follows where the plain importance prefix of the same budget
    spends it per cluster (DSIR's own, importance-weighted allocation), the rest the target's
    documents."""
    from curate.stages.diversity import balanced_from_parts

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z = read_spill(keys_paths[i])
        return z["key"], z["tie"], z["cost"], z["row_col"]

    weights = target if allocation == "target" else None
    if weights is not None and plain_share > 0:
        rows, _ = prefix_cut(keys_paths, budget, "cover")
        spend = np.zeros(len(weights))
        for path, r in zip(keys_paths, rows, strict=True):
            z = read_spill(path)
            cl, cost = z["row_col"][r], z["cost"][r]
            ok = cl >= 0
            spend += np.bincount(cl[ok], weights=cost[ok], minlength=len(spend))[: len(spend)]
        t = np.asarray(weights, np.float64)
        weights = plain_share * spend / max(spend.sum(), 1e-9) + (1 - plain_share) * t / max(t.sum(), 1e-9)
    sel = balanced_from_parts(
        load,
        len(keys_paths),
        budget=budget.amount,
        allocation=allocation,
        weights=weights,
        smoothing=smoothing,
    )
    mins = [float(load(i)[0][rows].min()) for i, rows in enumerate(sel.rows) if len(rows)]
    return sel.rows, {
        "selected_cost": sel.selected_cost,
        "selected_docs": sel.selected_docs,
        "key_threshold": min(mins) if mins else float("nan"),
        "diversity": {**sel.report(target=target), "profile": profile_of(sel)},
    }


def profile_of(sel: Any) -> dict[str, Any]:
    """A balanced selection's clusters, for the report's cluster plots."""
    from curate.steps.profile import cluster_profile

    return cluster_profile(sel.size, sel.capacity, sel.allocation, sel.got)


def correct_to_exact(
    cut: Cut, keys_paths: list[str], resolved: Budget, eligible_tokens: int
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """The cut of a token budget whose unit is an estimate, re-cut so that the selection's
    exact tokens (the ratio over the documents pass 1 counted exactly) meet the budget."""
    per_shard, decision = cut(resolved)
    ratio, n_sampled = exact_ratio(keys_paths, per_shard)
    band = 1.0
    # Too few exactly-counted documents inside the selection: take the ratio over the top of the
    # ranking just beyond it (2x, 4x, ... the budget), the closest documents in kind to the
    # selected ones.
    while n_sampled < MIN_CORRECTION_SAMPLE and resolved.amount * band < eligible_tokens:
        band *= 2
        wider, _ = cut(Budget(unit="tokens", amount=resolved.amount * band))
        ratio, n_sampled = exact_ratio(keys_paths, wider)
    decision["exact_sample_docs"] = n_sampled
    decision["exact_over_estimate"] = ratio
    decision["exact_sample_band"] = band
    if n_sampled >= MIN_CORRECTION_SAMPLE:
        corrected = Budget(unit="tokens", amount=min(resolved.amount / ratio, float(eligible_tokens)))
        per_shard, again = cut(corrected)
        decision.update(again, corrected_budget=corrected.amount)
    return per_shard, decision


def exact_sample_every(pool: list[Shard], rows: int | None = None) -> int:
    """Count every document of a pool under 2K documents exactly, 1 in 64 of one over 64K.

    `rows`: the pool's documents where a pass has counted them (select's raw fit), so that the
    rate, and so the exactly counted rows and every correction made from them, do not depend on
    the pool's format (a JSONL shard's rows are otherwise guessed from its size). Enough to
    correct the estimate on a selection of 20 x that many documents or more. Exact BPE counting
    runs at ~20 MB/s per core here, ~14x slower than the kernel, so on large pools the sample
    costs ~0.1x of a kernel pass."""
    if rows is None:
        rows = 0
        for s in pool:
            n = count_rows(s)
            rows += n if n is not None else s.size // 2000  # JSONL: ~2 KB per document
    return int(min(64, max(1, rows // EXACT_SAMPLE_TARGET_DOCS)))


def exact_ratio(keys_paths: list[str], per_shard: list[np.ndarray]) -> tuple[float, int]:
    """Exact/estimated tokens over the selected rows that pass 1 counted exactly."""
    est = exact = n = 0
    for path, rows in zip(keys_paths, per_shard, strict=True):
        z = read_spill(path)
        ex = z["exact"][rows]
        cost = z["cost"][rows]
        m = ex >= 0
        n += int(m.sum())
        est += int(cost[m].sum())
        exact += int(ex[m].sum())
    return (exact / est if est > 0 else 1.0), n


def pool_exact_ratio(keys_paths: list[str]) -> tuple[float, int]:
    """Exact/estimated tokens over the selectable rows of the pool that pass 1 counted exactly:
    what turns a share of the pool's estimated tokens into a share of its exact tokens."""
    rows = []
    for path in keys_paths:
        rows.append(np.flatnonzero(np.isfinite(read_spill(path)["key"])))
    return exact_ratio(keys_paths, rows)


def exact_or_none() -> TokenCounter | None:
    """The exact cl100k counter (bpe-openai is a dependency; a broken install says so)."""
    return exact_counter("cl100k")
