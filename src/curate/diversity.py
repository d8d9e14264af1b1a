"""Runs for diversity selection: embed a pool, cluster it, select a cluster-balanced subset.

The algorithms live in `curate.stages.embed`, `curate.kmeans` and `curate.stages.diversity`;
this module drives them over shards with the local executor and writes the artifacts.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.budget import Budget
from curate.errors import SchemaError, UsageError
from curate.executors.local import WorkerPool, map_tasks, resolve_workers, threads_per_worker
from curate.io.inputs import Columns, Shard, discover, iter_batches, iter_unit_batches, read_schema
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
    balanced_selection,
    refinement_counts,
    refinement_weights,
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


def run_embed(
    source: str,
    dest: str,
    *,
    method: str = "hashed",
    dim: int = 256,
    buckets: int = 1 << 18,
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
        spec = HashSpec(buckets=buckets, order=order, seed=seed)
        shards = discover(source)
        df = fit_idf(
            shards,
            spec,
            max_docs=idf_docs,
            seed=seed,
            columns=columns,
            workers=nworkers,
            batch_size=batch_size,
            progress=progress,
        )
        stage = HashedEmbedder(spec=spec, idf=DocumentFrequency(spec=spec).finalize(df), dim=dim, seed=seed)
        info: dict[str, Any] = {**stage.to_dict(), "idf_docs": df.docs}
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
    source: str,
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
    import pyarrow.parquet as pq

    total_rows = sum(pq.ParquetFile(s.path).metadata.num_rows if s.format == "parquet" else 0 for s in shards)
    want = sample_rows or default_sample_rows(k)
    p = 1.0 if not total_rows else min(1.0, 1.5 * want / total_rows)
    with WorkerPool(min(nworkers, len(shards))) as pool:
        model, sample_size, rows, valid = _fit_kmeans(
            shards,
            source,
            k,
            column,
            seed,
            max_iter,
            tol,
            want,
            p,
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
    source: str,
    k: int,
    column: EmbeddingSource,
    seed: int,
    max_iter: int,
    tol: float,
    want: int,
    p: float,
    dev: str,
    columns: Columns,
    nworkers: int,
    batch_size: int,
    progress: Progress,
    pool: WorkerPool,
) -> tuple[KMeansModel, int, int, int]:
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
    dim: int = 256,
    idf_docs: int = 200_000,
    device: str = "auto",
    max_iter: int = 20,
    tol: float = 1e-4,
) -> tuple[HashedEmbedder, KMeansModel]:
    """Hashed embeddings computed from the text on the fly (never stored) and k-means on them:
    what `curate select --diversity K` needs to assign every row a cluster."""
    from curate.stages.lm import resolve_device

    dev = resolve_device(device)
    spec = HashSpec(buckets=1 << 18, order=2, seed=seed)
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
    embedder = HashedEmbedder(spec=spec, idf=DocumentFrequency(spec=spec).finalize(df), dim=dim, seed=seed)
    import pyarrow.parquet as pq

    total_rows = sum(pq.ParquetFile(s.path).metadata.num_rows if s.format == "parquet" else 0 for s in shards)
    want = default_sample_rows(k)
    p = 1.0 if not total_rows else min(1.0, 1.5 * want / total_rows)
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
            want,
            p,
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
    groups: list[str] = []
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
            groups.extend(str(v) if v is not None else "(null)" for v in b.column(group_by).to_pylist())
    z = {
        "cluster": np.concatenate(clusters) if clusters else np.zeros(0, np.int64),
        "quality": np.concatenate(quality) if quality else np.zeros(0),
        "tie": np.concatenate(ids) if ids else np.zeros(0, np.uint64),
        "cost": np.concatenate(costs) if costs else np.zeros(0, np.int64),
    }
    np.savez(out_path, cluster=z["cluster"], quality=z["quality"], tie=z["tie"], cost=z["cost"])
    return {"rows": len(z["cluster"]), "groups": groups}


def run_diversify(
    source: str,
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
    parts = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            parts.append({k: z[k] for k in z.files})
    cat = {k: np.concatenate([q[k] for q in parts]) for k in ("cluster", "tie", "cost")}
    quality = np.concatenate([q["quality"] for q in parts]) if quality_column else None
    shard_of = np.concatenate([np.full(len(q["cluster"]), i, np.int64) for i, q in enumerate(parts)])
    row_of = np.concatenate([np.arange(len(q["cluster"]), dtype=np.int64) for q in parts])
    selectable = cat["cluster"] >= 0
    if quality is not None:
        selectable &= np.isfinite(quality)
    pool_cost = int(cat["cost"][selectable].sum())
    resolved = budget.resolve(pool_cost)
    if resolved.amount > pool_cost:
        raise UsageError(
            f"budget {budget} is larger than the selectable pool ({pool_cost:,} {unit})",
            hint="lower the budget or use a percentage",
        )
    refine: dict[str, Any] = {}
    weights = in_prev = None
    if previous is not None:
        k = int(cat["cluster"].max()) + 1 if len(cat["cluster"]) else 0
        prev_ties, scores = previous_selection(previous, columns, score_column, batch_size)
        if cluster_scores is not None:
            scores = read_cluster_scores(cluster_scores)
        in_prev = np.isin(cat["tie"], prev_ties)
        if not in_prev.any():
            raise UsageError(f"--previous {previous}: none of its rows are in {source}")
        weights, unseen = refinement_weights(scores, k, temperature=score_temperature)
        counts = refinement_counts(weights, int(resolved.amount), seed)
        left = int((selectable & ~in_prev).sum())
        if resolved.amount > left:
            raise UsageError(
                f"budget {budget}: only {left:,} selectable rows are not in the previous selection"
            )
        weights = counts.astype(np.float64)
        refine = {
            "previous_docs": int(in_prev.sum()),
            "clusters_scored": k - unseen,
            "clusters_given_the_prior": unseen,
            "weights_top10": [
                {"cluster": int(c), "draws": int(counts[c])} for c in np.argsort(-counts)[:10] if counts[c]
            ],
        }
    sel = balanced_selection(
        cluster=cat["cluster"],
        cost=cat["cost"],
        tie=cat["tie"],
        budget=resolved.amount,
        quality=quality,
        temperature=temperature,
        allocation=allocation,
        seed=seed,
        weights=weights,
        exclude=in_prev,
    )
    keep = sel.selected if in_prev is None else (sel.selected | in_prev)
    per_shard = [np.sort(row_of[keep & (shard_of == i)]) for i in range(len(shards))]
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
        "selected_docs": int(keep.sum()),
        "selected_cost": int(cat["cost"][keep].sum()),
        "budget_error": (int(cat["cost"][keep].sum()) - resolved.amount) / resolved.amount,
        "pool_docs": len(keep),
        "selectable_docs": int(selectable.sum()),
        "pool_cost": pool_cost,
        **sel.report(cat["cost"], selectable, pool_cost),
        "allocation": allocation,
        "quality": quality_column,
        "temperature": temperature,
        "seed": seed,
    }
    if refine:
        summary["refinement"] = {**refine, "new_docs": int(sel.selected.sum())}
    if group_by:
        groups = np.array([g for r in found if r for g in r["groups"]], dtype=object)
        summary["groups"] = group_shares(groups, cat["cost"], selectable, keep)
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


def group_shares(
    groups: np.ndarray, cost: np.ndarray, pool: np.ndarray, selected: np.ndarray
) -> dict[str, Any]:
    """Per-group share of the pool's and of the selection's cost, and groups covered."""
    names, inv = np.unique(groups.astype(str), return_inverse=True)
    before = np.bincount(inv[pool], weights=cost[pool], minlength=len(names))
    after = np.bincount(inv[selected], weights=cost[selected], minlength=len(names))
    tb, ta = max(before.sum(), 1), max(after.sum(), 1)
    order = np.argsort(-before)
    return {
        "groups_in_pool": int((before > 0).sum()),
        "groups_selected": int((after > 0).sum()),
        "share": {
            str(names[i]): {"pool": float(before[i] / tb), "selected": float(after[i] / ta)}
            for i in order[:50]
        },
    }
