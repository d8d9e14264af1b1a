"""The per-shard passes of `curate diversify`: each row's cluster, quality, id hash and cost
(and group) for the cut, and an earlier selection's id hashes and scores for a refinement round."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import SchemaError
from curate.io.inputs import Shard, iter_batches, shard_schema
from curate.pipeline import RunContext, ShardReport, peak_rss_mb
from curate.stages.diversity import KMEANS_CLUSTER
from curate.types import ID, TEXT


def keys_unit(
    shard: Shard,
    ctx: RunContext,
    out_path: str,
    quality_column: str | None,
    unit: str,
    tokens_column: str,
    group_by: str | None,
) -> ShardReport:
    """Pass 1: per row the cluster, quality, id hash and cost (and group), spilled to .npz."""
    from curate.stages.resample import document_ids
    from curate.tokens import exact_counter, utf8_lengths

    start = time.perf_counter()
    schema = shard_schema(shard, ctx.columns)
    need = [KMEANS_CLUSTER] + ([quality_column] if quality_column else []) + ([group_by] if group_by else [])
    read = [*need, TEXT] + ([ID] if ID in schema.names or ctx.columns.id else [])
    use_tokens_col = unit == "tokens" and tokens_column in schema.names
    if use_tokens_col:
        read.append(tokens_column)
    counter = exact_counter("cl100k") if unit == "tokens" and not use_tokens_col else None
    clusters, quality, ids, costs = [], [], [], []
    vocab: dict[str, int] = {}
    codes: list[int] = []
    report = ShardReport(shard=shard.name)
    for b in iter_batches(shard, ctx.columns, columns=list(dict.fromkeys(read)), batch_size=ctx.batch_size):
        report.rows_in += b.num_rows
        clusters.append(
            np.asarray(
                pc.fill_null(pc.cast(b.column(KMEANS_CLUSTER), pa.int64()), -1).to_numpy(zero_copy_only=False)
            )
        )
        if quality_column:
            col = b.column(quality_column)
            if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
                raise SchemaError(
                    f"{shard.path}: quality column {quality_column!r} has type {col.type}, not numeric"
                )
            quality.append(
                np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
            )
        ids.append(document_ids(b))
        if unit == "docs":
            costs.append(np.ones(b.num_rows, np.int64))
        elif unit == "bytes":
            costs.append(utf8_lengths(b.column(TEXT)))
        elif use_tokens_col:
            costs.append(
                np.asarray(pc.fill_null(b.column(tokens_column), 0).to_numpy(zero_copy_only=False), np.int64)
            )
        else:
            assert counter is not None
            costs.append(counter.count(b.column(TEXT)))
        if group_by:
            for v in b.column(group_by).to_pylist():
                codes.append(vocab.setdefault(str(v) if v is not None else "(null)", len(vocab)))
    np.savez(
        out_path,
        cluster=np.concatenate(clusters) if clusters else np.zeros(0, np.int64),
        quality=np.concatenate(quality) if quality else np.zeros(0),
        tie=np.concatenate(ids) if ids else np.zeros(0, np.uint64),
        cost=np.concatenate(costs) if costs else np.zeros(0, np.int64),
        group=np.asarray(codes, np.int64),
    )
    report.extra = {"groups": list(vocab)}
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def previous_unit(shard: Shard, ctx: RunContext, out_path: str, score_column: str | None) -> ShardReport:
    """The earlier selection's id hashes and, with `score_column`, its clusters and scores."""
    from curate.stages.resample import document_ids

    report = ShardReport(shard=shard.name)
    names = shard_schema(shard, ctx.columns).names
    ties, clusters, values = [], [], []
    want = [c for c in (ID, TEXT, KMEANS_CLUSTER, score_column) if c and (c in names or c == TEXT)]
    for b in iter_batches(shard, ctx.columns, columns=want, batch_size=ctx.batch_size):
        report.rows_in += b.num_rows
        ties.append(document_ids(b))
        if score_column is not None:
            clusters.append(
                np.asarray(pc.fill_null(b.column(KMEANS_CLUSTER), -1).to_numpy(zero_copy_only=False))
            )
            values.append(
                np.asarray(
                    pc.fill_null(pc.cast(b.column(score_column), pa.float64()), np.nan).to_numpy(
                        zero_copy_only=False
                    )
                )
            )
    np.savez(
        out_path,
        tie=np.concatenate(ties) if ties else np.zeros(0, np.uint64),
        cluster=np.concatenate(clusters) if clusters else np.zeros(0, np.int64),
        value=np.concatenate(values) if values else np.zeros(0),
    )
    return report
