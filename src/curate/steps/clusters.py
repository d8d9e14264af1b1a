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
from curate.stages.embed import DocFrequency, DocumentFrequency, HashedEmbedder, embedding_matrix
from curate.stages.resample import HashTextSample, TextSample
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


# Lloyd steps on the sample stop when one lowers its inertia by less than 0.1%: a sample's fit is
# already ~0.5% above full-pool passes, and the tighter 1e-4 of `curate cluster` took twice the
# steps for 0.15% (bench/measure_diversity_cost.py)
SAMPLE_FIT_TOL = 1e-3


def sample_rows(k: int) -> int:
    """Rows `select --diversity` fits k-means on, in memory: 100 per cluster (at least 10,000, at
    most 1M). The fit then costs a few Lloyd steps on the sample instead of passes over the pool
    (bench/measure_diversity_cost.py: the inertia this gives up over the pool)."""
    return int(min(1_000_000, max(10_000, 100 * k)))


SAMPLE_SALT = 0x5A_3B1E  # the k-means sample's rows: hash_uniform(ids, seed ^ SAMPLE_SALT) < share
SAMPLE_TEXT_BYTES = 1 << 30  # texts of the k-means sample one pass may hold (past it: read again)


def _sampled(b: pa.RecordBatch, p: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a batch in the seeded sample (by id hash) and their sort keys."""
    return HashTextSample(share=p, salt=seed ^ SAMPLE_SALT, max_bytes=0).chosen(b)


def sample_texts_unit(
    shard: Shard, cols: Columns, spec: HashSpec, p: float, seed: int, text_cap: int, batch_size: int
) -> dict[str, Any]:
    """One read of a shard: the texts of its rows in the seeded sample (share p, chosen by a hash
    of their id, so the sample depends on neither the pool's layout nor the worker count) and their
    keys. Past `text_cap` bytes the texts are dropped for their document frequencies (`df`), and
    the shard's sample is embedded in a second read (`embedded_sample_unit`)."""
    fit = DocumentFrequency(spec=spec)
    df, kept, rows = None, 0, 0
    texts: list[pa.Array] = []
    keys: list[np.ndarray] = []
    for b in iter_batches(shard, cols, columns=[TEXT, "id"], batch_size=batch_size):
        rows += b.num_rows
        chosen, u = _sampled(b, p, seed)
        if not len(chosen):
            continue
        part = pc.cast(b.column(TEXT).take(chosen), pa.large_string())
        if df is None:
            texts.append(part)
            keys.append(u)
            kept += part.nbytes
            if kept > text_cap:  # too much text to hold: keep counts instead, embed later
                df = fit.summarize(pa.RecordBatch.from_arrays([pa.concat_arrays(texts)], [TEXT]))
                texts, keys = [], []
        else:
            df = fit.merge(df, fit.summarize(pa.RecordBatch.from_arrays([part], [TEXT])))
    if df is not None:
        return {"df": df, "texts": None, "keys": None, "rows": rows}
    return {"df": None, "texts": texts, "keys": np.concatenate([np.zeros(0), *keys]), "rows": rows}


def embedded_sample_unit(
    shard: Shard, cols: Columns, embedder: HashedEmbedder, p: float, seed: int, batch_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, keys) of a shard's rows in the seeded sample that have words to embed."""
    vectors, keys = [np.zeros((0, embedder.dim), np.float32)], [np.zeros(0)]
    for b in iter_batches(shard, cols, columns=[TEXT, "id"], batch_size=batch_size):
        chosen, u = _sampled(b, p, seed)
        if len(chosen):
            vec, valid = embedder.vectors(b.column(TEXT).take(chosen))
            vectors.append(vec[valid])
            keys.append(u[valid])
    return np.concatenate(vectors), np.concatenate(keys)


def sample_share(run: JobRun, k: int, batch_size: int) -> float:
    """The seeded share of the pool's rows in `select --diversity`'s sample: a little over
    `sample_rows(k)` of them (the sample is cut to that below)."""
    total = pool_rows(run, run.shards(), run.columns(), batch_size)
    return 1.0 if not total else min(1.0, 1.2 * sample_rows(k) / total)


def text_sample_stage(run: JobRun, k: int, seed: int, batch_size: int) -> HashTextSample:
    """The sample as a Fittable, for a fit that reads the pool anyway (the raw importance fit)."""
    return HashTextSample(
        share=sample_share(run, k, batch_size), salt=seed ^ SAMPLE_SALT, max_bytes=SAMPLE_TEXT_BYTES
    )


def bottom_k_rows(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], want: int) -> np.ndarray:
    """The `want` rows of smallest key (a bottom-k sample; ties by their first two coordinates, so
    no order of shards matters) from parts of (vectors, the rows of them to consider, their keys),
    copied once into one array in that order: the sample is large and fresh memory is slow."""
    keys = np.concatenate([u for _, _, u in parts])
    first = np.concatenate([v[r, 0] for v, r, _ in parts])
    second = np.concatenate([v[r, 1] for v, r, _ in parts])
    order = np.lexsort((second, first, keys))[:want]
    if len(parts) == 1:
        return parts[0][0][parts[0][1][order]]
    starts = np.cumsum([0] + [len(r) for _, r, _ in parts])
    part_of = np.searchsorted(starts, order, side="right") - 1
    out = np.empty((len(order), parts[0][0].shape[1]), parts[0][0].dtype)
    for i, (v, r, _) in enumerate(parts):
        mine = part_of == i
        out[mine] = v[r[order[mine] - starts[i]]]
    return out


def fit_kmeans_on_sample(
    run: JobRun,
    spec: HashSpec,
    dim: int,
    *,
    k: int,
    seed: int,
    device: str,
    batch_size: int,
    held: TextSample | None = None,
) -> tuple[HashedEmbedder, KMeansModel]:
    """The embedder's idf and k-means from a seeded sample of the pool's rows (`sample_rows`,
    held in memory): its document frequencies, then k-means on its hashed embeddings. `held` is
    the sample taken during another read of every row (`text_sample_stage`); without it, one
    read of the pool takes it. Rows are assigned later, in the pass that needs their clusters."""
    from curate import native
    from curate.kmeans import fit_array

    shards, cols = run.shards(), run.columns()
    want = sample_rows(k)
    records: list[tuple[Shard | None, dict[str, Any]]]  # (shard, its sample), or the held sample
    if held is not None and not held.overflow:
        p = held.share
        texts = held.texts
        records = [(None, {"texts": texts, "keys": np.concatenate([np.zeros(0), *held.keys]), "df": None, "rows": held.rows})]  # fmt: skip
    else:
        p = sample_share(run, k, batch_size)
        size = max(1, sum(s.size for s in shards))
        found = run.map(
            "sample",
            sample_texts_unit,
            [(s, cols, spec, p, seed, 2 * SAMPLE_TEXT_BYTES * s.size // size, batch_size) for s in shards],
            shards=shards,
            sizes=[s.size for s in shards],
        )  # fmt: skip
        records = [(s, r) for s, r in zip(shards, found, strict=True) if r is not None]
    found = [r for _, r in records]
    # Chunks as they came: a concatenation (first-touch memory) cost more than the kernels' per-chunk start.
    held_texts = pa.chunked_array(
        [c for r in found if r["texts"] is not None for c in r["texts"]], pa.large_string()
    )
    fit = DocumentFrequency(spec=spec)
    df = DocFrequency(*native.document_frequencies(held_texts, spec, threads=native.default_threads()))
    for r in found:  # shards whose sample was too large to hold
        df = df if r["df"] is None else fit.merge(df, r["df"])
    embedder = HashedEmbedder(spec=spec, idf=fit.finalize(df), dim=dim, seed=seed)
    vec, valid = replace(embedder, threads=native.default_threads()).vectors(held_texts)
    held_keys = np.concatenate([np.zeros(0)] + [r["keys"] for r in found if r["texts"] is not None])
    parts = [(vec, np.flatnonzero(valid), held_keys[valid])]
    again = [s for s, r in records if s is not None and r["texts"] is None]
    for v, u in run.map("sample again", embedded_sample_unit, [(s, cols, embedder, p, seed, batch_size) for s in again],
                        shards=again, sizes=[s.size for s in again]) if again else []:  # fmt: skip
        parts.append((v, np.arange(len(v)), u))
    sample = bottom_k_rows(parts, want)
    if len(sample) < k:
        raise UsageError(
            f"--diversity {k} is larger than the {len(sample):,} sampled rows with words to embed",
            hint=f"use --diversity {max(1, len(sample) // 10)} or less",
        )
    model = fit_array(sample, k, seed=seed, max_iter=20, tol=SAMPLE_FIT_TOL, device=device)
    model.info = {"column": "hashed embeddings of the text", "source": "pool", "fit_on": "a seeded sample",
                  "sample_rows": len(sample), "sampled_share": p, "pool_rows": sum(r["rows"] for r in found),
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
