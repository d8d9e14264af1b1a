"""`curate bids`: balanced selection over per-example influence (BIDS, METHODS §3).

attribution (per shard: each row's `influence_by_example`, its cost, and mergeable column
moments, spilled) -> decide (columns normalised over the whole input, task influence, the
iterative selection; LESS's top-k on the same input and budget, for the comparison) -> write
(the chosen rows with `bids_rank`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.bids import ColumnMoments, balanced_order, task_influence
from curate.budget import Budget, human_count, parse_budget
from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.errors import SchemaError, UsageError
from curate.io.inputs import Columns, DatasetSpec, Shard, iter_batches, read_schema
from curate.pipeline import RunContext, ShardReport, peak_rss_mb, text_stats
from curate.stages.influence import BY_EXAMPLE, TASKS_KEY
from curate.types import TEXT

COLUMN = BY_EXAMPLE
RANK = "bids_rank"


@dataclass(frozen=True, kw_only=True)
class BidsConfig:
    input: DatasetSpec
    output: str
    budget: str
    mode: str = "argmin_task"
    example_tasks: tuple[str, ...] = ()  # the task of each example, when the input's metadata has none
    tokens_column: str = "n_tokens"
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096


def tasks_of(shard: Shard) -> list[str] | None:
    """The task of each validation example, from a shard's schema metadata (JSONL has none)."""
    meta = read_schema(shard).metadata or {}
    return [str(t) for t in json.loads(meta[TASKS_KEY])] if TASKS_KEY in meta else None


def example_tasks(run: JobRun) -> list[str]:
    """The example-to-task map: given, or the one the input's shards carry (all the same)."""
    c: BidsConfig = run.config
    if c.example_tasks:
        return list(c.example_tasks)
    found: tuple[Shard, list[str]] | None = None
    for s in run.shards():
        tasks = tasks_of(s)
        if tasks is None:
            continue
        if found is not None and tasks != found[1]:
            raise SchemaError(f"{s.path}: its example-to-task map differs from {found[0].path}'s")
        found = found or (s, tasks)
    if found is None:
        raise SchemaError(
            f"{run.shards()[0].path}: no example-to-task map (schema metadata {TASKS_KEY.decode()!r})",
            hint="score with `curate score influence`, or give --example-tasks a,a,b,...",
        )
    return found[1]


def attribution_shard(
    shard: Shard, ctx: RunContext, out_path: str, config: BidsConfig, width: int
) -> ShardReport:
    """Each row's influence on every example (NaN rows: null or non-finite, never selected)."""
    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    rows, costs = [], []
    for batch in iter_batches(shard, ctx.columns, batch_size=ctx.batch_size):
        text_stats(batch, report)
        col = batch.column(COLUMN)
        values = np.full((batch.num_rows, width), np.nan, np.float32)
        present = np.asarray(col.is_valid().to_numpy(zero_copy_only=False))
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        wrong = np.flatnonzero(present & (lengths != width))
        if len(wrong):
            row = int(wrong[0])
            raise SchemaError(
                f"{shard.path}: row {row + report.rows_in - batch.num_rows}: {COLUMN} has {lengths[row]} "
                f"values, and the example-to-task map names {width} examples"
            )
        if present.any():
            flat = pc.list_flatten(col.filter(pa.array(present))).to_numpy(zero_copy_only=False)
            values[present] = np.asarray(flat, np.float32).reshape(-1, width)
        rows.append(values)
        costs.append(_cost(batch, config))
    a = np.concatenate(rows) if rows else np.zeros((0, width), np.float32)
    cost = np.concatenate(costs) if costs else np.zeros(0, np.int64)
    ok = np.isfinite(a).all(axis=1)
    np.savez(out_path, a=a, cost=cost, ok=ok)
    m = ColumnMoments.of(a[ok])
    report.extra = {"n": m.n, "total": m.total, "squares": m.squares, "dropped": int((~ok).sum())}
    report.rows_out = report.rows_in
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def _cost(batch: pa.RecordBatch, config: BidsConfig) -> np.ndarray:
    unit = parse_budget(config.budget).unit
    if unit in ("docs", "fraction"):
        return np.ones(batch.num_rows, np.int64)
    if unit == "bytes":
        return np.asarray(
            pc.fill_null(pc.binary_length(batch.column(TEXT)), 0).to_numpy(zero_copy_only=False), np.int64
        )
    if config.tokens_column in batch.schema.names:
        return np.asarray(
            pc.fill_null(batch.column(config.tokens_column), 0).to_numpy(zero_copy_only=False), np.int64
        )
    from curate.tokens import exact_counter

    return np.asarray(exact_counter("cl100k").count(batch.column(TEXT)), np.int64)


def _decide(run: JobRun) -> Decision:
    c: BidsConfig = run.config
    shards = run.shards()
    spills: ShardResults = run.get("attribution")
    names = example_tasks(run)
    tasks = list(dict.fromkeys(names))
    task_of = np.asarray([tasks.index(t) for t in names])
    moments = ColumnMoments(0, np.zeros(len(names)), np.zeros(len(names)))
    for s in shards:
        e = spills.reports[s.index].extra
        moments = moments.merge(ColumnMoments(e["n"], np.asarray(e["total"]), np.asarray(e["squares"])))
    mean, std = moments.mean_std()
    parts, raw, costs, oks = [], [], [], []
    for s in shards:
        with np.load(spills.paths[s.index], allow_pickle=False) as z:
            a, ok = z["a"], z["ok"]
            costs.append(z["cost"])
        oks.append(ok)
        filled = np.where(ok[:, None], a, mean)
        parts.append(task_influence(filled, mean, std, task_of, len(tasks)))
        raw.append(np.stack([filled[:, task_of == t].mean(axis=1) for t in range(len(tasks))], axis=1))
    influence = np.concatenate(parts) if parts else np.zeros((0, len(tasks)), np.float32)
    cost = np.concatenate(costs).astype(np.float64)
    ok = np.concatenate(oks)
    budget = _resolve(parse_budget(c.budget), cost[ok], int(ok.sum()))
    selectable = np.flatnonzero(ok)
    order = selectable[balanced_order(influence[ok], cost[ok], budget.amount, c.mode)]
    less_raw = np.concatenate(raw).max(axis=1)  # LESS: max over tasks of the mean influence
    less = selectable[_top_by(less_raw[ok], cost[ok], budget.amount)]
    offsets = np.cumsum([0, *[len(o) for o in oks]])
    rows: dict[int, np.ndarray] = {}
    ranks: dict[int, np.ndarray] = {}
    rank_of = np.full(len(cost), -1, np.int64)
    rank_of[order] = np.arange(len(order))
    for s, lo, hi in zip(shards, offsets[:-1], offsets[1:], strict=True):
        local = np.flatnonzero(rank_of[lo:hi] >= 0)
        rows[s.index] = local
        ranks[s.index] = rank_of[lo:hi][local]
    stats = {
        "budget_resolved": {"unit": budget.unit, "amount": budget.amount},
        "selected_docs": len(order),
        "selected_cost": float(cost[order].sum()),
        "budget_error": float((cost[order].sum() - budget.amount) / budget.amount),
        "pool_docs": len(cost),
        "selectable_docs": int(ok.sum()),
        "tasks": {t: int((task_of == i).sum()) for i, t in enumerate(tasks)},
        "per_task": _per_task(tasks, influence, order, less),
    }
    return Decision(rows=rows, columns={RANK: ranks}, stats=stats)


def _resolve(budget: Budget, cost: np.ndarray, rows: int) -> Budget:
    if budget.unit == "fraction":
        budget = Budget(unit="docs", amount=float(np.ceil(budget.amount * rows)))
    total = float(cost.sum())
    if not rows:
        raise UsageError(f"nothing to select: no row has a finite {COLUMN}")
    if budget.amount > total:
        raise UsageError(
            f"budget {human_count(budget.amount)} {budget.unit} is larger than the selectable input: "
            f"{human_count(total)} {budget.unit} in {rows:,} rows",
            hint="lower the budget, or use a percentage such as 15%",
        )
    return budget


def _top_by(score: np.ndarray, cost: np.ndarray, budget: float) -> np.ndarray:
    order = np.lexsort((np.arange(len(score)), -score.astype(np.float64)))
    reach = np.searchsorted(np.cumsum(cost[order]), budget) + 1
    return order[: min(int(reach), len(order))]


def _per_task(tasks: list[str], influence: np.ndarray, bids: np.ndarray, less: np.ndarray) -> dict[str, Any]:
    """Each task's mean normalised influence over each selection, and the share of each
    selection whose strongest task it is."""
    out: dict[str, Any] = {}
    for t, name in enumerate(tasks):
        out[name] = {}
        for label, sel in (("bids", bids), ("less_top_k", less)):
            part = influence[sel]
            out[name][f"{label}_mean_influence"] = float(part[:, t].mean()) if len(sel) else 0.0
            out[name][f"{label}_share"] = float((part.argmax(axis=1) == t).mean()) if len(sel) else 0.0
    return out


def _summary(run: JobRun) -> dict[str, Any]:
    c: BidsConfig = run.config
    stats = dict(run.get("decide").stats)
    return {"budget": str(parse_budget(c.budget)), "mode": c.mode, **stats}


def bids_job(config: BidsConfig) -> Job:
    from curate.bids import MODES

    if config.mode not in MODES:
        raise UsageError(f"--mode must be one of {', '.join(MODES)}, got {config.mode!r}")
    parse_budget(config.budget)

    def validate(dataset: str, shard: Shard, schema: Any) -> None:
        if COLUMN not in schema.names:
            raise SchemaError(
                f"{shard.path}: no {COLUMN!r} column", hint="it is written by `curate score influence`"
            )

    return Job(
        kind="bids",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column)},
        output=config.output,
        phases=(
            Keys(
                name="attribution",
                task=attribution_shard,
                args=lambda run, s: (run.config, len(example_tasks(run))),
            ),
            Decide(name="decide", decide=_decide),
            Write(name="write", dropped_as="not selected"),
        ),
        summarize=_summary,
        validate=validate,
        batch_size=config.batch_size,
    )
