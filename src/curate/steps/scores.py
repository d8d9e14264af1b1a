"""Score columns spilled for the driver (`score combine`, `train combine`, `reweight`): whole-
input statistics need every value (percentile ranks, min and max), 8 bytes per row per column."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from curate.engine.job import JobRun
from curate.engine.phases import Keys, ShardResults
from curate.errors import SchemaError
from curate.io.inputs import Shard, iter_batches
from curate.pipeline import RunContext, ShardReport, peak_rss_mb
from curate.stages.combine import numeric_column


def score_columns(shard: Shard, ctx: RunContext, out_path: str, names: list[str]) -> ShardReport:
    """The score columns as float64 (NaN where null), spilled."""
    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in iter_batches(shard, ctx.columns, columns=names, batch_size=ctx.batch_size):
        report.rows_in += batch.num_rows
        for n in names:
            parts[n].append(numeric_column(batch, n, shard.path))
    arrays = {f"c{i}": np.concatenate(parts[n]) if parts[n] else np.zeros(0) for i, n in enumerate(names)}
    np.savez(out_path, **arrays)  # type: ignore[arg-type]
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def spill_scores(name: str, names: Any) -> Keys:
    """A phase spilling the columns `names(run)` of every shard."""
    return Keys(name=name, task=score_columns, args=lambda run, s: (list(names(run)),), on_demand=True)


def read_spilled(run: JobRun, phase: str, names: list[str]) -> dict[str, np.ndarray]:
    """All values of the spilled columns, in input order."""
    spills: ShardResults = run.get(phase)
    out: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for s in run.shards():
        with np.load(spills.paths[s.index], allow_pickle=False) as z:
            for i, n in enumerate(names):
                out[n].append(z[f"c{i}"])
    return {n: np.concatenate(v) if v else np.zeros(0) for n, v in out.items()}


def require_columns(names: list[str]) -> Any:
    """A job's `validate`: every shard has the columns."""

    def validate(dataset: str, shard: Shard, schema: Any) -> None:
        missing = [n for n in names if n not in schema.names]
        if missing:
            raise SchemaError(
                f"{shard.path}: no column(s) {', '.join(missing)}; columns present: {', '.join(schema.names)}"
            )

    return validate
