"""`curate dedup minhash`: near-duplicate removal. MinHash + LSH banding, candidates verified on
full signatures, connected components; one document kept per cluster (the first in input
order), with `minhash_cluster` (the kept document's global position) and `minhash_cluster_size`.

keys (signatures and band hashes, spilled) -> decide (clusters) -> write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.stages.dedup import lsh_params
from curate.steps.dedup import minhash_decision, signature_shard
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class MinHashConfig:
    input: DatasetSpec
    output: str
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    seed: int = 0
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")

    @property
    def lsh(self) -> tuple[int, int]:
        return lsh_params(self.threshold, self.num_perm)


def _args(run: JobRun, shard: Any) -> tuple[Any, ...]:
    c: MinHashConfig = run.config
    bands, rows = c.lsh
    return (c.num_perm, c.ngram, c.seed, bands, rows)


def _decide(run: JobRun) -> Decision:
    c: MinHashConfig = run.config
    shards = run.shards()
    spills: ShardResults = run.get("signatures")
    paths = [spills.paths[s.index] for s in shards]
    keeps, clusters, sizes, stats = minhash_decision(
        shards, paths, num_perm=c.num_perm, bands=c.lsh[0], threshold=c.threshold
    )
    return Decision(
        rows={s.index: np.flatnonzero(k).astype(np.int64) for s, k in zip(shards, keeps, strict=True)},
        columns={
            "minhash_cluster": {s.index: cl[k] for s, k, cl in zip(shards, keeps, clusters, strict=True)},
            "minhash_cluster_size": {s.index: sz[k] for s, k, sz in zip(shards, keeps, sizes, strict=True)},
        },
        stats={**stats, "near_duplicates_dropped": sum(int((~k).sum()) for k in keeps)},
    )


def _summary(run: JobRun) -> dict[str, Any]:
    c: MinHashConfig = run.config
    spills: ShardResults = run.get("signatures")
    read = spills.total()
    stats = run.get("decide").stats
    bands, rows = c.lsh
    return {
        "rows_in": read.rows_in,
        "rows_out": run.get("write").total().rows_out,
        "near_duplicates_dropped": stats["near_duplicates_dropped"],
        **{k: stats[k] for k in ("clusters", "largest_cluster", "verified_pairs")},
        "threshold": c.threshold,
        "num_perm": c.num_perm,
        "bands": bands,
        "rows_per_band": rows,
        "shingles": f"word {c.ngram}-grams, lower-cased, punctuation dropped",
        "signature_seconds": round(sum(r.seconds for r in spills.reports.values()), 3),
        "signature_mb": round(read.text_bytes / 1e6, 3),
    }


def minhash_dedup_job(config: MinHashConfig) -> Job:
    return Job(
        kind="dedup minhash",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column)},
        output=config.output,
        phases=(
            Keys(name="signatures", task=signature_shard, args=_args),
            Decide(name="decide", decide=_decide),
            Write(name="write"),
        ),
        summarize=_summary,
        batch_size=config.batch_size,
    )
