"""`curate dedup minhash`: near-duplicate removal. MinHash + LSH banding for candidates, the exact
Jaccard of candidate pairs (or their signature estimate), connected components; one document
kept per cluster (the first in input order), with `minhash_cluster` (the kept document's global
position) and `minhash_cluster_size`.

signatures (spilled) -> candidates -> shingles of candidate rows (spilled) -> decide -> write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, ShardResults, Write
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.steps.near_duplicates import (
    VERIFY,
    NearDupParams,
    near_duplicate_decision,
    signature_phase,
    verify_phases,
)
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class MinHashConfig:
    input: DatasetSpec
    output: str
    threshold: float = 0.8
    num_perm: int = 128
    ngram: int = 5
    seed: int = 0
    verify: str = "exact"
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if not 0 < self.threshold <= 1:
            raise UsageError(f"--threshold must be in (0, 1], got {self.threshold}")
        if self.verify not in VERIFY:
            raise UsageError(f"--verify must be one of {', '.join(VERIFY)}, got {self.verify!r}")

    @property
    def params(self) -> NearDupParams:
        return NearDupParams(
            threshold=self.threshold,
            num_perm=self.num_perm,
            ngram=self.ngram,
            seed=self.seed,
            verify=self.verify,
        )


def _params(run: JobRun) -> NearDupParams:
    return run.config.params


def _decide(run: JobRun) -> Decision:
    shards = run.shards()
    keeps, clusters, sizes, stats = near_duplicate_decision(run, _params(run), signatures="signatures")
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
    bands, rows = c.params.lsh
    keys = ("clusters", "largest_cluster", "verify", "banded_pairs", "candidate_pairs", "linked_pairs")
    return {
        "rows_in": read.rows_in,
        "rows_out": run.get("write").total().rows_out,
        "near_duplicates_dropped": stats["near_duplicates_dropped"],
        **{k: stats[k] for k in keys},
        "threshold": c.threshold,
        "num_perm": c.num_perm,
        "bands": bands,
        "rows_per_band": rows,
        "shingles": f"word {c.ngram}-grams, lower-cased, punctuation dropped",
        "signature_seconds": round(sum(r.seconds for r in spills.reports.values()), 3),
        "signature_mb": round(read.text_bytes / 1e6, 3),
        "screen": round(c.params.screen, 4),
    }


def minhash_dedup_job(config: MinHashConfig) -> Job:
    return Job(
        kind="dedup minhash",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column)},
        output=config.output,
        phases=(
            signature_phase(_params),
            *verify_phases(_params, signatures="signatures"),
            Decide(name="decide", decide=_decide),
            Write(name="write", dropped_as="near duplicate"),
        ),
        summarize=_summary,
        batch_size=config.batch_size,
    )
