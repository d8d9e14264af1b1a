"""Exact deduplication: normalised-text hashing, first occurrence kept.

Normalisation: Unicode lower-casing, whitespace runs collapsed to one space, leading and
trailing whitespace trimmed, so copies that differ only in case or spacing are duplicates.
The hash is the kernel's seeded 64-bit string hash of the normalised text (collisions: about
N^2 / 2^65, i.e. ~3e-4 expected for 100M documents).

As stages: `ExactHash` (Annotator) adds `dedup_exact_hash`; `ExactIndex` (Fittable) merges
(hash, position) summaries into the set of first occurrences; the runner then keeps, per shard,
the rows that are first occurrences. Memory is 16 bytes per document, never text.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.stages.base import Annotator, Fittable
from curate.types import TEXT

DEDUP_EXACT_HASH = "dedup_exact_hash"
DEDUP_EXACT_COPIES = "dedup_exact_copies"
_HASH_SEED = 0xDED0_0001


def normalize_text(texts: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Lower-case, collapse whitespace runs to one space, trim."""
    lowered = pc.utf8_lower(texts)
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

    The estimated Jaccard similarity of two documents is the share of equal positions. This is
    the signature stage of near-duplicate detection; the LSH index and the cluster filter that
    consume it are not built yet (issue 3).
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
