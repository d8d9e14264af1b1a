"""Exact deduplication: normalised-text hashing, first occurrence kept.

Normalisation: Unicode NFKC (full-width and compatibility forms folded), lower-casing,
whitespace runs collapsed to one space, leading and trailing whitespace trimmed, so copies that
differ only in case, spacing or character forms are duplicates.
The hash is the kernel's seeded 64-bit string hash of the normalised text (collisions: about
N^2 / 2^65, i.e. ~3e-4 expected for 100M documents).

As stages: `ExactHash` (Annotator) adds `dedup_exact_hash`; `ExactIndex` (Fittable) merges
(hash, position) summaries into the set of first occurrences; the runner then keeps, per shard,
the rows that are first occurrences. Memory is 16 bytes per document, never text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.stages.base import Annotator, Filter, FilterResult, Fittable
from curate.types import TEXT

DEDUP_EXACT_HASH = "dedup_exact_hash"
DEDUP_EXACT_COPIES = "dedup_exact_copies"
_HASH_SEED = 0xDED0_0001


def normalize_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """NFKC, lower-case, collapse whitespace runs to one space, trim."""
    lowered = pc.utf8_lower(pc.utf8_normalize(texts, form="NFKC"))
    collapsed = pc.replace_substring_regex(lowered, pattern=r"\s+", replacement=" ")
    return pc.utf8_trim_whitespace(collapsed)


def exact_hashes(texts: pa.Array | pa.ChunkedArray, *, threads: int = 1) -> np.ndarray:
    """uint64 hash of each document's normalised text (nulls hash like the empty string)."""
    return native.string_hashes(normalize_text(texts), seed=_HASH_SEED, threads=threads)


@dataclass(frozen=True, kw_only=True)
class ExactHash(Annotator):
    """Annotator: `dedup_exact_hash`, null where the text is null or empty (never a duplicate)."""

    name: ClassVar[str] = "dedup_exact"

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {DEDUP_EXACT_HASH: pa.uint64()}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        texts = batch.column(TEXT)
        h = exact_hashes(texts)
        empty = pc.fill_null(pc.equal(pc.binary_length(texts), 0), True).to_numpy(zero_copy_only=False)
        return {DEDUP_EXACT_HASH: pa.array(h, type=pa.uint64(), mask=empty)}


@dataclass
class HashPositions:
    """A summary: for each distinct hash, its first position (input order) and its copies."""

    hash: np.ndarray  # uint64, sorted, unique
    position: np.ndarray  # int64, first global position
    count: np.ndarray  # int64, occurrences

    def lookup(self, hashes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first position, copies) of each of `hashes` (all must be present)."""
        idx = np.searchsorted(self.hash, hashes)
        return self.position[idx], self.count[idx]


@dataclass(frozen=True, kw_only=True)
class ExactIndex(Fittable[HashPositions]):
    """Fittable: merge (hash, position) summaries; finalize to the first occurrence of each hash.

    The merge keeps, for every hash, only its smallest position and is associative and
    commutative, so summaries can be tree-merged in any order.
    """

    name: ClassVar[str] = "dedup_exact_index"

    def requires(self) -> tuple[str, ...]:
        return (DEDUP_EXACT_HASH,)

    def summarize(self, batch: pa.RecordBatch, first_position: int = 0) -> HashPositions:
        col = batch.column(DEDUP_EXACT_HASH)
        valid = np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool)
        h = np.asarray(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), dtype=np.uint64)
        pos = np.arange(first_position, first_position + batch.num_rows, dtype=np.int64)
        return first_occurrences(h[valid], pos[valid], np.ones(int(valid.sum()), np.int64))

    def merge(self, a: HashPositions, b: HashPositions) -> HashPositions:
        return first_occurrences(
            np.concatenate([a.hash, b.hash]),
            np.concatenate([a.position, b.position]),
            np.concatenate([a.count, b.count]),
        )

    def finalize(self, summary: HashPositions) -> HashPositions:
        return summary


def first_occurrences(hashes: np.ndarray, positions: np.ndarray, counts: np.ndarray) -> HashPositions:
    """Per distinct hash: the smallest position and the summed count."""
    order = np.lexsort((positions, hashes))
    h = hashes[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]]) if len(h) else np.zeros(0, np.int64)
    return HashPositions(
        hash=h[starts],
        position=positions[order][starts],
        count=np.add.reduceat(counts[order], starts) if len(h) else np.zeros(0, np.int64),
    )


# ------------------------------------------------------------------------------------ MinHash
MINHASH_SIGNATURE = "minhash_signature"


@dataclass(frozen=True, kw_only=True)
class MinHashSignature(Annotator):
    """Annotator: `minhash_signature`, a fixed-size list of `num_perm` uint32 minima over the
    document's word `ngram`-shingles (the compiled kernel; see native.minhash_signatures).

    The estimated Jaccard similarity of two documents is the share of equal positions.
    """

    name: ClassVar[str] = "minhash"
    num_perm: int = 128
    ngram: int = 5
    seed: int = 0
    threads: int = 1

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {MINHASH_SIGNATURE: pa.list_(pa.uint32(), self.num_perm)}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        sig = native.minhash_signatures(
            batch.column(TEXT), num_perm=self.num_perm, ngram=self.ngram, seed=self.seed, threads=self.threads
        )
        flat = pa.array(sig.reshape(-1), type=pa.uint32())
        return {MINHASH_SIGNATURE: pa.FixedSizeListArray.from_arrays(flat, self.num_perm)}


@cache
def _band_mult() -> np.ndarray:
    """Odd multipliers of the band hash (made on first use: numpy.random is slow to import)."""
    return np.random.default_rng(0x1B5D).integers(1, 2**63, size=(4096,), dtype=np.int64).astype(
        np.uint64
    ) | np.uint64(1)


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """uint64 (documents x bands): a hash of each band's `rows` signature values."""
    out = np.zeros((sig.shape[0], bands), dtype=np.uint64)
    mult = _band_mult()
    with np.errstate(over="ignore"):
        for k in range(bands):
            cols = sig[:, k * rows : (k + 1) * rows].astype(np.uint64)
            h = (cols * mult[k * rows : (k + 1) * rows]).sum(axis=1, dtype=np.uint64)
            h ^= h >> np.uint64(29)
            h *= np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(32)
            out[:, k] = h
    return out


def candidate_lsh(threshold: float, num_perm: int, miss: float = 1e-3) -> tuple[int, int]:
    """(bands, rows) for finding candidates to verify: the most rows per band (fewest false
    candidates) for which a pair at `threshold` shares a band with probability >= 1 - miss."""
    for r in range(num_perm, 0, -1):
        b = num_perm // r
        if 1 - (1 - threshold**r) ** b >= 1 - miss:
            return b, r
    return num_perm, 1


def bucket_pairs(positions: np.ndarray, hashes: np.ndarray, small: int = 8) -> np.ndarray:
    """Candidate pairs (first < second) of documents with equal band hashes: every pair of a
    bucket of up to `small` documents, and each member with the first of a larger bucket (a
    star: k - 1 pairs, not k^2)."""
    if len(hashes) < 2:
        return np.zeros((0, 2), np.int64)
    order = np.lexsort((positions, hashes))
    h, p = hashes[order], positions[order]
    starts = np.flatnonzero(np.r_[True, h[1:] != h[:-1]])
    sizes = np.diff(np.r_[starts, len(h)])
    bucket = np.repeat(np.arange(len(starts)), sizes)
    size = sizes[bucket]
    out = [np.stack([p[starts[bucket]], p], axis=1)[(size > small) & (np.arange(len(h)) != starts[bucket])]]
    for d in range(1, min(small, int(sizes.max()))):
        i = np.flatnonzero((size[:-d] <= small) & (bucket[:-d] == bucket[d:]))
        out.append(np.stack([p[i], p[i + d]], axis=1))
    return np.concatenate(out)


def connected_components(pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(members sorted, their component's smallest member, component size) of an edge list, by
    min-label propagation with pointer jumping (vectorised; rounds grow with the diameter only)."""
    if not len(pairs):
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    nodes, inverse = np.unique(pairs, return_inverse=True)
    edges = inverse.reshape(-1, 2)
    label = np.arange(len(nodes))
    while True:
        low = np.minimum(label[edges[:, 0]], label[edges[:, 1]])
        new = label.copy()
        np.minimum.at(new, edges[:, 0], low)
        np.minimum.at(new, edges[:, 1], low)
        new = new[new]
        if np.array_equal(new, label):
            break
        label = new
    _, first, counts = np.unique(label, return_inverse=True, return_counts=True)
    return nodes, nodes[label], counts[first]


def near_duplicate_clusters(
    positions: np.ndarray,
    bands: np.ndarray,
    similarity_of: Callable[[np.ndarray], np.ndarray],
    threshold: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Connected components of documents whose similarity (`similarity_of(pairs)`: the signature
    estimate, or the exact Jaccard) is >= threshold, among pairs sharing a band. Returns (member
    positions, their cluster = smallest position of the component, cluster size, verified pairs);
    documents in no pair are not listed."""
    edges = [bucket_pairs(positions, bands[:, k]) for k in range(bands.shape[1])]
    pairs = np.unique(np.concatenate([np.zeros((0, 2), np.int64), *edges]), axis=0)
    linked = pairs[similarity_of(pairs) >= threshold] if len(pairs) else pairs
    members, roots, sizes = connected_components(linked)
    return members, roots, sizes, len(pairs)


# ------------------------------------------------------------------------------------ MinHash index
POSITION = "_position"  # a row's global position: shard index << 40 | row (input order)


@dataclass
class BandSummary:
    """Mergeable LSH state: positions (sorted) and band hashes of documents with words."""

    positions: np.ndarray  # int64 [n]
    bands: np.ndarray  # uint64 [n, bands]


@dataclass
class ClusterMap:
    """Near-duplicate clusters: members (sorted positions), their cluster (the smallest member
    position) and cluster size. Documents outside every cluster are their own cluster of one."""

    members: np.ndarray
    roots: np.ndarray
    sizes: np.ndarray
    verified_pairs: int = 0

    def lookup(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cluster, size) of each position."""
        positions = np.asarray(positions, dtype=np.int64)
        cluster = positions.copy()
        size = np.ones(len(positions), np.int64)
        if len(self.members):
            at = np.searchsorted(self.members, positions)
            found = self.members[np.minimum(at, len(self.members) - 1)] == positions
            cluster[found] = self.roots[at[found]]
            size[found] = self.sizes[at[found]]
        return cluster, size


@dataclass(frozen=True, kw_only=True)
class MinHashIndex(Fittable[BandSummary]):
    """Fittable: LSH band hashes per document (summaries merge by concatenation, kept in position
    order so merging is associative and commutative); finalised with the signatures of candidate
    pairs into a ClusterMap. Memory: 8 bytes per band per document, never text."""

    name: ClassVar[str] = "minhash_index"
    threshold: float = 0.8
    num_perm: int = 128

    @property
    def shape(self) -> tuple[int, int]:
        return candidate_lsh(self.threshold, self.num_perm)

    def requires(self) -> tuple[str, ...]:
        return (MINHASH_SIGNATURE, POSITION)

    def summarize(self, batch: pa.RecordBatch) -> BandSummary:
        sig = signatures_of(batch)
        valid = ~(sig == np.uint32(0xFFFFFFFF)).all(axis=1)
        pos = np.asarray(batch.column(POSITION).to_numpy(zero_copy_only=False), dtype=np.int64)
        bands, rows = self.shape
        return BandSummary(positions=pos[valid], bands=band_hashes(sig[valid], bands, rows))

    def merge(self, a: BandSummary, b: BandSummary) -> BandSummary:
        pos = np.concatenate([a.positions, b.positions])
        order = np.argsort(pos, kind="stable")
        return BandSummary(positions=pos[order], bands=np.concatenate([a.bands, b.bands])[order])

    def empty(self) -> BandSummary:
        return BandSummary(positions=np.zeros(0, np.int64), bands=np.zeros((0, self.shape[0]), np.uint64))

    def finalize(self, summary: BandSummary) -> BandSummary:
        return summary  # clustering needs signatures: see clusters()

    def clusters(self, summary: BandSummary, signature_of: Callable[[np.ndarray], np.ndarray]) -> ClusterMap:
        """Pairs sharing a band, linked when their signature estimate reaches the threshold.
        (`curate dedup minhash` decides on the exact Jaccard instead: steps.near_duplicates.)"""

        def estimate(pairs: np.ndarray) -> np.ndarray:
            return np.asarray((signature_of(pairs[:, 0]) == signature_of(pairs[:, 1])).mean(axis=1))

        members, roots, sizes, verified = near_duplicate_clusters(
            summary.positions, summary.bands, estimate, self.threshold
        )
        return ClusterMap(members=members, roots=roots, sizes=sizes, verified_pairs=verified)


def signatures_of(batch: pa.RecordBatch) -> np.ndarray:
    col = batch.column(MINHASH_SIGNATURE)
    width = col.type.list_size
    flat = np.asarray(col.flatten().to_numpy(zero_copy_only=False), dtype=np.uint32)
    return flat.reshape(len(col), width)


@dataclass(frozen=True, kw_only=True)
class NearDuplicateFilter(Filter):
    """Filter: keep the first document (smallest position) of each near-duplicate cluster."""

    name: ClassVar[str] = "minhash_filter"
    clusters: ClusterMap

    def requires(self) -> tuple[str, ...]:
        return (POSITION,)

    def keep(self, batch: pa.RecordBatch) -> FilterResult:
        pos = np.asarray(batch.column(POSITION).to_numpy(zero_copy_only=False), dtype=np.int64)
        cluster, _ = self.clusters.lookup(pos)
        keep = cluster == pos
        return FilterResult(keep=keep, drops={"near duplicate": int((~keep).sum())} if (~keep).any() else {})
