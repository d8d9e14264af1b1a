"""`curate embed`: an `embedding` column for every row, hashed TF-IDF n-grams (idf fitted on the
input) or a local model's mean-pooled states; the embedder's settings go to OUT/_embed.json.

idf (a fit over a seeded sample of units; hashed only) -> embedder (saved) -> map.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver, Map, ShardResults
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.io.outputs import write_bytes_atomic
from curate.native import HashSpec
from curate.pipeline import Pipeline
from curate.stages.embed import HashedEmbedder, ModelEmbedder
from curate.steps.clusters import (
    EMBED_ARTIFACT,
    POOL_EMBED_BUCKETS,
    POOL_EMBED_DIM,
    hashed_embedder,
    idf_phase,
)
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class EmbedConfig:
    input: DatasetSpec
    output: str
    method: str = "hashed"
    dim: int = POOL_EMBED_DIM
    buckets: int = POOL_EMBED_BUCKETS
    order: int = 2
    idf_docs: int = 200_000
    model_path: str | None = None
    device: str = "auto"
    seed: int = 0
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.method not in ("hashed", "model"):
            raise UsageError(f"unknown embedding method {self.method!r}; allowed: hashed, model")
        if self.method == "model" and not self.model_path:
            raise UsageError("--method model needs --model PATH (a local sentence-embedding or LM folder)")

    @property
    def spec(self) -> HashSpec:
        return HashSpec(buckets=self.buckets, order=self.order, seed=self.seed)


def _embedder(run: JobRun) -> dict[str, Any]:
    c: EmbedConfig = run.config
    if c.method == "hashed":
        stage = hashed_embedder(run, "idf", c.spec, c.dim, c.seed)
        return {"stage": stage, "info": {**stage.to_dict(), "idf_docs": run.get("idf").summary.docs}}
    model = ModelEmbedder(model_path=c.model_path or "", device=c.device)
    return {"stage": model, "info": {"method": "model", "model": c.model_path, "dim": model.dimension()}}


def _save(run: JobRun, result: dict[str, Any]) -> None:
    assert run.out is not None
    stage = result["stage"]
    if isinstance(stage, HashedEmbedder):
        np.savez(run.out / f"{EMBED_ARTIFACT}.npz", idf=stage.idf)
    write_bytes_atomic(
        run.out / f"{EMBED_ARTIFACT}.json", (json.dumps(result["info"], indent=2) + "\n").encode()
    )


def _load(run: JobRun) -> dict[str, Any] | None:
    c: EmbedConfig = run.config
    assert run.out is not None
    info_path, idf_path = run.out / f"{EMBED_ARTIFACT}.json", run.out / f"{EMBED_ARTIFACT}.npz"
    if c.method != "hashed" or not (info_path.exists() and idf_path.exists()):
        return None
    with np.load(idf_path, allow_pickle=False) as z:
        stage = HashedEmbedder(spec=c.spec, idf=z["idf"], dim=c.dim, seed=c.seed)
    return {"stage": stage, "info": json.loads(info_path.read_text())}


def _summary(run: JobRun) -> dict[str, Any]:
    result: ShardResults = run.get("map")
    return {"report": result.total().to_dict(), "embedder": run.get("embedder")["info"]}


def embed_job(config: EmbedConfig) -> Job:
    return Job(
        kind="embed",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column)},
        output=config.output,
        phases=(
            idf_phase("idf", lambda run: run.config.spec, lambda run: run.config.idf_docs),
            Driver(name="embedder", fn=_embedder, saver=_save, loader=_load),
            Map(name="map", pipeline=lambda run: Pipeline(stages=(run.get("embedder")["stage"],))),
        ),
        summarize=_summary,
        batch_size=config.batch_size,
    )
