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
import pyarrow.compute as pc

from curate.errors import SchemaError
from curate.io.inputs import Columns, Shard, canonical_schema, iter_batches, read_schema
from curate.io.outputs import ParquetShardWriter
from curate.stages.base import Annotator, Filter, Selector, StageContext, with_columns
from curate.types import TEXT

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
    lengths = pc.binary_length(texts)
    report.null_text += texts.null_count
    report.empty_text += int(pc.sum(pc.equal(lengths, 0)).as_py() or 0)
    report.text_bytes += int(pc.sum(lengths).as_py() or 0)


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
                    dropped = batch.filter(pc.invert(mask))
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


def output_name(shard: Shard) -> str:
    return f"{shard.stem}.parquet"


def run_shard(pipeline: Pipeline, shard: Shard, ctx: RunContext) -> ShardReport:
    """Map `pipeline` over one shard into `<output>/<shard stem>.parquet` (atomically)."""
    start = time.perf_counter()
    assert ctx.output is not None
    report = ShardReport(shard=shard.name)
    pipeline.setup(StageContext(threads=ctx.threads, shard=shard.path))
    schema = canonicalize_schema(read_schema(shard), ctx.columns, shard.path)
    out_schema = pipeline.validate(schema, shard.path)
    target = Path(ctx.output) / output_name(shard)
    sides: list[ParquetShardWriter] = []  # the rejected rows' shard, opened at the first one

    def reject(rows: pa.RecordBatch) -> None:
        if not sides:
            assert ctx.rejected is not None
            sides.append(ParquetShardWriter(Path(ctx.rejected) / output_name(shard), rows.schema))
        sides[0].write(rows)

    try:
        with ParquetShardWriter(target, out_schema) as writer:
            for batch in iter_batches(shard, ctx.columns, batch_size=ctx.batch_size):
                text_stats(batch, report)
                out = pipeline.apply(batch, report, reject if ctx.rejected is not None else None)
                writer.write(out.cast(out_schema) if out.schema != out_schema else out)
                report.rows_out += out.num_rows
        for side in sides:
            side.close()
    except BaseException:
        for side in sides:
            side.abort()
        raise
    report.files = [target.name]
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


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


# ---------------------------------------------------------------------------------- selection
def _group_values(batch: pa.RecordBatch, column: str | None) -> list[str] | None:
    if column is None:
        return None
    if column not in batch.schema.names:
        raise SchemaError(f"no group-by column {column!r}; columns present: {', '.join(batch.schema.names)}")
    return [str(v) if v is not None else "(null)" for v in batch.column(column).to_pylist()]


def _add_groups(
    groups: dict[str, list[int]], values: list[str], tokens: np.ndarray, mask: np.ndarray | None = None
) -> None:
    for i, v in enumerate(values):
        if mask is not None and not mask[i]:
            continue
        g = groups.setdefault(v, [0, 0])
        g[0] += 1
        g[1] += int(tokens[i])


def collect_keys(
    pipeline: Pipeline,
    selector: Selector,
    shard: Shard,
    ctx: RunContext,
    keys_path: str,
    group_by: str | None = None,
    exact_sample: Any = None,
    exact_sample_every: int = 64,
    mask_path: str | None = None,
    row_column: str | None = None,
) -> ShardReport:
    """Pass 1: annotate, compute selection keys and costs for every row, spill them to .npz.

    With `row_column` (an integer column the pipeline adds, e.g. a cluster id), its values are
    spilled too (null as -1), for a decision that needs them per row.

    Only the columns the pipeline, the selector and the report need are read. With
    `exact_sample` (a TokenCounter), about one row in `exact_sample_every` (chosen by id hash)
    is also counted exactly, so the driver can correct a token estimate on the selection itself.
    """
    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    pipeline.setup(StageContext(threads=ctx.threads, shard=shard.path))
    schema = canonicalize_schema(read_schema(shard), ctx.columns, shard.path)
    wanted = set(pipeline.required_columns()) | {"id", TEXT}
    wanted |= {c for c in selector.requires() if c in schema.names}
    if group_by:
        wanted.add(group_by)
    columns = [c for c in schema.names if c in wanted]
    if group_by and group_by not in schema.names:
        raise SchemaError(
            f"{shard.path}: no group-by column {group_by!r}; columns present: {', '.join(schema.names)}"
        )
    pipeline.validate(schema, shard.path)
    keys, ties, costs, tokens, nbytes, exact, row_values = [], [], [], [], [], [], []
    groups: dict[str, list[int]] = {}
    token_col = getattr(selector, "tokens_column", None)
    for batch in iter_batches(shard, ctx.columns, columns=columns, batch_size=ctx.batch_size):
        text_stats(batch, report)
        out = pipeline.apply(batch, report)
        sk = selector.keys(out)
        keys.append(sk.key)
        ties.append(sk.tie)
        costs.append(sk.cost)
        t = (
            np.asarray(pc.fill_null(out.column(token_col), 0).to_numpy(zero_copy_only=False), np.int64)
            if token_col and token_col in out.schema.names
            else np.zeros(out.num_rows, np.int64)
        )
        tokens.append(t)
        nbytes.append(
            np.asarray(
                pc.fill_null(pc.binary_length(out.column(TEXT)), 0).to_numpy(zero_copy_only=False), np.int64
            )
        )
        ex = np.full(out.num_rows, -1, np.int64)
        if exact_sample is not None:
            pick = np.flatnonzero((sk.tie % np.uint64(exact_sample_every) == 0) & np.isfinite(sk.key))
            if len(pick):
                ex[pick] = exact_sample.count(out.column(TEXT).take(pa.array(pick)))
        exact.append(ex)
        if row_column is not None:
            row_values.append(
                np.asarray(
                    pc.fill_null(pc.cast(out.column(row_column), pa.int64()), -1).to_numpy(
                        zero_copy_only=False
                    )
                )
            )
        vals = _group_values(out, group_by)
        if vals is not None:
            _add_groups(groups, vals, t)

    def cat(xs, dt):
        return np.concatenate(xs) if xs else np.zeros(0, dt)

    key = cat(keys, np.float64)
    if mask_path is not None:  # rows a prefilter (dedup, quality) removed are never selected
        key = np.where(np.load(mask_path, allow_pickle=False), key, -np.inf)
    np.savez(
        keys_path,
        key=key,
        tie=cat(ties, np.uint64),
        cost=cat(costs, np.int64),
        tokens=cat(tokens, np.int64),
        bytes=cat(nbytes, np.int64),
        exact=cat(exact, np.int64),
        row_col=cat(row_values, np.int64),
    )
    report.extra = {
        "groups": groups,
        "eligible_rows": int(np.isfinite(key).sum()),
        "eligible_tokens": int(cat(tokens, np.int64)[np.isfinite(key)].sum()),
        "pool_tokens": int(cat(tokens, np.int64).sum()),
    }
    report.rows_out = report.rows_in
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def write_selected(
    pipeline: Pipeline,
    shard: Shard,
    rows: np.ndarray,
    ctx: RunContext,
    finalize: Callable[[pa.RecordBatch], pa.RecordBatch] | None = None,
    summarize: Callable[[pa.RecordBatch], dict[str, Any]] | None = None,
    group_by: str | None = None,
    row_columns: dict[str, np.ndarray] | None = None,
) -> ShardReport:
    """Pass 2: read the shard, keep `rows` (sorted row numbers), re-annotate them, write them.

    `finalize` may add columns to the kept rows (e.g. exact token counts); `summarize` returns
    mergeable statistics of the kept rows (e.g. their n-gram histogram) into `report.extra`;
    `row_columns` are values the driver computed, aligned with `rows`, added as columns.
    """
    start = time.perf_counter()
    assert ctx.output is not None
    report = ShardReport(shard=shard.name)
    pipeline.setup(StageContext(threads=ctx.threads, shard=shard.path))
    schema = canonicalize_schema(read_schema(shard), ctx.columns, shard.path)
    probe = pipeline.validate(schema, shard.path)
    target = Path(ctx.output) / output_name(shard)
    offset = 0
    rows = np.asarray(rows, dtype=np.int64)
    summaries: list[dict[str, Any]] = []
    groups: dict[str, list[int]] = {}
    out_schema: pa.Schema | None = None
    writer: ParquetShardWriter | None = None
    try:
        for batch in iter_batches(shard, ctx.columns, batch_size=ctx.batch_size):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            offset += n
            report.rows_in += n
            if hi == lo:
                continue
            local = rows[lo:hi] - (offset - n)
            kept = batch.take(pa.array(local))
            out = pipeline.apply(kept, report)
            for name, values in (row_columns or {}).items():
                out = with_columns(out, {name: pa.array(values[lo:hi])})
            if finalize is not None:
                out = finalize(out)
            if out_schema is None:
                out_schema = out.schema
                writer = ParquetShardWriter(target, out_schema)
            assert writer is not None
            writer.write(out)
            report.rows_out += out.num_rows
            report.text_bytes += int(pc.sum(pc.binary_length(out.column(TEXT))).as_py() or 0)
            if summarize is not None:
                summaries.append(summarize(out))
            vals = _group_values(out, group_by)
            if vals is not None:
                tcol = "n_tokens_estimate" if "n_tokens_estimate" in out.schema.names else "n_tokens"
                tok = np.asarray(pc.fill_null(out.column(tcol), 0).to_numpy(zero_copy_only=False), np.int64)
                _add_groups(groups, vals, tok)
        if writer is not None:
            writer.close()
            report.files = [target.name]
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    del probe
    report.extra = {"summaries": summaries, "groups": groups}
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report
