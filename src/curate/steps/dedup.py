"""Exact deduplication as phases (`curate dedup exact` and `curate select --dedup exact`).

Pass 1 spills each shard's normalised-text hashes; the driver decides, from the spills alone,
which rows to keep: the first occurrence of each text in input order (shard order, then row
order). Memory: 24 bytes per distinct document. Near-duplicates: steps.near_duplicates.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from curate.io.inputs import Shard, iter_batches
from curate.pipeline import RunContext, ShardReport, peak_rss_mb, text_stats

# ---------------------------------------------------------------------------------- exact
POSITION_BITS = 40  # global position = shard index << 40 | row: input order, 1T rows per shard


def hash_shard(shard: Shard, ctx: RunContext, out_path: str) -> ShardReport:
    """Pass 1 of exact dedup: every row's normalised-text hash (masked when null or empty)."""
    from curate.stages.dedup import DEDUP_EXACT_HASH, ExactHash

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    stage = ExactHash()
    hashes, valid = [], []
    for batch in iter_batches(shard, ctx.columns, columns=["text"], batch_size=ctx.batch_size):
        text_stats(batch, report)
        col = stage.annotate(batch)[DEDUP_EXACT_HASH]
        valid.append(np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool))
        hashes.append(np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint64))
    np.savez(
        out_path,
        hash=np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
        valid=np.concatenate(valid) if valid else np.zeros(0, bool),
    )
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def exact_decision(shards: list[Shard], paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    """From hash_shard's spills: per shard, which rows to keep (first occurrences in input order;
    null/empty texts always) and each row's number of copies. Memory: distinct hashes only."""
    from curate.stages.dedup import first_occurrences

    parts = []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            h, ok = z["hash"][z["valid"]], z["valid"]
        pos = (np.int64(s.index) << POSITION_BITS) + np.flatnonzero(ok).astype(np.int64)
        parts.append(first_occurrences(h, pos, np.ones(len(h), np.int64)))
    merged = first_occurrences(
        np.concatenate([np.zeros(0, np.uint64), *(x.hash for x in parts)]),
        np.concatenate([np.zeros(0, np.int64), *(x.position for x in parts)]),
        np.concatenate([np.zeros(0, np.int64), *(x.count for x in parts)]),
    )
    del parts
    keeps, copies = [], []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            h, ok = z["hash"], z["valid"]
        rows = np.arange(len(h), dtype=np.int64)
        keep = ~ok
        copies_all = np.ones(len(h), np.int64)
        if ok.any():
            first, n_copies = merged.lookup(h[ok])
            keep[ok] = first == (np.int64(s.index) << POSITION_BITS) + rows[ok]
            copies_all[ok] = n_copies
        keeps.append(keep)
        copies.append(copies_all)
    return keeps, copies, merged
