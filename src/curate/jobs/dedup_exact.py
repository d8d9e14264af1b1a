"""`curate dedup exact`: keep the first occurrence (input order: shard order, then row order) of
every normalised text; add `dedup_exact_hash` and `dedup_exact_copies` (occurrences in the whole
input). Null and empty texts are never duplicates. Memory: 24 bytes per distinct document.

keys (every row's hash, spilled) -> decide (first occurrences) -> write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.io.inputs import Columns, DatasetSpec
from curate.pipeline import Pipeline
from curate.stages.dedup import DEDUP_EXACT_COPIES, ExactHash
from curate.steps.dedup import exact_decision, hash_shard
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class ExactDedupConfig:
    input: DatasetSpec
    output: str
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096


def _decide(run: JobRun) -> Decision:
    shards = run.shards()
    spills: ShardResults = run.get("hash")
    keeps, copies, merged = exact_decision(shards, [spills.paths[s.index] for s in shards])
    return Decision(
        rows={s.index: np.flatnonzero(k).astype(np.int64) for s, k in zip(shards, keeps, strict=True)},
        columns={DEDUP_EXACT_COPIES: {s.index: c[k] for s, k, c in zip(shards, keeps, copies, strict=True)}},
        stats={
            "duplicates_dropped": sum(int((~k).sum()) for k in keeps),
            "distinct_texts": len(merged.hash),
            "largest_group": int(merged.count.max()) if len(merged.count) else 0,
            "groups_with_copies": int((merged.count > 1).sum()),
        },
    )


def _summary(run: JobRun) -> dict[str, Any]:
    read = run.get("hash").total()
    written = run.get("write").total()
    stats = run.get("decide").stats
    return {
        "rows_in": read.rows_in,
        "rows_out": written.rows_out,
        "duplicates_dropped": stats["duplicates_dropped"],
        "distinct_texts": stats["distinct_texts"],
        "null_text": read.null_text,
        "empty_text": read.empty_text,
        "largest_group": stats["largest_group"],
        "groups_with_copies": stats["groups_with_copies"],
        "normalisation": "NFKC, lower-case, whitespace runs collapsed, trimmed",
        "kept": "first occurrence in input order (shard order, then row order)",
    }


def exact_dedup_job(config: ExactDedupConfig) -> Job:
    pipeline = Pipeline(stages=(ExactHash(),))

    def validate(dataset: str, shard: Any, schema: Any) -> None:
        pipeline.validate(schema, shard.path)

    return Job(
        kind="dedup exact",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column)},
        output=config.output,
        phases=(
            Keys(name="hash", task=hash_shard),
            Decide(name="decide", decide=_decide),
            Write(name="write", pipeline=lambda run: pipeline, dropped_as="exact duplicate"),
        ),
        summarize=_summary,
        validate=validate,
        batch_size=config.batch_size,
    )
