"""Pipelines of map stages and the pure per-shard functions that executors schedule.

`run_shard` maps a pipeline over one shard into one output shard. Selection runs in two passes:
`collect_keys` (per shard: sort keys and costs of every row, spilled to a small .npz) and
`write_selected` (per shard: the chosen rows, re-annotated, written atomically).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate import arrow_ops
from curate.errors import UsageError
from curate.io.inputs import Columns, Shard, canonical_schema, iter_batches, shard_schema
from curate.io.outputs import ParquetShardWriter
from curate.io.sidecars import key_name, row_keys
from curate.samples import ShardSamples
from curate.stages.base import Annotator, Filter, StageContext, with_columns
from curate.types import ID, TEXT

MapStage = Annotator | Filter
REJECT_REASON = "filter_reason"


@dataclass
class ShardReport:
    """Mergeable per-shard statistics; the executor sums them into the run report."""

    shard: str = ""
    rows_in: int = 0
    rows_out: int = 0
    text_bytes: int = 0
    null_text: int = 0
    empty_text: int = 0
    seconds: float = 0.0
    drops: dict[str, int] = field(default_factory=dict)
    nulls: dict[str, int] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    peak_rss_mb: float = 0.0  # of the process that ran the shard (max when merged)
    extra: dict[str, Any] = field(default_factory=dict)

    def merge(self, other: ShardReport) -> ShardReport:
        out = ShardReport(
            shard="",
            rows_in=self.rows_in + other.rows_in,
            rows_out=self.rows_out + other.rows_out,
            text_bytes=self.text_bytes + other.text_bytes,
            null_text=self.null_text + other.null_text,
            empty_text=self.empty_text + other.empty_text,
            seconds=self.seconds + other.seconds,
            drops=_add_counts(self.drops, other.drops),
            nulls=_add_counts(self.nulls, other.nulls),
            files=self.files + other.files,
            peak_rss_mb=max(self.peak_rss_mb, other.peak_rss_mb),
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard": self.shard,
            "rows_in": self.rows_in,
            "rows_out": self.rows_out,
            "text_bytes": self.text_bytes,
            "null_text": self.null_text,
            "empty_text": self.empty_text,
            "seconds": round(self.seconds, 4),
            "drops": self.drops,
            "nulls": self.nulls,
            "files": self.files,
            "peak_rss_mb": round(self.peak_rss_mb, 1),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShardReport:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _add_counts(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def merge_reports(reports: Iterable[ShardReport]) -> ShardReport:
    total = ShardReport()
    for r in reports:
        total = total.merge(r)
    return total


def text_stats(batch: pa.RecordBatch, report: ShardReport) -> None:
    """Count rows, text bytes, null and empty texts."""
    report.rows_in += batch.num_rows
    if TEXT not in batch.schema.names:
        return
    texts = batch.column(TEXT)
    lengths = arrow_ops.binary_length(texts)
    report.null_text += texts.null_count
    report.empty_text += arrow_ops.total(arrow_ops.equal(lengths, 0))
    report.text_bytes += arrow_ops.total(lengths)


@dataclass(frozen=True, kw_only=True)
class Pipeline:
    """An ordered tuple of annotators and filters applied batch by batch."""

    stages: tuple[MapStage, ...] = ()

    def required_columns(self) -> list[str]:
        """Input columns the stages read (before any stage adds columns)."""
        added: set[str] = set()
        needed: list[str] = []
        for st in self.stages:
            for c in st.requires():
                if c not in added and c not in needed:
                    needed.append(c)
            added.update(st.adds())
        return needed

    def validate(self, schema: pa.Schema, source: str = "input") -> pa.Schema:
        """The output schema, or a SchemaError naming the missing column and the ones present."""
        for st in self.stages:
            st.validate(schema, source)
            extra = getattr(st, "schema_metadata", None)  # e.g. influence's example-to-task map
            if extra:
                schema = schema.with_metadata({**(schema.metadata or {}), **extra})
            for name, typ in st.adds().items():
                idx = schema.get_field_index(name)
                if idx >= 0:
                    schema = schema.set(idx, pa.field(name, typ))
                else:
                    schema = schema.append(pa.field(name, typ))
        return schema

    def setup(self, ctx: StageContext) -> None:
        for st in self.stages:
            st.setup(ctx)

    def apply(
        self,
        batch: pa.RecordBatch,
        report: ShardReport,
        rejected: Callable[[pa.RecordBatch], None] | None = None,
    ) -> pa.RecordBatch:
        """Run the stages; rows a filter drops go to `rejected` (with a `filter_reason` column)."""
        for st in self.stages:
            if isinstance(st, Filter):
                res = st.keep(batch)
                for reason, n in res.drops.items():
                    report.drops[reason] = report.drops.get(reason, 0) + n
                mask = pa.array(res.keep, type=pa.bool_())
                if rejected is not None:
                    dropped = batch.filter(arrow_ops.invert(mask))
                    why = (
                        res.reasons[~res.keep]
                        if res.reasons is not None
                        else np.full(dropped.num_rows, st.name, object)
                    )
                    rejected(with_columns(dropped, {REJECT_REASON: pa.array(why.tolist(), pa.string())}))
                batch = batch.filter(mask)
            else:
                cols = st.annotate(batch)
                for name, arr in cols.items():
                    if arr.null_count:
                        report.nulls[name] = report.nulls.get(name, 0) + arr.null_count
                batch = with_columns(batch, cols)
        return batch


@dataclass(frozen=True, kw_only=True)
class RunContext:
    """Where and how a shard function runs (picklable)."""

    columns: Columns = field(default_factory=Columns)
    batch_size: int = 4096
    threads: int = 1
    output: str | None = None
    rejected: str | None = None  # a folder for the rows filters drop
    tally: str | None = None  # an integer column whose values run_shard counts in what it writes
    sidecar: bool = False  # write only the row key and the added columns (curate.io.sidecars)


def output_name(shard: Shard) -> str:
    return f"{shard.stem}.parquet"


def run_shard(pipeline: Pipeline, shard: Shard, ctx: RunContext) -> ShardReport:
    """Map `pipeline` over one shard into `<output>/<shard stem>.parquet` (atomically)."""
    start = time.perf_counter()
    assert ctx.output is not None
    report = ShardReport(shard=shard.name)
    pipeline.setup(StageContext(threads=ctx.threads, shard=shard.path))
    schema = shard_schema(shard, ctx.columns)
    out_schema = pipeline.validate(schema, shard.path)
    if ctx.sidecar:
        out_schema = sidecar_schema(pipeline, schema, out_schema)
    target = Path(ctx.output) / output_name(shard)
    sides: list[ParquetShardWriter] = []  # the rejected rows' shard, opened at the first one
    samples = ShardSamples()

    def reject(rows: pa.RecordBatch) -> None:
        _sample_dropped(rows, samples)
        if ctx.rejected is None:
            return
        if not sides:
            sides.append(ParquetShardWriter(Path(ctx.rejected) / output_name(shard), rows.schema))
        sides[0].write(rows)

    try:
        group = SIDECAR_ROW_GROUP_ROWS if ctx.sidecar else 0
        with ParquetShardWriter(target, out_schema, row_group_rows=group) as writer:
            for n, batch in enumerate(iter_batches(shard, ctx.columns, batch_size=ctx.batch_size)):
                text_stats(batch, report)
                # Dropped rows are copied out only for a rejected folder, or to sample the first batches.
                watch = ctx.rejected is not None or n < SAMPLED_BATCHES
                out = pipeline.apply(batch, report, reject if watch else None)
                samples.keep(out)
                if ctx.sidecar:
                    out = pa.RecordBatch.from_arrays(
                        [row_keys(batch), *(out.column(f.name) for f in list(out_schema)[1:])],
                        schema=out_schema,
                    )
                writer.write(out.cast(out_schema) if out.schema != out_schema else out)
                report.rows_out += out.num_rows
                if ctx.tally is not None:
                    _tally(out, ctx.tally, report)
        for side in sides:
            side.close()
    except BaseException:
        for side in sides:
            side.abort()
        raise
    report.files = [target.name]
    report.extra["samples"] = samples.to_dict()
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


SIDECAR_ROW_GROUP_ROWS = 65_536  # a sidecar row is a key and a few numbers: ~2 MB per row group
SAMPLED_BATCHES = 2  # dropped rows are sampled from a shard's first batches (the rest cost nothing)


def _sample_dropped(rows: pa.RecordBatch, samples: ShardSamples) -> None:
    reasons = rows.column(REJECT_REASON).to_pylist()
    for reason in dict.fromkeys(reasons):
        picked = [i for i, r in enumerate(reasons) if r == reason][:4]
        samples.drop(rows.take(pa.array(picked)), str(reason))


def sidecar_schema(pipeline: Pipeline, schema: pa.Schema, out_schema: pa.Schema) -> pa.Schema:
    """A sidecar's schema: the row key, then the columns the pipeline adds (no filters: a
    sidecar must keep every row, in order, to join back)."""
    if any(isinstance(st, Filter) for st in pipeline.stages):
        raise UsageError("a sidecar keeps every row: --write-sidecar does not go with a filter")
    added = [f for f in out_schema if f.name not in schema.names or f.name in _added(pipeline)]
    key = pa.field(key_name(schema), schema.field(ID).type if ID in schema.names else pa.uint64())
    return pa.schema([key, *added])


def _added(pipeline: Pipeline) -> set[str]:
    return {name for st in pipeline.stages for name in st.adds()}


def _tally(batch: pa.RecordBatch, column: str, report: ShardReport) -> None:
    values = np.asarray(batch.column(column).drop_null().to_numpy(zero_copy_only=False), np.int64)
    counts = np.bincount(values[values >= 0]) if len(values) else np.zeros(0, np.int64)
    before = report.extra.get("tally", np.zeros(0, np.int64))
    size = max(len(before), len(counts))
    report.extra["tally"] = np.pad(before, (0, size - len(before))) + np.pad(counts, (0, size - len(counts)))


def canonicalize_schema(schema: pa.Schema, cols: Columns, source: str) -> pa.Schema:
    return canonical_schema(schema, cols, source)


def run_stream(
    pipeline: Pipeline,
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    write: Callable[[pa.RecordBatch], None],
    *,
    threads: int = 1,
) -> ShardReport:
    """Map `pipeline` over a stream (stdin to stdout)."""
    start = time.perf_counter()
    report = ShardReport(shard="-")
    pipeline.setup(StageContext(threads=threads, shard="-"))
    out_schema = pipeline.validate(schema, "stdin")
    for batch in batches:
        text_stats(batch, report)
        out = pipeline.apply(batch, report)
        write(out.cast(out_schema) if out.schema != out_schema else out)
        report.rows_out += out.num_rows
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report
