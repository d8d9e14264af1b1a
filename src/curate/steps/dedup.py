"""Deduplication as phases (`curate dedup exact|minhash` and `curate select --dedup`).

Pass 1 spills each shard's normalised-text hashes (exact) or MinHash signatures and LSH band
hashes (near-duplicates); the driver decides, from the spills alone, which rows to keep: the
first occurrence of each text, or the first document of each near-duplicate cluster, in input
order (shard order, then row order). Memory: 24 bytes per distinct document (exact); the band
hashes of every document plus the signatures of candidate pairs (MinHash).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pyarrow as pa

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


# ---------------------------------------------------------------------------------- near-duplicates
def signature_shard(
    shard: Shard, ctx: RunContext, out_path: str, num_perm: int, ngram: int, seed: int, bands: int, rows: int
) -> ShardReport:
    """Pass 1 of near-dup dedup: MinHash signatures and LSH band hashes of every row, spilled."""
    from curate import native
    from curate.stages.dedup import band_hashes

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    sigs, valid = [], []
    for batch in iter_batches(shard, ctx.columns, columns=["text"], batch_size=ctx.batch_size):
        text_stats(batch, report)
        sig = native.minhash_signatures(
            batch.column("text"), num_perm=num_perm, ngram=ngram, seed=seed, threads=ctx.threads
        )
        sigs.append(sig)
        valid.append(~(sig == np.uint32(0xFFFFFFFF)).all(axis=1))  # documents without words
    sig = np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32)
    np.savez(
        out_path,
        sig=sig,
        bands=band_hashes(sig, bands, rows),
        valid=np.concatenate(valid) if valid else np.zeros(0, bool),
    )
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def minhash_decision(
    shards: list[Shard], paths: list[str], *, num_perm: int, bands: int, threshold: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """From signature_shard's spills: per shard, which rows to keep (the first of each near-
    duplicate cluster in input order; documents in no cluster always), each row's cluster (the
    kept document's global position) and cluster size. Built from MinHashIndex (merge of band
    summaries, clustering) and NearDuplicateFilter."""
    from curate.stages.dedup import POSITION, BandSummary, MinHashIndex, NearDuplicateFilter

    index = MinHashIndex(threshold=threshold, num_perm=num_perm)
    assert index.shape[0] == bands
    parts = [index.empty()]
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            ok = z["valid"]
            pos = (np.int64(s.index) << POSITION_BITS) + np.flatnonzero(ok).astype(np.int64)
            parts.append(BandSummary(positions=pos, bands=z["bands"][ok]))
    while len(parts) > 1:  # a balanced tree of merges: O(N log shards)
        parts = [
            index.merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    summary = parts[0]

    def signature_of(pos: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pos), num_perm), np.uint32)
        shard_ix = pos >> POSITION_BITS
        for si in np.unique(shard_ix):
            with np.load(paths[int(si)], allow_pickle=False) as z:
                sel = shard_ix == si
                out[sel] = z["sig"][pos[sel] & ((1 << POSITION_BITS) - 1)]
        return out

    clusters = index.clusters(summary, signature_of)
    del summary
    near_dup = NearDuplicateFilter(clusters=clusters)
    keeps, cluster_ids, sizes = [], [], []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            n = len(z["valid"])
        pos = (np.int64(s.index) << POSITION_BITS) + np.arange(n, dtype=np.int64)
        keeps.append(near_dup.keep(pa.RecordBatch.from_pydict({POSITION: pos})).keep)
        cl, sz = clusters.lookup(pos)
        cluster_ids.append(cl)
        sizes.append(sz)
    stats = {
        "clusters": len(np.unique(clusters.roots)) if len(clusters.roots) else 0,
        "largest_cluster": int(clusters.sizes.max()) if len(clusters.sizes) else 1,
        "verified_pairs": clusters.verified_pairs,
    }
    return keeps, cluster_ids, sizes, stats
