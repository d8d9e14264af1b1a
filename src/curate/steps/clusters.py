"""Hashed embeddings and k-means as phases (`curate embed`, `curate cluster`, `select --diversity`).

The hashed embedder's idf is a Fit of document frequencies over a seeded random order of the
pool's units, up to `idf_docs` documents. k-means seeds (k-means++) on a seeded sample of the
rows and refines with Lloyd passes, each a map over the shards whose per-cluster sums are merged
in shard order (`curate.kmeans`); the embeddings come from a column or from the text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.engine.job import JobRun
from curate.engine.phases import Fit
from curate.errors import SchemaError, UsageError
from curate.io.inputs import Columns, Shard, count_rows, iter_batches, shard_schema
from curate.kmeans import KMeansModel, KMeansSummary, default_sample_rows, fit, merge_summaries
from curate.native import HashSpec
from curate.stages.diversity import KMeansStep
from curate.stages.embed import DocumentFrequency, HashedEmbedder, embedding_matrix
from curate.types import TEXT

EMBED_ARTIFACT = "_embed"
KMEANS_ARTIFACT = "_kmeans"
POOL_EMBED_BUCKETS, POOL_EMBED_DIM = 1 << 18, 256  # hashed embeddings: `embed` defaults, `select --diversity`

EmbeddingSource = str | HashedEmbedder  # a column of embeddings, or an embedder of the text


def pool_embed_spec(seed: int) -> HashSpec:
    """The n-gram hashing of `select --diversity`'s embeddings (and of `embed`'s defaults)."""
    return HashSpec(buckets=POOL_EMBED_BUCKETS, order=2, seed=seed)


def idf_phase(name: str, spec: Callable[[JobRun], HashSpec], max_docs: Callable[[JobRun], int]) -> Fit:
    """Document frequencies over a seeded random order of the pool's units, up to max_docs."""
    return Fit(
        name=name,
        stage=lambda run: DocumentFrequency(spec=spec(run), threads=run.threads),
        order=lambda run, n: np.random.default_rng(run.config.seed).permutation(n),
        stop=lambda run, df: df.docs >= max_docs(run),
        on_demand=True,
    )


def hashed_embedder(run: JobRun, idf_fit: str, spec: HashSpec, dim: int, seed: int) -> HashedEmbedder:
    df = run.get(idf_fit).summary
    if df.docs == 0:
        raise UsageError("embed: no document in the input has any words to embed")
    idf = DocumentFrequency(spec=spec).finalize(df)
    return HashedEmbedder(spec=spec, idf=idf, dim=dim, seed=seed)


# ---------------------------------------------------------------------------------- k-means
def _iter_embeddings(shard: Shard, cols: Columns, column: EmbeddingSource, batch_size: int) -> Any:
    """(valid rows' embeddings, valid mask) per batch, read from a column or computed from text."""
    if isinstance(column, HashedEmbedder):
        for b in iter_batches(shard, cols, columns=[TEXT], batch_size=batch_size):
            vec, valid = column.vectors(b.column(TEXT))
            yield vec[valid], valid
        return
    if column not in shard_schema(shard, cols).names:
        raise SchemaError(f"{shard.path}: no embedding column {column!r}", hint="run `curate embed` first")
    row = 0
    for b in iter_batches(shard, cols, columns=[column], batch_size=batch_size):
        x, valid = embedding_matrix(b, column, shard.path, row)
        row += b.num_rows
        yield x, valid


def sample_unit(
    shard: Shard, cols: Columns, column: EmbeddingSource, p: float, seed: int, batch_size: int
) -> dict[str, Any]:
    """Valid rows, a seeded share p of them, and the embedding dimension of one shard."""
    rng = np.random.default_rng([seed, shard.index])
    picked, rows, valid_rows, dim = [], 0, 0, None
    for x, valid in _iter_embeddings(shard, cols, column, batch_size):
        rows += len(valid)
        valid_rows += len(x)
        if len(x):
            if dim is not None and x.shape[1] != dim:
                raise SchemaError(f"{shard.path}: embeddings change dimension ({dim} then {x.shape[1]})")
            dim = x.shape[1]
            picked.append(x[rng.random(len(x)) < p])
    sample = np.concatenate(picked) if picked else np.zeros((0, dim or 0), np.float32)
    return {"sample": sample, "rows": rows, "valid": valid_rows, "dim": dim}


def pass_unit(
    shard: Shard, cols: Columns, column: EmbeddingSource, centroids: np.ndarray, device: str, batch_size: int
) -> KMeansSummary:
    """One shard's share of a Lloyd pass (the KMeansStep Fittable over its batches)."""
    step = KMeansStep(centroids=centroids, device=device)
    total = step.empty()
    for x, _ in _iter_embeddings(shard, cols, column, batch_size):
        try:
            total = step.merge(total, step.summarize_matrix(x))
        except SchemaError as exc:
            raise SchemaError(f"{shard.path}: {exc.message}") from None
    return total


def fit_kmeans(
    run: JobRun,
    column: EmbeddingSource,
    *,
    k: int,
    seed: int,
    max_iter: int,
    tol: float,
    sample_rows: int | None,
    device: str,
    batch_size: int,
    source: str,
) -> tuple[KMeansModel, int, int, int]:
    """k-means over the shards' embeddings: (model, sample rows, rows, rows with an embedding)."""
    shards, cols = run.shards(), run.columns()
    total_rows = pool_rows(run, shards, cols, batch_size, column if isinstance(column, str) else TEXT)
    want = sample_rows or default_sample_rows(k)
    p = 1.0 if not total_rows else min(1.0, 1.5 * want / total_rows)  # a seeded share, trimmed below
    found = run.map(
        "sample",
        sample_unit,
        [(s, cols, column, p, seed, batch_size) for s in shards],
        shards=shards,
        sizes=[1] * len(shards),
        unit="shards",
    )
    dims = {r["dim"] for r in found if r and r["dim"] is not None}
    if len(dims) > 1:
        raise SchemaError(f"{source}: shards have embeddings of different dimensions: {sorted(dims)}")
    valid = sum(r["valid"] for r in found if r)
    rows = sum(r["rows"] for r in found if r)
    if valid < k:
        raise UsageError(
            f"--k {k} is larger than the {valid:,} rows with an embedding ({rows - valid:,} more are null)",
            hint=f"use --k {max(1, valid // 10)} or less; k-means needs several rows per cluster",
        )
    sample = np.concatenate([r["sample"] for r in found if r and len(r["sample"])])
    if len(sample) > want:
        sample = sample[np.sort(np.random.default_rng(seed).choice(len(sample), want, replace=False))]
    if len(sample) < k:  # the sampling share undershot (few rows): seed from every row
        every = run.map(
            "sample all",
            sample_unit,
            [(s, cols, column, 1.0, seed, batch_size) for s in shards],
            shards=shards,
            sizes=[1] * len(shards),
            unit="shards",
        )
        sample = np.concatenate([r["sample"] for r in every if r and len(r["sample"])])
    passes = [0]

    def one_pass(centroids: np.ndarray) -> KMeansSummary:
        passes[0] += 1
        parts = run.map(
            f"k-means {passes[0]}",
            pass_unit,
            [(s, cols, column, centroids, device, batch_size) for s in shards],
            shards=shards,
            sizes=[1] * len(shards),
            unit="shards",
        )
        total = KMeansSummary.empty(*centroids.shape)
        for part in parts:  # shard order: the float sums do not depend on which worker finished first
            if part is not None:
                total = merge_summaries(total, part)
        return total

    model = fit(sample, one_pass, k, seed=seed, max_iter=max_iter, tol=tol, device=device)
    model.info = {
        "column": column if isinstance(column, str) else "hashed embeddings of the text",
        "source": source,
        "sample_rows": len(sample),
        "tol": tol,
        "max_iter": max_iter,
    }
    return model, len(sample), rows, valid


def count_unit(shard: Shard, cols: Columns, column: str, batch_size: int) -> int:
    """A shard's rows, read through the input door (JSONL and IPC have no row count to look up)."""
    return sum(b.num_rows for b in iter_batches(shard, cols, columns=[column], batch_size=batch_size))


def pool_rows(run: JobRun, shards: list[Shard], cols: Columns, batch_size: int, column: str = TEXT) -> int:
    """Rows in the pool: Parquet metadata, and a counting read of the shards without any, so
    that the sampling share (and so the memory a sample takes) is right for JSONL pools too."""
    counts = [count_rows(s) for s in shards]
    unknown = [s for s, c in zip(shards, counts, strict=True) if c is None]
    counted = (
        run.map("count rows", count_unit, [(s, cols, column, batch_size) for s in unknown], shards=unknown)
        if unknown
        else []
    )
    return sum(c for c in counts if c is not None) + sum(c for c in counted if c is not None)


def sample_rows(k: int) -> int:
    """Rows `select --diversity` fits k-means on, in memory: 100 per cluster (at least 10,000, at
    most 1M). The fit then costs a few Lloyd steps on the sample instead of passes over the pool
    (bench/measure_diversity_cost.py: the inertia this gives up over the pool)."""
    return int(min(1_000_000, max(10_000, 100 * k)))


SAMPLE_SALT = 0x5A_3B1E  # the k-means sample's rows: hash_uniform(ids, seed ^ SAMPLE_SALT) < share
SAMPLE_TEXT_BYTES = 1 << 30  # texts of the k-means sample one pass may hold (past it: read again)


def embedded_sample_unit(
    shard: Shard, cols: Columns, embedder: HashedEmbedder, p: float, seed: int, batch_size: int
) -> dict[str, Any]:
    """The hashed embeddings of a seeded share p of a shard's rows (chosen by id hash before any
    embedding is computed), the shard's rows and its rows with an embedding among those."""
    from curate.stages.resample import document_ids, hash_uniform

    picked, rows, valid_rows = [], 0, 0
    for b in iter_batches(shard, cols, columns=[TEXT, "id"], batch_size=batch_size):
        rows += b.num_rows
        chosen = np.flatnonzero(hash_uniform(document_ids(b), seed ^ SAMPLE_SALT) < p)
        if not len(chosen):
            continue
        vec, valid = embedder.vectors(b.column(TEXT).take(chosen))
        valid_rows += int(valid.sum())
        picked.append(vec[valid])
    dim = embedder.dim
    return {
        "sample": np.concatenate(picked) if picked else np.zeros((0, dim), np.float32),
        "rows": rows,
        "valid": valid_rows,
    }


def idf_and_sample_unit(
    shard: Shard,
    cols: Columns,
    spec: HashSpec,
    shares: tuple[float, float],
    seed: int,
    text_cap: int,
    batch_size: int,
) -> dict[str, Any]:
    """One read of a shard: the document frequencies of a seeded share of its rows and the texts of
    another (shares = (idf, sample); rows chosen by one hash of their id, so neither depends on the
    pool's layout or the worker count). Past `text_cap` bytes the texts are dropped (texts: None)
    and the sample is embedded in a second read."""
    from curate.stages.resample import document_ids, hash_uniform

    fit = DocumentFrequency(spec=spec)
    df, kept, rows = fit.empty(), 0, 0
    texts: list[pa.Array] | None = []
    for b in iter_batches(shard, cols, columns=[TEXT, "id"], batch_size=batch_size):
        rows += b.num_rows
        u = hash_uniform(document_ids(b), seed ^ SAMPLE_SALT)
        text = b.column(TEXT)
        counted = np.flatnonzero(u < shares[0])
        if len(counted):
            part = text if len(counted) == len(u) else text.take(counted)
            df = fit.merge(df, fit.summarize(pa.RecordBatch.from_arrays([part], [TEXT])))
        chosen = np.flatnonzero(u < shares[1])
        if texts is not None and len(chosen):
            texts.append(pc.cast(text.take(chosen), pa.large_string()))
            kept += texts[-1].nbytes
            texts = texts if kept <= text_cap else None
    joined = None if texts is None else pa.concat_arrays(texts) if texts else pa.array([], pa.large_string())
    return {"df": df, "texts": joined, "rows": rows}


def fit_kmeans_on_sample(
    run: JobRun, spec: HashSpec, dim: int, *, k: int, idf_docs: int, seed: int, device: str, batch_size: int
) -> tuple[HashedEmbedder, KMeansModel]:
    """The embedder's idf and k-means, from one read of the pool: document frequencies of a seeded
    ~`idf_docs` rows and k-means on the hashed embeddings of a seeded sample held in memory
    (`sample_rows`). Rows are assigned later, in the pass that needs their clusters."""
    from curate import native
    from curate.kmeans import fit_array

    shards, cols = run.shards(), run.columns()
    want = sample_rows(k)
    total = pool_rows(run, shards, cols, batch_size)
    # Seeded shares: ~idf_docs rows for the idf, the sample a little over its target (trimmed below).
    shares = (1.0, 1.0) if not total else (min(1.0, idf_docs / total), min(1.0, 1.2 * want / total))
    size = max(1, sum(s.size for s in shards))
    found = run.map(
        "idf and sample",
        idf_and_sample_unit,
        [
            (s, cols, spec, shares, seed, 2 * SAMPLE_TEXT_BYTES * s.size // size + (1 << 20), batch_size)
            for s in shards
        ],
        shards=shards,
        sizes=[s.size for s in shards],
    )
    fit = DocumentFrequency(spec=spec)
    df = fit.empty()
    for r in found:  # shard order
        if r is not None:
            df = fit.merge(df, r["df"])
    if df.docs == 0:
        raise UsageError("--diversity: no document in the pool has any words to embed")
    embedder = HashedEmbedder(spec=spec, idf=fit.finalize(df), dim=dim, seed=seed)
    again = [s for s, r in zip(shards, found, strict=True) if r is not None and r["texts"] is None]
    reread = dict(zip((s.index for s in again), run.map(
        "sample", embedded_sample_unit, [(s, cols, embedder, shares[1], seed, batch_size) for s in again],
        shards=again, sizes=[s.size for s in again],
    ) if again else [], strict=True))  # fmt: skip
    in_driver = replace(embedder, threads=native.default_threads())
    parts = [np.zeros((0, dim), np.float32)]
    for s, r in zip(shards, found, strict=True):
        if r is None:
            continue
        if r["texts"] is None:
            parts.append(reread[s.index]["sample"])
        elif len(r["texts"]):
            vec, valid = in_driver.vectors(r["texts"])
            parts.append(vec[valid])
    sample = np.concatenate(parts)
    if len(sample) > want:
        sample = sample[np.sort(np.random.default_rng(seed).choice(len(sample), want, replace=False))]
    if len(sample) < k:
        raise UsageError(
            f"--diversity {k} is larger than the {len(sample):,} sampled rows with words to embed",
            hint=f"use --diversity {max(1, len(sample) // 10)} or less",
        )
    model = fit_array(sample, k, seed=seed, max_iter=20, tol=1e-4, device=device)
    model.info = {"column": "hashed embeddings of the text", "source": "pool", "fit_on": "a seeded sample",
                  "sample_rows": len(sample), "sampled_share": shares[1], "pool_rows": sum(r["rows"] for r in found if r),
                  "idf_docs": df.docs, "reread_shards": len(again)}  # fmt: skip
    return embedder, model


def size_summary(sizes: np.ndarray) -> dict[str, Any]:
    """Cluster size histogram: quantiles and log2 bins."""
    nonempty = sizes[sizes > 0]
    if not len(nonempty):
        return {"clusters": len(sizes), "nonempty": 0}
    bins = np.bincount(np.floor(np.log2(nonempty)).astype(int))
    return {
        "clusters": len(sizes),
        "nonempty": len(nonempty),
        "min": int(nonempty.min()),
        "median": float(np.median(nonempty)),
        "max": int(nonempty.max()),
        "log2_histogram": {f"{2**i}-{2 ** (i + 1) - 1}": int(c) for i, c in enumerate(bins) if c},
    }
