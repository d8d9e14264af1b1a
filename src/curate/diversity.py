"""Runs for diversity selection: embed a pool, cluster it, select a cluster-balanced subset.

The algorithms live in `curate.stages.embed`, `curate.kmeans` and `curate.stages.diversity`;
this module drives them over shards with the local executor and writes the artifacts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.budget import Budget
from curate.errors import SchemaError, UsageError
from curate.executors.local import WorkerPool, map_tasks, resolve_workers, threads_per_worker
from curate.io.inputs import (
    Columns,
    DatasetSpec,
    Shard,
    discover,
    iter_batches,
    iter_unit_batches,
    read_schema,
)
from curate.io.outputs import Manifest
from curate.kmeans import KMeansModel, KMeansSummary, default_sample_rows, fit, merge_summaries
from curate.native import HashSpec
from curate.pipeline import Pipeline, RunContext, merge_reports, write_selected
from curate.progress import NoProgress, Progress
from curate.runner import RunResult, run_map
from curate.stages.diversity import (
    KMEANS_CLUSTER,
    KMeansAssign,
    KMeansStep,
    balanced_from_parts,
    refinement_counts,
    refinement_weights,
    selection_keys,
)
from curate.stages.embed import (
    EMBEDDING,
    DocFrequency,
    DocumentFrequency,
    HashedEmbedder,
    ModelEmbedder,
    embedding_matrix,
)
from curate.types import ID, TEXT

EMBED_ARTIFACT = "_embed"
POOL_EMBED_BUCKETS, POOL_EMBED_DIM = 1 << 18, 256  # hashed embeddings: `embed` defaults, `select --diversity`
KMEANS_ARTIFACT = "_kmeans"


# ---------------------------------------------------------------------------------- embed
def df_unit(
    shard: Shard, row_group: int | None, cols: Columns, spec: HashSpec, threads: int, batch_size: int
) -> DocFrequency:
    stage = DocumentFrequency(spec=spec, threads=threads)
    out = stage.empty()
    for b in iter_unit_batches(shard, row_group, cols, columns=[TEXT], batch_size=batch_size):
        out = stage.merge(out, stage.summarize(b))
    return out


def fit_idf(
    shards: list[Shard],
    spec: HashSpec,
    *,
    max_docs: int,
    seed: int,
    columns: Columns,
    workers: int,
    batch_size: int,
    progress: Progress,
    pool: WorkerPool | None = None,
) -> DocFrequency:
    """Document frequencies over a seeded random order of the pool's row groups, up to max_docs."""
    from curate.select import fit_units

    units = fit_units(shards)
    order = np.random.default_rng(seed).permutation(len(units))
    threads = threads_per_worker(workers)
    total = DocumentFrequency(spec=spec).empty()
    progress.start("fit idf", len(units), unit="units")

    def take(i: int, r: DocFrequency) -> bool:
        nonlocal total
        total = DocumentFrequency(spec=spec).merge(total, r)
        return total.docs >= max_docs

    map_tasks(
        df_unit,
        [(units[i][0], units[i][1], columns, spec, threads, batch_size) for i in order],
        workers=workers,
        on_result=lambda i, r: progress.advance("fit idf", 1),
        until=take,
        pool=pool,
    )
    progress.end("fit idf")
    if total.docs == 0:
        raise UsageError("embed: no document in the input has any words to embed")
    return total


def pool_embed_spec(seed: int) -> HashSpec:
    """The n-gram hashing of `select --diversity`'s embeddings (and of `embed`'s defaults)."""
    return HashSpec(buckets=POOL_EMBED_BUCKETS, order=2, seed=seed)


def fit_hashed_embedder(
    shards: list[Shard],
    spec: HashSpec,
    *,
    dim: int,
    seed: int,
    idf_docs: int,
    columns: Columns,
    workers: int,
    batch_size: int,
    progress: Progress,
    pool: WorkerPool | None = None,
) -> tuple[HashedEmbedder, int]:
    """The hashed embedder with its idf fitted on the shards, and the documents it was fitted on."""
    df = fit_idf(
        shards,
        spec,
        max_docs=idf_docs,
        seed=seed,
        columns=columns,
        workers=workers,
        batch_size=batch_size,
        progress=progress,
        pool=pool,
    )
    idf = DocumentFrequency(spec=spec).finalize(df)
    return HashedEmbedder(spec=spec, idf=idf, dim=dim, seed=seed), df.docs


def run_embed(
    source: DatasetSpec,
    dest: str,
    *,
    method: str = "hashed",
    dim: int = POOL_EMBED_DIM,
    buckets: int = POOL_EMBED_BUCKETS,
    order: int = 2,
    idf_docs: int = 200_000,
    model_path: str | None = None,
    device: str = "auto",
    seed: int = 0,
    columns: Columns = Columns(),
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Add an `embedding` column to every row; the embedder's settings go to OUT/_embed.json."""
    progress = progress or NoProgress()
    nworkers = resolve_workers(workers)
    start = time.perf_counter()
    stage: HashedEmbedder | ModelEmbedder
    if method == "hashed":
        stage, idf_fitted_on = fit_hashed_embedder(
            discover(source),
            HashSpec(buckets=buckets, order=order, seed=seed),
            dim=dim,
            seed=seed,
            idf_docs=idf_docs,
            columns=columns,
            workers=nworkers,
            batch_size=batch_size,
            progress=progress,
        )
        info: dict[str, Any] = {**stage.to_dict(), "idf_docs": idf_fitted_on}
    elif method == "model":
        if not model_path:
            raise UsageError("--method model needs --model PATH (a local sentence-embedding or LM folder)")
        stage = ModelEmbedder(model_path=model_path, device=device)
        info = {"method": "model", "model": model_path, "dim": stage.dimension()}
    else:
        raise UsageError(f"unknown embedding method {method!r}; allowed: hashed, model")
    result = run_map(
        Pipeline(stages=(stage,)),
        source,
        dest,
        columns=columns,
        workers=nworkers,
        overwrite=overwrite,
        batch_size=batch_size,
        progress=progress,
    )
    out = Path(dest)
    if method == "hashed":
        np.savez(out / f"{EMBED_ARTIFACT}.npz", idf=stage.idf)  # type: ignore[union-attr]
    (out / f"{EMBED_ARTIFACT}.json").write_text(json.dumps(info, indent=2) + "\n")
    result.extra = info
    result.seconds = time.perf_counter() - start
    return result


# ---------------------------------------------------------------------------------- cluster
EmbeddingSource = str | HashedEmbedder  # a column of embeddings, or an embedder of the text


def _iter_embeddings(shard: Shard, cols: Columns, column: EmbeddingSource, batch_size: int) -> Any:
    """(valid rows' embeddings, valid mask) per batch, read from a column or computed from text."""
    if isinstance(column, HashedEmbedder):
        for b in iter_batches(shard, cols, columns=[TEXT], batch_size=batch_size):
            vec, valid = column.vectors(b.column(TEXT))
            yield vec[valid], valid
        return
    schema = read_schema(shard)
    if column not in schema.names:
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


def run_cluster(
    source: DatasetSpec,
    dest: str,
    *,
    k: int = 1024,
    column: str = EMBEDDING,
    seed: int = 0,
    max_iter: int = 20,
    tol: float = 1e-4,
    sample_rows: int | None = None,
    device: str = "auto",
    columns: Columns = Columns(),
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Fit k-means on an embedding column, then add `kmeans_cluster` and `kmeans_distance`."""
    from curate.stages.lm import resolve_device

    progress = progress or NoProgress()
    nworkers = resolve_workers(workers)
    dev = resolve_device(device)
    start = time.perf_counter()
    if k < 1:
        raise UsageError(f"--k must be at least 1, got {k}")
    shards = discover(source)
    with WorkerPool(min(nworkers, len(shards))) as pool:
        model, sample_size, rows, valid = _fit_kmeans(
            shards,
            source,
            k,
            column,
            seed,
            max_iter,
            tol,
            sample_rows,
            dev,
            columns,
            nworkers,
            batch_size,
            progress,
            pool,
        )
    result = run_map(
        Pipeline(stages=(KMeansAssign(centroids=model.centroids, column=column, device=dev),)),
        source,
        dest,
        columns=columns,
        workers=nworkers,
        overwrite=overwrite,
        batch_size=batch_size,
        progress=progress,
    )
    model.save(Path(dest) / KMEANS_ARTIFACT)
    outputs = discover(dest)
    sizes = np.bincount(np.concatenate([_cluster_column(s, columns) for s in outputs]), minlength=k)
    result.extra = {
        "k": k,
        "dim": model.dim,
        "rows": rows,
        "rows_with_embedding": valid,
        "sample_rows": sample_size,
        "iterations": model.iterations,
        "converged": model.converged,
        "inertia_per_pass": model.inertia,
        "reseeded_empty_clusters": model.reseeded,
        "cluster_sizes": size_summary(sizes),
        "device": dev,
    }
    result.seconds = time.perf_counter() - start
    return result


def _fit_kmeans(
    shards: list[Shard],
    source: DatasetSpec,
    k: int,
    column: EmbeddingSource,
    seed: int,
    max_iter: int,
    tol: float,
    sample_rows: int | None,
    dev: str,
    columns: Columns,
    nworkers: int,
    batch_size: int,
    progress: Progress,
    pool: WorkerPool,
) -> tuple[KMeansModel, int, int, int]:
    """k-means over the shards' embeddings: (model, sample rows, rows, rows with an embedding)."""
    from curate.io.inputs import count_rows

    total_rows = sum(count_rows(s) or 0 for s in shards)
    want = sample_rows or default_sample_rows(k)
    p = 1.0 if not total_rows else min(1.0, 1.5 * want / total_rows)  # a seeded share, trimmed below
    progress.start("sample", len(shards), unit="shards")
    found = map_tasks(
        sample_unit,
        [(s, columns, column, p, seed, batch_size) for s in shards],
        workers=nworkers,
        on_result=lambda i, r: progress.advance("sample", 1),
        pool=pool,
    )
    progress.end("sample")
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
        every = map_tasks(
            sample_unit, [(s, columns, column, 1.0, seed, batch_size) for s in shards], workers=nworkers
        )
        sample = np.concatenate([r["sample"] for r in every if r and len(r["sample"])])

    def one_pass(centroids: np.ndarray) -> KMeansSummary:
        parts = map_tasks(
            pass_unit,
            [(s, columns, column, centroids, dev, batch_size) for s in shards],
            workers=nworkers,
            on_result=lambda i, r: progress.advance("k-means", 1),
            pool=pool,
        )
        total = KMeansSummary.empty(*centroids.shape)
        for part in parts:  # task order: the float sums do not depend on which worker finished first
            if part is not None:
                total = merge_summaries(total, part)
        return total

    progress.start("k-means", len(shards) * max_iter, unit="shard passes")
    passes: list[float] = []
    model = fit(
        sample,
        one_pass,
        k,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        device=dev,
        on_pass=lambda it, inertia: passes.append(inertia),
    )
    progress.end("k-means")
    model.info = {
        "column": column if isinstance(column, str) else "hashed embeddings of the text",
        "source": source,
        "sample_rows": len(sample),
        "tol": tol,
        "max_iter": max_iter,
    }
    return model, len(sample), rows, valid


def fit_pool_clusters(
    shards: list[Shard],
    columns: Columns,
    *,
    k: int,
    seed: int,
    workers: int,
    batch_size: int,
    progress: Progress,
    pool: WorkerPool | None,
    dim: int = POOL_EMBED_DIM,
    idf_docs: int = 200_000,
    device: str = "auto",
    max_iter: int = 20,
    tol: float = 1e-4,
) -> tuple[HashedEmbedder, KMeansModel]:
    """Hashed embeddings computed from the text on the fly (never stored) and k-means on them:
    what `curate select --diversity K` needs to assign every row a cluster."""
    from curate.stages.lm import resolve_device

    dev = resolve_device(device)
    embedder, _ = fit_hashed_embedder(
        shards,
        pool_embed_spec(seed),
        dim=dim,
        seed=seed,
        idf_docs=idf_docs,
        columns=columns,
        workers=workers,
        batch_size=batch_size,
        progress=progress,
        pool=pool,
    )
    owned = pool is None
    pool = pool or WorkerPool(min(workers, len(shards)))
    try:
        model, _, _, _ = _fit_kmeans(
            shards,
            "pool",
            k,
            embedder,
            seed,
            max_iter,
            tol,
            None,  # the default seeding sample
            dev,
            columns,
            workers,
            batch_size,
            progress,
            pool,
        )
    finally:
        if owned:
            pool.close()
    return embedder, model


def _cluster_column(shard: Shard, cols: Columns) -> np.ndarray:
    out = []
    for b in iter_batches(shard, cols, columns=[KMEANS_CLUSTER], batch_size=65536):
        c = b.column(KMEANS_CLUSTER)
        out.append(np.asarray(c.drop_null().to_numpy(zero_copy_only=False), np.int64))
    return np.concatenate(out) if out else np.zeros(0, np.int64)


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


# ---------------------------------------------------------------------------------- diversify
def keys_unit(
    shard: Shard,
    cols: Columns,
    quality_column: str | None,
    unit: str,
    tokens_column: str,
    group_by: str | None,
    batch_size: int,
    out_path: str,
) -> dict[str, Any]:
    """Pass 1: per row the cluster, quality, id hash and cost (and group), spilled to .npz."""
    from curate.stages.resample import document_ids
    from curate.tokens import exact_counter, utf8_lengths

    schema = read_schema(shard)
    need = [KMEANS_CLUSTER] + ([quality_column] if quality_column else []) + ([group_by] if group_by else [])
    for c in need:
        if c not in schema.names:
            raise SchemaError(
                f"{shard.path}: no column {c!r}",
                hint="run `curate cluster` first" if c == KMEANS_CLUSTER else None,
            )
    read = [*need, TEXT] + ([ID] if ID in schema.names or cols.id else [])
    use_tokens_col = unit == "tokens" and tokens_column in schema.names
    if use_tokens_col:
        read.append(tokens_column)
    counter = exact_counter("cl100k") if unit == "tokens" and not use_tokens_col else None
    clusters, quality, ids, costs = [], [], [], []
    vocab: dict[str, int] = {}
    codes: list[int] = []
    for b in iter_batches(shard, cols, columns=list(dict.fromkeys(read)), batch_size=batch_size):
        clusters.append(
            np.asarray(
                pc.fill_null(pc.cast(b.column(KMEANS_CLUSTER), pa.int64()), -1).to_numpy(zero_copy_only=False)
            )
        )
        if quality_column:
            col = b.column(quality_column)
            if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
                raise SchemaError(
                    f"{shard.path}: quality column {quality_column!r} has type {col.type}, not numeric"
                )
            quality.append(
                np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
            )
        ids.append(document_ids(b))
        if unit == "docs":
            costs.append(np.ones(b.num_rows, np.int64))
        elif unit == "bytes":
            costs.append(utf8_lengths(b.column(TEXT)))
        elif use_tokens_col:
            costs.append(
                np.asarray(pc.fill_null(b.column(tokens_column), 0).to_numpy(zero_copy_only=False), np.int64)
            )
        else:
            assert counter is not None
            costs.append(counter.count(b.column(TEXT)))
        if group_by:
            for v in b.column(group_by).to_pylist():
                name = str(v) if v is not None else "(null)"
                codes.append(vocab.setdefault(name, len(vocab)))
    z = {
        "cluster": np.concatenate(clusters) if clusters else np.zeros(0, np.int64),
        "quality": np.concatenate(quality) if quality else np.zeros(0),
        "tie": np.concatenate(ids) if ids else np.zeros(0, np.uint64),
        "cost": np.concatenate(costs) if costs else np.zeros(0, np.int64),
    }
    np.savez(
        out_path,
        cluster=z["cluster"],
        quality=z["quality"],
        tie=z["tie"],
        cost=z["cost"],
        group=np.asarray(codes, np.int64),
    )
    return {"rows": len(z["cluster"]), "groups": list(vocab)}


def run_diversify(
    source: DatasetSpec,
    dest: str,
    *,
    budget: Budget,
    allocation: str = "proportional",
    quality_column: str | None = None,
    temperature: float = 1.0,
    tokens_column: str = "n_tokens",
    group_by: str | None = None,
    previous: str | None = None,
    cluster_scores: str | None = None,
    score_column: str | None = None,
    score_temperature: float = 1.0,
    seed: int = 0,
    columns: Columns = Columns(),
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Cluster-balanced selection to a budget (METHODS §5.1): allocate, then Gumbel top-k inside.

    With `previous` (an earlier selection from this pool) this is a refinement round (§5.2): the
    budget (documents) is spread by softmax weights of per-cluster scores, drawn from the rows
    not selected yet, and the output holds the previous selection plus the new rows."""
    progress = progress or NoProgress()
    nworkers = resolve_workers(workers)
    start = time.perf_counter()
    if allocation not in ("proportional", "equal"):
        raise UsageError(f"unknown allocation {allocation!r}; allowed: proportional, equal")
    if temperature <= 0:
        raise UsageError(f"--temperature must be positive, got {temperature}")
    if previous is not None:
        if budget.unit != "docs":
            raise UsageError("a refinement round (--previous) takes a document budget, e.g. docs:10000")
        if (cluster_scores is None) == (score_column is None):
            raise UsageError(
                "a refinement round needs exactly one of --cluster-scores FILE or --score-column C"
            )
    elif cluster_scores is not None or score_column is not None:
        raise UsageError("--cluster-scores and --score-column need --previous (the earlier selection)")
    shards = discover(source)
    unit = "tokens" if budget.unit == "fraction" else budget.unit
    plan = {
        "kind": "diversify",
        "budget": str(budget),
        "allocation": allocation,
        "quality": quality_column,
        "temperature": temperature,
        "seed": seed,
        "previous": previous,
        "cluster_scores": cluster_scores,
        "score_column": score_column,
        "score_temperature": score_temperature,
        "inputs": [[s.name, s.size] for s in shards],
    }
    manifest = Manifest(Path(dest), plan, overwrite=overwrite)
    work = manifest.work_dir()
    paths = [str(work / f"div-{s.index:05d}.npz") for s in shards]
    progress.start("keys", sum(s.size for s in shards))
    found = map_tasks(
        keys_unit,
        [
            (s, columns, quality_column, unit, tokens_column, group_by, batch_size, paths[s.index])
            for s in shards
        ],
        workers=nworkers,
        on_result=lambda i, r: progress.advance("keys", shards[i].size),
    )
    progress.end("keys")

    def raw(i: int) -> dict[str, np.ndarray]:
        with np.load(paths[i], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def selectable_of(z: dict[str, np.ndarray]) -> np.ndarray:
        ok = z["cluster"] >= 0
        return ok & np.isfinite(z["quality"]) if quality_column else ok

    prev_ties = None
    scores: dict[int, float] = {}
    if previous is not None:
        prev_ties, scores = previous_selection(previous, columns, score_column, batch_size)
        if cluster_scores is not None:
            scores = read_cluster_scores(cluster_scores)
    # one scan of the spills for the pool's totals; the selection then streams them (memory:
    # the candidates and the selection, not the pool)
    pool_docs = selectable_docs = pool_cost = prev_docs = prev_cost = left = k = 0
    for i in range(len(paths)):
        z = raw(i)
        ok = selectable_of(z)
        pool_docs += len(ok)
        selectable_docs += int(ok.sum())
        pool_cost += int(z["cost"][ok].sum())
        if ok.any():
            k = max(k, int(z["cluster"][ok].max()) + 1)
        if prev_ties is not None:
            was = np.isin(z["tie"], prev_ties)
            prev_docs += int(was.sum())
            prev_cost += int(z["cost"][was].sum())
            left += int((ok & ~was).sum())
    resolved = budget.resolve(pool_cost)
    if resolved.amount > pool_cost:
        raise UsageError(
            f"budget {budget} is larger than the selectable pool ({pool_cost:,} {unit})",
            hint="lower the budget or use a percentage",
        )
    refine: dict[str, Any] = {}
    weights = None
    if previous is not None:
        if prev_docs == 0:
            raise UsageError(f"--previous {previous}: none of its rows are in {source}")
        weights, unseen = refinement_weights(scores, k, temperature=score_temperature)
        counts = refinement_counts(weights, int(resolved.amount), seed)
        if resolved.amount > left:
            raise UsageError(
                f"budget {budget}: only {left:,} selectable rows are not in the previous selection"
            )
        weights = counts.astype(np.float64)
        refine = {
            "previous_docs": prev_docs,
            "clusters_scored": k - unseen,
            "clusters_given_the_prior": unseen,
            "weights_top10": [
                {"cluster": int(c), "draws": int(counts[c])} for c in np.argsort(-counts)[:10] if counts[c]
            ],
        }

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z = raw(i)
        key = selection_keys(
            z["tie"],
            seed,
            quality=z["quality"] if quality_column else None,
            temperature=temperature,
            exclude=np.isin(z["tie"], prev_ties) if prev_ties is not None else None,
        )
        return key, z["tie"], z["cost"], z["cluster"]

    sel = balanced_from_parts(
        load, len(paths), budget=resolved.amount, allocation=allocation, weights=weights
    )
    per_shard = list(sel.rows)
    if prev_ties is not None:  # the output is the previous selection plus this round
        for i in range(len(paths)):
            per_shard[i] = np.union1d(per_shard[i], np.flatnonzero(np.isin(raw(i)["tie"], prev_ties)))
    group_stats = (
        _group_stats(raw, len(paths), per_shard, selectable_of, [r["groups"] for r in found if r])
        if group_by
        else None
    )
    ctx = RunContext(
        columns=columns, batch_size=batch_size, threads=threads_per_worker(nworkers), output=dest
    )
    progress.start("write", sum(s.size for s in shards))
    reps = map_tasks(
        write_selected,
        [(Pipeline(stages=()), s, per_shard[s.index], ctx) for s in shards],
        workers=nworkers,
        on_result=lambda i, r: progress.advance("write", shards[i].size),
    )
    progress.end("write")
    for p in paths:
        Path(p).unlink(missing_ok=True)
    report = merge_reports(r for r in reps if r is not None)
    summary: dict[str, Any] = {
        "budget": str(budget),
        "budget_resolved": {"unit": resolved.unit, "amount": resolved.amount},
        "unit": unit,
        "token_counter": (
            tokens_column if unit == "tokens" and _has(shards, tokens_column) else "exact cl100k"
        )
        if unit == "tokens"
        else unit,
        "selected_docs": int(sum(len(r) for r in per_shard)),
        "selected_cost": sel.selected_cost + prev_cost,
        "budget_error": (sel.selected_cost - resolved.amount) / resolved.amount,
        "pool_docs": pool_docs,
        "selectable_docs": selectable_docs,
        "pool_cost": pool_cost,
        **sel.report(),
        "allocation": allocation,
        "quality": quality_column,
        "temperature": temperature,
        "seed": seed,
    }
    if refine:
        summary["refinement"] = {**refine, "new_docs": sel.selected_docs}
    if group_stats is not None:
        summary["groups"] = group_stats
    manifest.finish(summary)
    return RunResult(report=report, seconds=time.perf_counter() - start, output=dest, extra=summary)


def previous_selection(
    folder: str, cols: Columns, score_column: str | None, batch_size: int
) -> tuple[np.ndarray, dict[int, float]]:
    """Id hashes of an earlier selection and, with `score_column`, its mean score per cluster."""
    from curate.stages.resample import document_ids

    ties, clusters, values = [], [], []
    for shard in discover(folder):
        names = read_schema(shard).names
        if score_column is not None and (score_column not in names or KMEANS_CLUSTER not in names):
            raise SchemaError(
                f"{shard.path}: --score-column needs columns {score_column!r} and {KMEANS_CLUSTER!r}"
            )
        want = [c for c in (ID, TEXT, KMEANS_CLUSTER, score_column) if c and (c in names or c == TEXT)]
        for b in iter_batches(shard, cols, columns=want, batch_size=batch_size):
            ties.append(document_ids(b))
            if score_column is not None:
                clusters.append(
                    np.asarray(pc.fill_null(b.column(KMEANS_CLUSTER), -1).to_numpy(zero_copy_only=False))
                )
                values.append(
                    np.asarray(
                        pc.fill_null(pc.cast(b.column(score_column), pa.float64()), np.nan).to_numpy(
                            zero_copy_only=False
                        )
                    )
                )
    scores: dict[int, float] = {}
    if score_column is not None and clusters:
        c, v = np.concatenate(clusters), np.concatenate(values)
        ok = (c >= 0) & np.isfinite(v)
        for cl in np.unique(c[ok]):
            scores[int(cl)] = float(v[ok & (c == cl)].mean())
    return (np.concatenate(ties) if ties else np.zeros(0, np.uint64)), scores


def read_cluster_scores(path: str) -> dict[int, float]:
    """A JSON object {"cluster id": score} (or a list of scores indexed by cluster)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--cluster-scores {path}: not a readable JSON file ({exc})") from exc
    try:
        if isinstance(raw, list):
            return {i: float(v) for i, v in enumerate(raw) if v is not None}
        return {int(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(
            f'--cluster-scores {path}: expected {{"cluster": score, ...}} or a list of scores ({exc})'
        ) from exc


def _has(shards: list[Shard], column: str) -> bool:
    return all(column in read_schema(s).names for s in shards)


def _group_stats(
    raw: Callable[[int], dict[str, np.ndarray]],
    parts: int,
    per_shard: list[np.ndarray],
    selectable_of: Callable[[dict[str, np.ndarray]], np.ndarray],
    vocabs: list[list[str]],
) -> dict[str, Any]:
    """Per-group share of the pool's and of the selection's cost, and groups covered."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    for i in range(parts):
        z = raw(i)
        names = vocabs[i]
        ok = selectable_of(z)
        chosen = np.zeros(len(ok), bool)
        chosen[per_shard[i]] = True
        pool_sum = np.bincount(z["group"][ok], weights=z["cost"][ok], minlength=len(names))
        sel_sum = np.bincount(z["group"][chosen], weights=z["cost"][chosen], minlength=len(names))
        for j, name in enumerate(names):
            before[name] = before.get(name, 0.0) + float(pool_sum[j])
            after[name] = after.get(name, 0.0) + float(sel_sum[j])
    tb, ta = max(sum(before.values()), 1.0), max(sum(after.values()), 1.0)
    order = sorted(before, key=lambda g: -before[g])
    return {
        "groups_in_pool": sum(1 for v in before.values() if v > 0),
        "groups_selected": sum(1 for v in after.values() if v > 0),
        "share": {g: {"pool": before[g] / tb, "selected": after[g] / ta} for g in order[:50]},
    }
