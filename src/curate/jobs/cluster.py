"""`curate cluster`: k-means on an embedding column, then `kmeans_cluster` and `kmeans_distance`
on every row; the centroids go to OUT/_kmeans.npz with OUT/_kmeans.json (inertia per pass).

kmeans (k-means++ on a seeded sample, Lloyd passes over the shards; saved) -> map (assign).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver, Map, ShardResults
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec, describe
from curate.kmeans import KMeansModel
from curate.pipeline import Pipeline
from curate.stages.diversity import KMEANS_CLUSTER, KMeansAssign
from curate.stages.embed import EMBEDDING
from curate.steps.clusters import KMEANS_ARTIFACT, fit_kmeans, size_summary
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class ClusterConfig:
    input: DatasetSpec
    output: str
    k: int = 1024
    column: str = EMBEDDING
    seed: int = 0
    max_iter: int = 20
    tol: float = 1e-4
    sample_rows: int | None = None
    device: str = "auto"
    text_column: str = TEXT
    batch_size: int = 8192

    def __post_init__(self) -> None:
        if self.k < 1:
            raise UsageError(f"--k must be at least 1, got {self.k}")


def _device(run: JobRun) -> str:
    from curate.kmeans import kmeans_device

    return kmeans_device(run.config.device)


def _kmeans(run: JobRun) -> dict[str, Any]:
    c: ClusterConfig = run.config
    model, sample, rows, valid = fit_kmeans(
        run,
        c.column,
        k=c.k,
        seed=c.seed,
        max_iter=c.max_iter,
        tol=c.tol,
        sample_rows=c.sample_rows,
        device=_device(run),
        batch_size=c.batch_size,
        source=describe(c.input),
    )
    return {"model": model, "sample_rows": sample, "rows": rows, "valid": valid}


def _save(run: JobRun, result: dict[str, Any]) -> None:
    assert run.out is not None
    result["model"].save(run.out / KMEANS_ARTIFACT)
    assert run.manifest is not None
    run.manifest.set_phase("kmeans counts", {k: result[k] for k in ("sample_rows", "rows", "valid")})


def _load(run: JobRun) -> dict[str, Any] | None:
    assert run.out is not None and run.manifest is not None
    counts = run.manifest.phase("kmeans counts")
    if counts is None or not (run.out / f"{KMEANS_ARTIFACT}.npz").exists():
        return None
    return {"model": KMeansModel.load(run.out / KMEANS_ARTIFACT), **counts}


def _summary(run: JobRun) -> dict[str, Any]:
    c: ClusterConfig = run.config
    fitted = run.get("kmeans")
    model: KMeansModel = fitted["model"]
    result: ShardResults = run.get("map")
    sizes = np.zeros(c.k, np.int64)
    for rep in result.reports.values():
        tally = np.asarray(rep.extra.get("tally", np.zeros(0, np.int64)), np.int64)
        sizes[: len(tally)] += tally[: c.k]
    return {
        "k": c.k,
        "dim": model.dim,
        "rows": fitted["rows"],
        "rows_with_embedding": fitted["valid"],
        "sample_rows": fitted["sample_rows"],
        "iterations": model.iterations,
        "converged": model.converged,
        "inertia_per_pass": model.inertia,
        "reseeded_empty_clusters": model.reseeded,
        "cluster_sizes": size_summary(sizes),
        "device": _device(run),
    }


def cluster_job(config: ClusterConfig) -> Job:
    def pipeline(run: JobRun) -> Pipeline:
        model: KMeansModel = run.get("kmeans")["model"]
        return Pipeline(
            stages=(KMeansAssign(centroids=model.centroids, column=config.column, device=_device(run)),)
        )

    return Job(
        kind="cluster",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column)},
        output=config.output,
        phases=(
            Driver(name="kmeans", fn=_kmeans, saver=_save, loader=_load),
            Map(name="map", pipeline=pipeline, tally=KMEANS_CLUSTER),
        ),
        summarize=_summary,
        batch_size=config.batch_size,
    )
