"""Near-duplicate detection as phases (`curate dedup minhash` and `curate select --dedup minhash`).

signatures (Keys: MinHash signatures and LSH band hashes of every row, spilled)
-> candidates (Driver: documents sharing a band, one band at a time, screened on signatures)
-> shingles (Keys: the exact shingle sets of candidate rows only, read again from the text)
-> the decision (pairs at exact Jaccard >= threshold, connected components, first one kept).

The banding is chosen for recall (a pair at the threshold is a candidate with probability
>= 0.999) and the decision is exact, so neither the S-curve nor the signature's estimation error
(±0.035 at 128 permutations) decides near the threshold. `verify="signature"` decides on the
estimate instead (no second read). Driver memory: 16 bytes per document while one band is
grouped, the candidate pairs, and the shingle sets of candidate documents of two shards at a time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow.compute as pc

from curate.engine.job import JobRun
from curate.engine.phases import Driver, Keys, ShardResults
from curate.io.inputs import Shard, iter_batches
from curate.pipeline import RunContext, ShardReport, peak_rss_mb, text_stats
from curate.steps.dedup import POSITION_BITS
from curate.types import TEXT

ROW_MASK = (1 << POSITION_BITS) - 1
VERIFY = ("exact", "signature")


@dataclass(frozen=True)
class NearDupParams:
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    seed: int = 0
    verify: str = "exact"

    @property
    def lsh(self) -> tuple[int, int]:
        from curate.stages.dedup import candidate_lsh

        return candidate_lsh(self.threshold, self.num_perm)

    @property
    def screen(self) -> float:
        """The estimate below which a candidate pair is dropped before the exact check: six
        standard deviations of the estimate (at most 0.5 / sqrt(num_perm)) under the threshold."""
        if self.verify == "signature":
            return self.threshold
        return max(0.0, self.threshold - 3.0 / np.sqrt(self.num_perm))


ParamsFn = Callable[[JobRun], NearDupParams]


# ------------------------------------------------------------------------------ pass 1: signatures
def signature_shard(shard: Shard, ctx: RunContext, out_path: str, params: NearDupParams) -> ShardReport:
    """MinHash signatures and LSH band hashes (one array per band) of every row, spilled."""
    from curate import native
    from curate.stages.dedup import band_hashes

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    sigs, valid = [], []
    for batch in iter_batches(shard, ctx.columns, columns=[TEXT], batch_size=ctx.batch_size):
        text_stats(batch, report)
        sig = native.minhash_signatures(
            batch.column(TEXT),
            num_perm=params.num_perm,
            ngram=params.ngram,
            seed=params.seed,
            threads=ctx.threads,
        )
        sigs.append(sig)
        valid.append(~(sig == np.uint32(0xFFFFFFFF)).all(axis=1))  # documents without words
    sig = np.concatenate(sigs) if sigs else np.zeros((0, params.num_perm), np.uint32)
    bands = band_hashes(sig, *params.lsh)
    arrays = {f"band-{k}": np.ascontiguousarray(bands[:, k]) for k in range(bands.shape[1])}
    arrays["sig"] = sig
    arrays["valid"] = np.concatenate(valid) if valid else np.zeros(0, bool)
    np.savez(out_path, **arrays)  # type: ignore[arg-type]
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def signature_phase(params: ParamsFn, *, name: str = "signatures", on_demand: bool = False) -> Keys:
    return Keys(name=name, task=signature_shard, args=lambda run, s: (params(run),), on_demand=on_demand)


# ------------------------------------------------------------------------------ candidates
@dataclass
class Candidates:
    pairs: np.ndarray  # int64 [n, 2] global positions, first < second, sorted
    estimate: np.ndarray  # float64 [n] signature estimate of each pair's Jaccard
    banded: int  # pairs that shared a band, before the screen


def _global_positions(shard: Shard, valid: np.ndarray) -> np.ndarray:
    return (np.int64(shard.index) << POSITION_BITS) + np.flatnonzero(valid).astype(np.int64)


def find_candidates(shards: list[Shard], paths: list[str], params: NearDupParams) -> Candidates:
    from curate.stages.dedup import bucket_pairs

    positions, valids = [], []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            valids.append(z["valid"])
            positions.append(_global_positions(s, valids[-1]))
    pos = np.concatenate([np.zeros(0, np.int64), *positions])
    edges = []
    for k in range(params.lsh[0]):  # one band in memory at a time
        column = []
        for p, ok in zip(paths, valids, strict=True):
            with np.load(p, allow_pickle=False) as z:
                column.append(z[f"band-{k}"][ok])
        edges.append(bucket_pairs(pos, np.concatenate([np.zeros(0, np.uint64), *column])))
    pairs = np.unique(np.concatenate([np.zeros((0, 2), np.int64), *edges]), axis=0)
    estimate = signature_estimates(pairs, {s.index: p for s, p in zip(shards, paths, strict=True)})
    keep = estimate >= params.screen
    return Candidates(pairs=pairs[keep], estimate=estimate[keep], banded=len(pairs))


def signature_estimates(pairs: np.ndarray, paths: dict[int, str]) -> np.ndarray:
    """Share of equal signature positions of each pair, loading each shard's signatures once."""
    if not len(pairs):
        return np.zeros(0)
    shard_ix = pairs >> POSITION_BITS
    sides: list[np.ndarray] = []
    for si in np.unique(shard_ix):
        with np.load(paths[int(si)], allow_pickle=False) as z:
            sig = z["sig"]
        if not sides:
            sides = [np.zeros((len(pairs), sig.shape[1]), np.uint32) for _ in range(2)]
        for col in (0, 1):
            sel = shard_ix[:, col] == si
            sides[col][sel] = sig[pairs[sel, col] & ROW_MASK]
    return np.asarray((sides[0] == sides[1]).mean(axis=1), dtype=np.float64)


def rows_by_shard(pairs: np.ndarray) -> dict[int, np.ndarray]:
    """The sorted candidate rows of each shard."""
    nodes = np.unique(pairs)
    shard_ix = nodes >> POSITION_BITS
    return {int(si): nodes[shard_ix == si] & ROW_MASK for si in np.unique(shard_ix)}


# ------------------------------------------------------------------------------ pass 2: shingles
def shingle_shard(shard: Shard, ctx: RunContext, out_path: str, rows: np.ndarray, ngram: int) -> ShardReport:
    """The exact shingle sets of the given rows of a shard (nothing is read when there are none)."""
    from curate import native

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    offsets, values, total, first = [np.zeros(1, np.int64)], [np.zeros(0, np.uint64)], 0, 0
    if len(rows):
        for batch in iter_batches(shard, ctx.columns, columns=[TEXT], batch_size=ctx.batch_size):
            lo, hi = np.searchsorted(rows, [first, first + batch.num_rows])
            if hi > lo:
                texts = batch.column(TEXT).take(rows[lo:hi] - first)
                report.text_bytes += int(pc.sum(pc.binary_length(texts)).as_py() or 0)
                off, val = native.shingle_sets(texts, ngram=ngram, threads=ctx.threads)
                offsets.append(off[1:] + total)
                values.append(val)
                total += len(val)
            first += batch.num_rows
            report.rows_in += batch.num_rows
    np.savez(out_path, rows=rows, offsets=np.concatenate(offsets), values=np.concatenate(values))
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


# ------------------------------------------------------------------------------ phases
def verify_phases(
    params: ParamsFn, *, signatures: str, prefix: str = "", on_demand: bool = False
) -> tuple[Driver, Keys]:
    """The candidates (a resumable driver step) and the shingles of candidate rows (per shard)."""
    name = f"{prefix}candidates"

    def candidates(run: JobRun) -> Candidates:
        spills: ShardResults = run.get(signatures)
        shards = run.shards()
        return find_candidates(shards, [spills.paths[s.index] for s in shards], params(run))

    def save(run: JobRun, c: Candidates) -> None:
        np.savez(run.work / f"{name}.npz", pairs=c.pairs, estimate=c.estimate, banded=np.int64(c.banded))

    def load(run: JobRun) -> Candidates | None:
        path = run.work / f"{name}.npz"
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as z:
            return Candidates(pairs=z["pairs"], estimate=z["estimate"], banded=int(z["banded"]))

    def shingle_args(run: JobRun, shard: Shard) -> tuple[Any, ...]:
        p = params(run)
        if p.verify != "exact":
            return (np.zeros(0, np.int64), p.ngram)
        key = f"{prefix}candidate rows"
        if key not in run.state:
            run.state[key] = rows_by_shard(run.get(name).pairs)
        return (run.state[key].get(shard.index, np.zeros(0, np.int64)), p.ngram)

    return (
        Driver(name=name, fn=candidates, saver=save, loader=load, on_demand=on_demand),
        Keys(name=f"{prefix}shingles", task=shingle_shard, args=shingle_args, on_demand=on_demand),
    )


# ------------------------------------------------------------------------------ decision
def exact_jaccard(pairs: np.ndarray, paths: dict[int, str], cache_shards: int = 4) -> np.ndarray:
    """Exact Jaccard of each pair from the shingle spills, pairs grouped by their two shards and
    at most `cache_shards` shards' sets in memory."""
    from curate import native

    out = np.zeros(len(pairs))
    if not len(pairs):
        return out
    cache: OrderedDict[int, tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]] = OrderedDict()

    def sets(si: int) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray]]:
        if si not in cache:
            with np.load(paths[si], allow_pickle=False) as z:
                cache[si] = (z["rows"], (z["offsets"], z["values"]))
            if len(cache) > cache_shards:
                cache.popitem(last=False)
        cache.move_to_end(si)
        return cache[si]

    sa, sb = pairs[:, 0] >> POSITION_BITS, pairs[:, 1] >> POSITION_BITS
    order = np.lexsort((sb, sa))
    keys = sa[order] * (1 << 20) + sb[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    for lo, hi in zip(starts, np.r_[starts[1:], len(order)], strict=True):
        idx = order[lo:hi]
        (rows_a, set_a), (rows_b, set_b) = sets(int(sa[idx[0]])), sets(int(sb[idx[0]]))
        ia = np.searchsorted(rows_a, pairs[idx, 0] & ROW_MASK)
        ib = np.searchsorted(rows_b, pairs[idx, 1] & ROW_MASK)
        out[idx] = native.pair_jaccard(set_a, ia, set_b, ib)
    return out


def near_duplicate_decision(
    run: JobRun, params: NearDupParams, *, signatures: str, prefix: str = ""
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], dict[str, Any]]:
    """Per shard: which rows to keep (the first of each cluster in input order; rows in no
    cluster always), each row's cluster (the kept document's global position) and its size."""
    from curate.stages.dedup import ClusterMap, connected_components

    shards = run.shards()
    cand: Candidates = run.get(f"{prefix}candidates")
    if params.verify == "exact":
        spills: ShardResults = run.get(f"{prefix}shingles")
        similarity = exact_jaccard(cand.pairs, {s.index: spills.paths[s.index] for s in shards})
    else:
        similarity = cand.estimate
    linked = cand.pairs[similarity >= params.threshold]
    members, roots, sizes = connected_components(linked)
    clusters = ClusterMap(members=members, roots=roots, sizes=sizes, verified_pairs=len(cand.pairs))
    sig_spills: ShardResults = run.get(signatures)
    keeps, cluster_ids, cluster_sizes = [], [], []
    for s in shards:
        with np.load(sig_spills.paths[s.index], allow_pickle=False) as z:
            n = len(z["valid"])
        pos = (np.int64(s.index) << POSITION_BITS) + np.arange(n, dtype=np.int64)
        cl, sz = clusters.lookup(pos)
        keeps.append(cl == pos)
        cluster_ids.append(cl)
        cluster_sizes.append(sz)
    stats = {
        "clusters": len(np.unique(roots)) if len(roots) else 0,
        "largest_cluster": int(sizes.max()) if len(sizes) else 1,
        "verify": params.verify,
        "banded_pairs": cand.banded,
        "candidate_pairs": len(cand.pairs),
        "linked_pairs": len(linked),
    }
    return keeps, cluster_ids, cluster_sizes, stats
