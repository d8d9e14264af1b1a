"""`select --diversity K`: hashed embeddings computed from the text on the fly (never stored) and
k-means fitted on a seeded sample of them held in memory (100 rows per cluster), so that pass 1
can give every row its cluster, with no pass over the pool for k-means itself, and the budget can
be spread across clusters. The sample's texts (rows chosen by a seeded hash of their id) are taken in
the raw importance fit's read of the pool; the idf is their document frequencies. The idf and the centroids are saved in OUT (`_embed.npz`, `_kmeans.npz/.json`),
so a rerun loads them instead of clustering again.

With the default allocation, `target`, each cluster's share of the budget follows the target:
the target's documents are embedded and assigned to the clusters ("target clusters"); a
cluster's weight is half where the plain importance prefix of the same budget spends it (DSIR's
own allocation, which keeps precision) and half its share of the target's documents (which
reaches the target's small clusters), then (1 - s) x that + s x its share of the pool's
documents (s = TARGET_SMOOTHING), so a cluster the target barely touches still gets a little.

diversity (the sample's texts, from the raw fit's read; their idf, embeddings, k-means)
-> [target clusters (the target's documents per cluster)].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from curate.engine.job import JobRun
from curate.engine.phases import Driver
from curate.errors import UsageError
from curate.kmeans import KMeansModel
from curate.stages.embed import HashedEmbedder
from curate.stages.resample import TextSample
from curate.steps.clusters import (
    EMBED_ARTIFACT,
    KMEANS_ARTIFACT,
    POOL_EMBED_DIM,
    fit_kmeans_on_sample,
    pool_embed_spec,
    text_sample_stage,
)

TARGET_SMOOTHING = 0.05  # the share of the budget that follows the pool's cluster sizes
PLAIN_SHARE = 0.5  # the share that follows the plain importance prefix (bench_select_diversity.py)
ALLOCATIONS = ("target", "proportional", "equal")


def _fit(run: JobRun) -> dict[str, Any]:
    from curate.kmeans import kmeans_device

    config = run.config
    raw = run.peek("fit raw")  # absent when the importance model was loaded from an earlier run
    complete = raw is not None and isinstance(raw.summary, tuple) and raw.units_used == raw.units_total
    held: TextSample | None = raw.summary[1] if complete else None
    embedder, model = fit_kmeans_on_sample(
        run,
        pool_embed_spec(config.seed),
        POOL_EMBED_DIM,
        k=config.diversity,
        seed=config.seed,
        device=kmeans_device("auto"),
        batch_size=config.batch_size,
        held=held,
    )
    if held is not None:  # the texts are not needed again
        held.texts.clear()
    return {"embedder": embedder, "model": model}


def sample_in_raw_fit(config: Any) -> Any:
    """The sample's texts, taken in the raw importance fit's read of the pool (`importance_phases`'
    side fit), or None without --diversity. A fit that stops at its cap has not seen every row:
    the sample then takes a read of its own."""
    if config.diversity is None:
        return None
    return lambda run: text_sample_stage(run, config.diversity, config.seed, config.batch_size)


def _save(run: JobRun, fitted: dict[str, Any]) -> None:
    assert run.out is not None and run.manifest is not None
    model: KMeansModel = fitted["model"]
    np.savez(run.out / f"{EMBED_ARTIFACT}.npz", idf=fitted["embedder"].idf)
    model.save(run.out / KMEANS_ARTIFACT)
    run.manifest.set_phase(
        "diversity stats",
        {
            "passes": model.iterations,
            "converged": model.converged,
            "inertia_per_pass": model.inertia,
            "reseeded_empty_clusters": model.reseeded,
            "rows": model.rows,
            **{
                k: model.info[k]
                for k in ("fit_on", "sample_rows", "sampled_share", "pool_rows", "idf_docs", "reread_shards")
                if k in model.info
            },
        },
    )


def _load(run: JobRun) -> dict[str, Any] | None:
    assert run.out is not None
    embed_path, kmeans_path = run.out / f"{EMBED_ARTIFACT}.npz", run.out / KMEANS_ARTIFACT
    if not (embed_path.exists() and kmeans_path.with_suffix(".npz").exists()):
        return None
    seed = run.config.seed
    with np.load(embed_path, allow_pickle=False) as z:
        embedder = HashedEmbedder(spec=pool_embed_spec(seed), idf=z["idf"], dim=POOL_EMBED_DIM, seed=seed)
    return {"embedder": embedder, "model": KMeansModel.load(kmeans_path)}


def _target_counts(run: JobRun) -> np.ndarray:
    """The target's documents (with words) per cluster, by the pool's embedder and centroids."""
    from curate.io.inputs import iter_batches
    from curate.pipeline import Pipeline, ShardReport
    from curate.stages.diversity import KMEANS_CLUSTER, KMeansAssign
    from curate.types import TEXT

    fitted = run.get("diversity")
    model: KMeansModel = fitted["model"]
    pipeline = Pipeline(stages=(fitted["embedder"], KMeansAssign(centroids=model.centroids)))
    counts = np.zeros(len(model.centroids), np.int64)
    report = ShardReport(shard="target")
    for shard in run.shards("target"):
        for batch in iter_batches(
            shard, run.columns("target"), columns=[TEXT], batch_size=run.job.batch_size
        ):
            col = pipeline.apply(batch, report).column(KMEANS_CLUSTER)
            cl = np.asarray(col.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
            counts += np.bincount(cl[cl >= 0], minlength=len(counts))
    if not counts.sum():
        raise UsageError(
            "no target document has words to embed: --diversity-allocation target has nothing to follow"
        )
    return counts


def _save_target(run: JobRun, counts: np.ndarray) -> None:
    if run.manifest is not None:
        run.manifest.set_phase("target clusters", {"counts": counts.tolist()})


def _load_target(run: JobRun) -> np.ndarray | None:
    rec = run.manifest.phase("target clusters") if run.manifest is not None else None
    return np.asarray(rec["counts"], np.int64) if rec else None


def target_counts(run: JobRun) -> np.ndarray:
    """The target's documents per cluster (for the `target` allocation, and for every
    allocation's report: how much of the target the selection's clusters cover)."""
    return run.get("target clusters")


def kmeans_stats(run: JobRun) -> dict[str, Any]:
    assert run.manifest is not None
    return dict(run.manifest.phase("diversity stats") or {})


def diversity_phases() -> tuple[Driver, Driver]:
    return (
        Driver(name="diversity", fn=_fit, saver=_save, loader=_load, on_demand=True),
        Driver(
            name="target clusters", fn=_target_counts, saver=_save_target, loader=_load_target, on_demand=True
        ),
    )
