"""The only door to the compiled kernel (curate._native).

Texts are taken through the Arrow PyCapsule interface: anything with ``__arrow_c_array__``
(a pyarrow or polars string array, ``string``/``large_string``/``string_view``, sliced or with
nulls) or ``__arrow_c_stream__`` (a chunked array, a polars Series). Character data is read
in place; the GIL is released while the kernel runs on ``threads`` cores.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curate.errors import NativeBuildError

try:
    from curate import _native  # type: ignore[attr-defined]
except ImportError as exc:  # pragma: no cover - exercised only on a broken install
    raise NativeBuildError(
        f"curate's compiled kernel (curate._native) could not be imported: {exc}",
        hint="reinstall with `pip install .` (needs a C++17 compiler and cmake)",
    ) from exc

KERNEL_VERSION: int = _native.KERNEL_VERSION


@dataclass(frozen=True, kw_only=True)
class HashSpec:
    """How texts become hashed n-gram buckets. Fitting and scoring must share one spec."""

    buckets: int = 10_000
    order: int = 2
    lowercase: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.buckets <= 0:
            raise ValueError(f"buckets must be positive, got {self.buckets}")
        if not 1 <= self.order <= 8:
            raise ValueError(f"order must be between 1 and 8, got {self.order}")
        if not 0 <= self.seed < 2**64:
            raise ValueError(f"seed must fit in 64 bits, got {self.seed}")


def default_threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _chunks(texts: Any) -> list[Any]:
    """Split the input into objects that each export one Arrow array."""
    if hasattr(texts, "__arrow_c_array__"):
        return [texts]
    if isinstance(texts, pa.ChunkedArray):
        return list(texts.chunks)
    if hasattr(texts, "__arrow_c_stream__"):
        return list(pa.chunked_array(texts).chunks)
    if isinstance(texts, list | tuple):
        return [pa.array(texts, type=pa.large_string())]
    raise TypeError(f"expected an Arrow string array or stream, got {type(texts).__name__}")


def _capsules(chunk: Any) -> tuple[Any, Any]:
    schema, array = chunk.__arrow_c_array__()
    return schema, array


def _capsule_lists(texts: Any) -> tuple[list[Any], list[Any]]:
    """Every chunk's capsules, for kernels that take a chunked column in one call (their threads
    and tables start once, not per chunk)."""
    pairs = [_capsules(c) for c in _chunks(texts)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _threads(threads: int | None) -> int:
    return default_threads() if threads is None or threads <= 0 else threads


def token_counts(texts: Any, *, lowercase: bool = True, threads: int | None = None) -> np.ndarray:
    """Words and punctuation runs per document (int64; 0 for nulls)."""
    parts = [_native.token_counts(*_capsules(c), lowercase, _threads(threads)) for c in _chunks(texts)]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def ngram_histogram(texts: Any, spec: HashSpec, *, threads: int | None = None) -> np.ndarray:
    """Summed bucket counts of all n-grams (orders 1..spec.order) in all documents (int64[m])."""
    total = np.zeros(spec.buckets, np.int64)
    for c in _chunks(texts):
        total += _native.ngram_histogram(
            *_capsules(c), spec.buckets, spec.order, spec.lowercase, spec.seed, _threads(threads)
        )
    return total


def dot_weights(
    texts: Any, weights: np.ndarray, spec: HashSpec, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per document: the sum of ``weights[bucket]`` over its n-grams, and its token count.

    Features are never materialised; ``len(weights)`` must equal ``spec.buckets``.
    """
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape != (spec.buckets,):
        raise ValueError(f"weights have shape {w.shape}, expected ({spec.buckets},)")
    sums, ntok = [], []
    for c in _chunks(texts):
        s, n = _native.dot_weights(*_capsules(c), w, spec.order, spec.lowercase, spec.seed, _threads(threads))
        sums.append(s)
        ntok.append(n)
    if not sums:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    return np.concatenate(sums), np.concatenate(ntok)


def ngram_features(
    texts: Any, spec: HashSpec, *, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-document sparse features as CSR: (indptr int64[n+1], indices uint32, counts uint32).

    Within a document, indices are sorted and unique.
    """
    ptrs, idx, cnt = [np.zeros(1, np.int64)], [], []
    offset = 0
    for c in _chunks(texts):
        p, i, k = _native.ngram_features(
            *_capsules(c), spec.buckets, spec.order, spec.lowercase, spec.seed, _threads(threads)
        )
        ptrs.append(p[1:] + offset)
        offset += int(p[-1])
        idx.append(i)
        cnt.append(k)
    indices = np.concatenate(idx) if idx else np.zeros(0, np.uint32)
    counts = np.concatenate(cnt) if cnt else np.zeros(0, np.uint32)
    return np.concatenate(ptrs), indices, counts


def string_hashes(texts: Any, *, seed: int = 0, threads: int | None = None) -> np.ndarray:
    """A seeded 64-bit hash of each whole string (uint64; nulls hash like the empty string)."""
    parts = [_native.string_hashes(*_capsules(c), seed, _threads(threads)) for c in _chunks(texts)]
    return np.concatenate(parts) if parts else np.zeros(0, np.uint64)


def document_frequencies(texts: Any, spec: HashSpec, *, threads: int | None = None) -> tuple[np.ndarray, int]:
    """(documents containing each bucket int64[buckets], documents with any n-gram)."""
    df, n = _native.document_frequencies(
        *_capsule_lists(texts), spec.buckets, spec.order, spec.lowercase, spec.seed, _threads(threads)
    )
    return df, int(n)


def hashed_embeddings(
    texts: Any,
    idf: np.ndarray,
    spec: HashSpec,
    *,
    dim: int,
    nnz: int,
    proj_seed: int,
    threads: int | None = None,
) -> np.ndarray:
    """L2-normalised hashed TF-IDF embeddings (float32, documents x dim); see stages/embed.py.

    ``len(idf)`` must equal ``spec.buckets``. Documents without n-grams are all-zero rows."""
    w = np.ascontiguousarray(idf, dtype=np.float64)
    if w.shape != (spec.buckets,):
        raise ValueError(f"idf has shape {w.shape}, expected ({spec.buckets},)")
    return _native.hashed_embeddings(
        *_capsule_lists(texts), w, dim, nnz, proj_seed, *_hashing(spec), _threads(threads)
    )


def _hashing(spec: HashSpec) -> tuple[int, bool, int]:
    """What a spec's n-gram hashes depend on (its size only maps them to buckets)."""
    return spec.order, spec.lowercase, spec.seed


def fusable(score_spec: HashSpec, embed_spec: HashSpec) -> bool:
    """Whether one tokenisation serves both specs (`score_and_embed`): they differ in size only."""
    return _hashing(score_spec) == _hashing(embed_spec)


def score_and_embed(
    texts: Any,
    weights: np.ndarray,
    spec: HashSpec,
    idf: np.ndarray,
    embed_spec: HashSpec,
    *,
    dim: int,
    nnz: int,
    proj_seed: int,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`dot_weights` and `hashed_embeddings` from one tokenisation: (sums, tokens, embeddings).
    The specs must be `fusable`."""
    if not fusable(spec, embed_spec):
        raise ValueError(f"specs differ beyond their sizes: {spec} and {embed_spec}")
    w = np.ascontiguousarray(weights, dtype=np.float64)
    v = np.ascontiguousarray(idf, dtype=np.float64)
    if w.shape != (spec.buckets,) or v.shape != (embed_spec.buckets,):
        raise ValueError(f"weights {w.shape} and idf {v.shape} must match the specs' buckets")
    sums, ntok, vectors = _native.score_and_embed(
        *_capsule_lists(texts), w, v, dim, nnz, proj_seed, *_hashing(spec), _threads(threads)
    )
    return sums, ntok, vectors


def minhash_signatures(
    texts: Any,
    *,
    num_perm: int = 128,
    ngram: int = 5,
    lowercase: bool = True,
    seed: int = 0,
    threads: int | None = None,
) -> np.ndarray:
    """MinHash signatures of word n-gram shingles: uint32 array (documents x num_perm).

    Permutation i is x -> (a_i * x + b_i) >> 32 over the 64-bit shingle hash, with (a_i, b_i)
    drawn from a splitmix64 stream seeded by `seed`. Documents without words get all 0xFFFFFFFF.
    """
    parts = [
        _native.minhash(*_capsules(c), num_perm, ngram, lowercase, seed, _threads(threads))
        for c in _chunks(texts)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, num_perm), np.uint32)


def shingle_sets(
    texts: Any, *, ngram: int = 5, lowercase: bool = True, threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The distinct word `ngram`-shingle hashes of each document, sorted: (offsets int64 [n + 1],
    values uint64), document i's set being values[offsets[i]:offsets[i + 1]]. The same shingles
    and hashes as minhash_signatures, so pair_jaccard gives the Jaccard that MinHash estimates."""
    offsets, values, total = [np.zeros(1, np.int64)], [np.zeros(0, np.uint64)], 0
    for c in _chunks(texts):
        off, val = _native.shingle_sets(*_capsules(c), ngram, lowercase, _threads(threads))
        offsets.append(off[1:] + total)
        values.append(val)
        total += len(val)
    return np.concatenate(offsets), np.concatenate(values)


def pair_jaccard(
    a: tuple[np.ndarray, np.ndarray], ia: np.ndarray, b: tuple[np.ndarray, np.ndarray], ib: np.ndarray
) -> np.ndarray:
    """Exact Jaccard of set ia[k] of `a` and set ib[k] of `b` (each (offsets, values) from
    shingle_sets); float64."""
    return _native.pair_jaccard(
        np.ascontiguousarray(a[0], np.int64),
        np.ascontiguousarray(a[1], np.uint64),
        np.ascontiguousarray(ia, np.int64),
        np.ascontiguousarray(b[0], np.int64),
        np.ascontiguousarray(b[1], np.uint64),
        np.ascontiguousarray(ib, np.int64),
    )


# Column order of heuristic_signals (the Signal enum in src/native/heuristics.hpp).
HEURISTIC_SIGNALS = (
    "words",
    "chars",
    "mean_word_length",
    "symbol_word_ratio",
    "bullet_lines_ratio",
    "ellipsis_lines_ratio",
    "alpha_words_ratio",
    "stop_words",
    "dup_line_frac",
    "dup_line_char_frac",
    "dup_para_frac",
    "dup_para_char_frac",
    "top_2gram_char_frac",
    "top_3gram_char_frac",
    "top_4gram_char_frac",
    "dup_5gram_char_frac",
    "dup_6gram_char_frac",
    "dup_7gram_char_frac",
    "dup_8gram_char_frac",
    "dup_9gram_char_frac",
    "dup_10gram_char_frac",
    "lines",
    "terminal_punct_lines_ratio",
    "short_lines_ratio",
    "sentences",
    "has_lorem_ipsum",
    "has_curly_bracket",
    "javascript_lines",
    "policy_lines",
    "newline_word_ratio",
)


def heuristic_signals(texts: Any, *, threads: int | None = None) -> np.ndarray:
    """Per-document quality signals, float64 (documents x len(HEURISTIC_SIGNALS))."""
    if len(HEURISTIC_SIGNALS) != _native.HEURISTIC_SIGNALS:
        raise NativeBuildError(
            "the compiled kernel's signal list does not match curate.native; reinstall curate"
        )
    parts = [_native.heuristic_signals(*_capsules(c), _threads(threads)) for c in _chunks(texts)]
    return np.concatenate(parts) if parts else np.zeros((0, len(HEURISTIC_SIGNALS)))


def hash_token_bytes(data: bytes, seed: int = 0) -> int:
    """The kernel's 64-bit hash of one token's (already lower-cased) bytes; for tests."""
    return int(_native.hash_token_bytes(data, seed))


def isa() -> str:
    """Which build of the hot loops this process runs: "x86-64+bmi2" where the CPU has BMI1/BMI2,
    else the baseline ("x86-64", or "baseline" off x86). ``CURATE_NATIVE_ISA=baseline`` forces
    the baseline; both give the same bits."""
    return str(_native.native_isa())
