"""The per-shard functions of selection, run by executors: pass 1 spills every row's keys
(`collect_keys`), pass 2 writes the chosen rows (`write_selected`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import SchemaError
from curate.io.inputs import Shard, iter_batches, shard_schema
from curate.io.outputs import ParquetShardWriter
from curate.pipeline import (
    Pipeline,
    RunContext,
    ShardReport,
    output_name,
    peak_rss_mb,
    text_stats,
)
from curate.samples import PER_SHARD, ShardSamples
from curate.stages.base import Selector, StageContext, with_columns
from curate.types import TEXT


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
    shard: Shard,
    ctx: RunContext,
    keys_path: str,
    pipeline: Pipeline,
    selector: Selector,
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
    schema = shard_schema(shard, ctx.columns)
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
    keys, ties, costs, tokens, nbytes, exact, row_values, scores = [], [], [], [], [], [], [], []
    by = getattr(selector, "by", None)  # the score the keys come from, kept for the report
    groups: dict[str, list[int]] = {}
    token_col = getattr(selector, "tokens_column", None)
    for batch in iter_batches(shard, ctx.columns, columns=columns, batch_size=ctx.batch_size):
        text_stats(batch, report)
        out = pipeline.apply(batch, report)
        sk = selector.keys(out)
        keys.append(sk.key)
        if by is not None and by in out.schema.names:
            scores.append(
                np.asarray(
                    pc.fill_null(pc.cast(out.column(by), pa.float64()), np.nan).to_numpy(zero_copy_only=False)
                )
            )
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
        score=cat(scores, np.float64),
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
    dropped_as: str | None = None,
) -> ShardReport:
    """Pass 2: read the shard, keep `rows` (sorted row numbers), re-annotate them, write them.

    `finalize` may add columns to the kept rows (e.g. exact token counts); `summarize` returns
    mergeable statistics of the kept rows (e.g. their n-gram histogram) into `report.extra`;
    `row_columns` are values the driver computed, aligned with `rows`, added as columns. The
    first kept rows, and with `dropped_as` (the reason) the first others, are sampled.
    """
    start = time.perf_counter()
    assert ctx.output is not None
    report = ShardReport(shard=shard.name)
    pipeline.setup(StageContext(threads=ctx.threads, shard=shard.path))
    schema = shard_schema(shard, ctx.columns)
    probe = pipeline.validate(schema, shard.path)
    target = Path(ctx.output) / output_name(shard)
    offset = 0
    rows = np.asarray(rows, dtype=np.int64)
    summaries: list[dict[str, Any]] = []
    groups: dict[str, list[int]] = {}
    out_schema: pa.Schema | None = None
    writer: ParquetShardWriter | None = None
    samples = ShardSamples()
    try:
        for batch in iter_batches(shard, ctx.columns, batch_size=ctx.batch_size):
            n = batch.num_rows
            lo, hi = np.searchsorted(rows, [offset, offset + n])
            offset += n
            report.rows_in += n
            local = rows[lo:hi] - (offset - n)
            if dropped_as is not None and len(samples.dropped.get(dropped_as, [])) < PER_SHARD:
                others = np.ones(n, bool)
                others[local] = False
                pick = np.flatnonzero(others)[:PER_SHARD]
                samples.drop(batch.take(pa.array(pick, pa.int64())), dropped_as)
            if hi == lo:
                continue
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
            samples.keep(out)
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
    report.extra = {"summaries": summaries, "groups": groups, "samples": samples.to_dict()}
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report
