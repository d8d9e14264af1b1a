"""A dataset's texts gathered on the driver, for jobs that train on them in memory (fastText,
the proxy LM): the non-empty texts in input order."""

from __future__ import annotations

from curate.engine.job import JobRun
from curate.io.inputs import Columns, Shard, iter_batches
from curate.types import TEXT


def shard_texts(shard: Shard, cols: Columns, batch_size: int) -> list[str]:
    out: list[str] = []
    for batch in iter_batches(shard, cols, columns=[TEXT], batch_size=batch_size):
        out.extend(t for t in batch.column(TEXT).to_pylist() if t)
    return out


def read_texts(run: JobRun, dataset: str) -> list[str]:
    shards = run.shards(dataset)
    parts = run.map(
        f"read {dataset}",
        shard_texts,
        [(s, run.columns(dataset), run.job.batch_size) for s in shards],
        shards=shards,
    )
    return [t for p in parts if p for t in p]
