"""`curate filter threshold`: keep rows whose score is in range, or in the top share of the
whole input (a global percentile: every shard's values ranked together, never per shard).
Null and NaN values never pass and are counted; the other rows may go to a rejected folder.

keys (the column's values, spilled) -> decide (the threshold, kept and rejected rows) -> write.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.errors import SchemaError, UsageError
from curate.io.inputs import Columns, DatasetSpec, Shard, iter_batches
from curate.pipeline import RunContext, ShardReport, peak_rss_mb
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class ThresholdConfig:
    input: DatasetSpec
    output: str
    column: str
    keep_top: float | None = None
    minimum: float | None = None
    maximum: float | None = None
    rejected: str | None = None
    sidecars: tuple[str, ...] = ()
    text_column: str = TEXT
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.keep_top is None and self.minimum is None and self.maximum is None:
            raise UsageError("give --keep-top, --min or --max")
        if self.keep_top is not None and not 0 < self.keep_top <= 1:
            raise UsageError(f"--keep-top must be a fraction in (0, 1], got {self.keep_top}")


def column_values(shard: Shard, ctx: RunContext, out_path: str, column: str) -> ShardReport:
    """The column as float64 (NaN where null), spilled."""
    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    values = []
    for batch in iter_batches(shard, ctx.columns, columns=[column], batch_size=ctx.batch_size):
        report.rows_in += batch.num_rows
        col = batch.column(column)
        if not (
            pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)
        ):
            raise UsageError(
                f"{shard.path}: column {column!r} has type {col.type}; a threshold needs numbers"
            )
        values.append(
            np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
        )
    np.savez(out_path, values=np.concatenate(values) if values else np.zeros(0))
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def _decide(run: JobRun) -> Decision:
    c: ThresholdConfig = run.config
    shards = run.shards()
    spills: ShardResults = run.get("values")
    values = []
    for s in shards:
        with np.load(spills.paths[s.index], allow_pickle=False) as z:
            values.append(z["values"])
    allv = np.concatenate(values) if values else np.zeros(0)
    finite = allv[np.isfinite(allv)]
    lo = -np.inf if c.minimum is None else c.minimum
    hi = np.inf if c.maximum is None else c.maximum
    threshold = None
    if c.keep_top is not None and len(finite):
        k = max(1, int(np.ceil(c.keep_top * len(finite))))
        threshold = float(np.partition(finite, len(finite) - k)[len(finite) - k])
        lo = max(lo, threshold)
    del allv, finite
    drops = {f"null or NaN {c.column}": 0, f"{c.column} out of range": 0}
    rows, rejected = {}, {}
    for s, v in zip(shards, values, strict=True):
        ok = np.isfinite(v)
        keep = ok & (v >= lo) & (v <= hi)
        drops[f"null or NaN {c.column}"] += int((~ok).sum())
        drops[f"{c.column} out of range"] += int((ok & ~keep).sum())
        rows[s.index] = np.flatnonzero(keep).astype(np.int64)
        rejected[s.index] = np.flatnonzero(~keep).astype(np.int64)
    stats = {
        "rows_in": sum(len(v) for v in values),
        "threshold": threshold,
        "min": None if lo == -np.inf else lo,
        "max": None if hi == np.inf else hi,
        "drops": drops,
    }
    return Decision(rows=rows, rejected=rejected if c.rejected else None, stats=stats)


def _summary(run: JobRun) -> dict[str, Any]:
    c: ThresholdConfig = run.config
    stats = run.get("decide").stats
    return {
        "rows_in": stats["rows_in"],
        "rows_out": run.get("write").total().rows_out,
        "column": c.column,
        "threshold": stats["threshold"],
        "min": stats["min"],
        "max": stats["max"],
        "keep_top": c.keep_top,
        "drops": stats["drops"],
        "global": "percentiles over the whole input, not per shard",
        "distribution": {"score": _histogram(run)},
    }


def _histogram(run: JobRun) -> dict[str, Any] | None:
    from curate.steps.profile import score_histogram

    shards = run.shards()
    rows = run.get("decide").rows
    paths = [run.get("values").paths[s.index] for s in shards]
    return score_histogram(paths, [rows.get(s.index, np.zeros(0, np.int64)) for s in shards], "values")


def threshold_job(config: ThresholdConfig) -> Job:
    def validate(dataset: str, shard: Any, schema: Any) -> None:
        if config.column not in schema.names:
            raise SchemaError(
                f"{shard.path}: no column {config.column!r}; columns present: {', '.join(schema.names)}"
            )

    return Job(
        kind="filter threshold",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, sidecars=config.sidecars)},
        output=config.output,
        rejected=config.rejected,
        phases=(
            Keys(name="values", task=column_values, args=lambda run, s: (run.config.column,)),
            Decide(name="decide", decide=_decide),
            Write(
                name="write",
                rejected=config.rejected is not None,
                dropped_as=f"{config.column} null or out of range",
            ),
        ),
        summarize=_summary,
        validate=validate,
        batch_size=config.batch_size,
    )
