"""The phases a job is made of, declared as data and run by the engine (`curate.engine.job`).

- `Map`: annotators and filters over every shard, one output shard per input shard.
- `Fit`: a Fittable summarised per unit (Parquet row group, or a whole JSONL/IPC shard) and
  merged in a fixed unit order, optionally stopping early; the merged summary is the result.
- `Keys`: a per-shard function spills what the driver needs (selector keys, hashes, scores).
- `Decide`: the driver turns spills into per-shard row choices (`Decision`), saved for resume.
- `Write`: pass 2, the chosen rows of every shard (and optionally the others, to `rejected`).
- `Driver`: anything else the driver computes (a threshold, k-means passes, a model), with
  optional save/load so that a rerun skips it.

Per-shard phases record each finished shard in the manifest's work folder, so a rerun redoes
only the shards a killed run had not finished.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from curate.engine.job import JobRun, Phase
from curate.engine.records import decode, encode
from curate.io.inputs import Columns, Shard, iter_unit_batches, row_groups
from curate.pipeline import Pipeline, RunContext, ShardReport, merge_reports, run_shard
from curate.stages.base import Fittable
from curate.types import TEXT

PipelineFn = Callable[[JobRun], Pipeline]


def fit_units(shards: list[Shard]) -> list[tuple[Shard, int | None]]:
    """(shard, row group) work units for a fit; JSONL/IPC shards are one unit each."""
    units: list[tuple[Shard, int | None]] = []
    for s in shards:
        n = row_groups(s)
        if n is None:
            units.append((s, None))
        else:
            units.extend((s, rg) for rg in range(n))
    return units


def _shard_phase(
    run: JobRun,
    phase: str,
    shards: list[Shard],
    key: Callable[[Shard], str],
    valid: Callable[[Shard, dict[str, Any]], bool] = lambda s, rec: True,
) -> tuple[dict[int, dict[str, Any]], list[Shard]]:
    """The records of shards an earlier run finished, and the shards still to do."""
    done: dict[int, dict[str, Any]] = {}
    todo = []
    for s in shards:
        rec = run.manifest.shard_done(key(s)) if run.manifest is not None else None
        if rec is not None and valid(s, rec):
            done[s.index] = rec
        else:
            todo.append(s)
    if done:
        run.resumed.append(f"{phase} ({len(done)}/{len(shards)} shards)")
    return done, todo


def _record(run: JobRun, key: str, record: dict[str, Any]) -> None:
    if run.manifest is not None:
        run.manifest.mark_shard(key, record)


@dataclass
class ShardResults:
    """A per-shard phase's result: each shard's report (by shard index) and their sum."""

    reports: dict[int, ShardReport]
    paths: dict[int, str] = field(default_factory=dict)  # Keys: each shard's spill

    def total(self) -> ShardReport:
        return merge_reports(self.reports[i] for i in sorted(self.reports))


# ------------------------------------------------------------------------------------------ map
@dataclass(frozen=True, kw_only=True)
class Map(Phase):
    name: str = "map"
    pipeline: PipelineFn
    tally: str | None = None  # an integer column whose values are counted in what is written
    sidecar: bool = False  # write the row key and the added columns only (curate.io.sidecars)

    def run(self, run: JobRun) -> ShardResults:
        assert run.out is not None
        pipeline = self.pipeline(run)
        shards = run.shards()
        ctx = RunContext(
            columns=run.columns(),
            batch_size=run.job.batch_size,
            threads=run.threads,
            output=str(run.out),
            rejected=run.job.rejected,
            tally=self.tally,
            sidecar=self.sidecar,
        )
        done, todo = _shard_phase(run, self.name, shards, lambda s: f"{self.name}:{s.index}")
        reports = {i: _report(rec) for i, rec in done.items()}

        def finished(i: int, rep: ShardReport) -> None:
            reports[todo[i].index] = rep
            _record(run, f"{self.name}:{todo[i].index}", {"files": rep.files, "report": _dump(rep)})

        gpus = max((st.gpus for st in pipeline.stages), default=0.0)
        run.map(
            self.name,
            run_shard,
            [(pipeline, s, ctx) for s in todo],
            shards=todo,
            on_result=finished,
            gpus=gpus,
        )
        run.add_bytes(self.name, sum(reports[s.index].text_bytes for s in todo if s.index in reports))
        return ShardResults(reports)


def _dump(rep: ShardReport) -> dict[str, Any]:
    return {**rep.to_dict(), "extra": encode(rep.extra)}


def _report(rec: dict[str, Any]) -> ShardReport:
    rep = ShardReport.from_dict(rec["report"])
    rep.extra = decode(rec["report"].get("extra", {}))
    return rep


# ------------------------------------------------------------------------------------------ fit
def fit_unit(
    stage: Fittable[Any],
    shard: Shard,
    row_group: int | None,
    cols: Columns,
    columns: list[str],
    batch_size: int,
) -> Any:
    """One unit's summary: the stage's summaries of its batches, merged in order."""
    total = None
    for b in iter_unit_batches(shard, row_group, cols, columns=columns, batch_size=batch_size):
        s = stage.summarize(b)
        total = s if total is None else stage.merge(total, s)
    return total if total is not None else stage.summarize(_empty(columns))


def _empty(columns: list[str]) -> Any:
    import pyarrow as pa

    return pa.RecordBatch.from_pydict({c: pa.array([], pa.string()) for c in columns})


@dataclass
class FitResult:
    summary: Any
    units_used: int
    units_total: int


@dataclass(frozen=True, kw_only=True)
class Fit(Phase):
    """Summaries merged in unit order (never completion order, so the result does not depend on
    the worker count); `order(run, n)` permutes the n units first, `stop(summary)` ends the fit
    after the unit that made it true."""

    name: str
    stage: Callable[[JobRun], Fittable[Any]]
    dataset: str = "input"
    columns: tuple[str, ...] = (TEXT,)
    order: Callable[[JobRun, int], Any] | None = None
    stop: Callable[[JobRun, Any], bool] | None = None
    on_demand: bool = False

    def run(self, run: JobRun) -> FitResult:
        stage = self.stage(run)
        units = fit_units(run.shards(self.dataset))
        order = list(self.order(run, len(units))) if self.order is not None else list(range(len(units)))
        cols = run.columns(self.dataset)
        tasks = [
            (stage, units[i][0], units[i][1], cols, list(self.columns), run.job.batch_size) for i in order
        ]
        acc: list[Any] = []
        used = 0

        def take(i: int, summary: Any) -> bool:  # called in task order
            nonlocal used
            acc[:] = [summary if not acc else stage.merge(acc[0], summary)]
            used += 1
            return self.stop is not None and self.stop(run, acc[0])

        run.map(
            self.name,
            fit_unit,
            tasks,
            shards=[units[i][0] for i in order],
            sizes=[1] * len(tasks),
            unit="units",
            until=take,
        )
        summary = acc[0] if acc else stage.summarize(_empty(list(self.columns)))
        return FitResult(summary=summary, units_used=used, units_total=len(units))


# ------------------------------------------------------------------------------------------ keys
@dataclass(frozen=True, kw_only=True)
class Keys(Phase):
    """`task(shard, ctx, spill_path, *args(run, shard)) -> ShardReport` on every shard (a
    module-level function, so it can run in a worker), spilling to the work folder."""

    name: str
    task: Callable[..., ShardReport]
    args: Callable[[JobRun, Shard], tuple[Any, ...]] = lambda run, s: ()
    dataset: str = "input"
    on_demand: bool = False

    def run(self, run: JobRun) -> ShardResults:
        shards = run.shards(self.dataset)
        paths = {s.index: str(run.work / f"{self.name}-{s.index:05d}.npz") for s in shards}
        done, todo = _shard_phase(
            run,
            self.name,
            shards,
            lambda s: f"{self.name}:{s.index}",
            valid=lambda s, rec: Path(paths[s.index]).exists(),
        )
        reports = {i: _report(rec) for i, rec in done.items()}
        ctx = RunContext(
            columns=run.columns(self.dataset), batch_size=run.job.batch_size, threads=run.threads
        )

        def finished(i: int, rep: ShardReport) -> None:
            reports[todo[i].index] = rep
            _record(run, f"{self.name}:{todo[i].index}", {"report": _dump(rep)})

        tasks = [(self.task, s, ctx, paths[s.index], *self.args(run, s)) for s in todo]
        run.map(self.name, _call, tasks, shards=todo, on_result=finished)
        run.add_bytes(self.name, sum(reports[s.index].text_bytes for s in todo if s.index in reports))
        return ShardResults({i: reports[i] for i in paths if i in reports}, {i: paths[i] for i in reports})


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


# ------------------------------------------------------------------------------------------ decide
@dataclass
class Decision:
    """Which rows of each shard to write (sorted row numbers, by shard index), values to add to
    them as columns (aligned with the rows), and the decision's statistics (JSON-safe)."""

    rows: dict[int, np.ndarray]
    columns: dict[str, dict[int, np.ndarray]] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)
    rejected: dict[int, np.ndarray] | None = None  # rows for the rejected folder, when there is one

    def row_columns(self, index: int) -> dict[str, np.ndarray] | None:
        return {name: v[index] for name, v in self.columns.items()} or None


@dataclass(frozen=True, kw_only=True)
class Decide(Phase):
    name: str = "decide"
    decide: Callable[[JobRun], Decision]

    def _path(self, run: JobRun) -> Path:
        return run.work / f"{self.name}.npz"

    def run(self, run: JobRun) -> Decision:
        return self.decide(run)

    def save(self, run: JobRun, result: Decision) -> None:
        if run.manifest is None:
            return
        arrays = {f"rows-{i}": r for i, r in result.rows.items()}
        arrays.update({f"rejected-{i}": r for i, r in (result.rejected or {}).items()})
        for name, per in result.columns.items():
            arrays.update({f"col-{name}-{i}": v for i, v in per.items()})
        np.savez(self._path(run), **arrays)  # type: ignore[arg-type]
        run.manifest.set_phase(self.name, {"stats": result.stats, "columns": sorted(result.columns)})

    def load(self, run: JobRun) -> Decision | None:
        rec = run.manifest.phase(self.name) if run.manifest is not None else None
        if rec is None or not self._path(run).exists():
            return None
        with np.load(self._path(run), allow_pickle=False) as z:
            rows = {int(k[5:]): z[k] for k in z.files if k.startswith("rows-")}
            rejected = {int(k[9:]): z[k] for k in z.files if k.startswith("rejected-")} or None
            columns: dict[str, dict[int, np.ndarray]] = {}
            for name in rec["columns"]:
                prefix = f"col-{name}-"
                columns[name] = {int(k[len(prefix) :]): z[k] for k in z.files if k.startswith(prefix)}
        return Decision(rows=rows, columns=columns, stats=rec["stats"], rejected=rejected)


# ------------------------------------------------------------------------------------------ write
@dataclass(frozen=True, kw_only=True)
class Write(Phase):
    """Pass 2: every shard's chosen rows, re-annotated by `pipeline`, with the decision's row
    columns; `finalize` may add columns and `summarize` returns mergeable statistics of the
    written rows (both module-level callables). With `rejected`, the other rows go to the
    job's rejected folder."""

    name: str = "write"
    decision: str = "decide"
    pipeline: PipelineFn = lambda run: Pipeline(stages=())
    finalize: Callable[[JobRun], Any] = lambda run: None
    summarize: Callable[[JobRun], Any] = lambda run: None
    group_by: Callable[[JobRun], str | None] = lambda run: None
    rejected: bool = False
    dropped_as: str = "not selected"  # the reason the report gives for the rows not written

    def run(self, run: JobRun) -> ShardResults:
        assert run.out is not None
        decision: Decision = run.get(self.decision)
        shards = [s for s in run.shards() if s.index in decision.rows]
        reports = self._write(run, self.name, str(run.out), shards, decision.rows, decision)
        run.add_bytes(self.name, sum(r.text_bytes for r in reports.values()))
        if self.rejected:
            assert decision.rejected is not None and run.job.rejected is not None
            self._write(run, f"{self.name} rejected", run.job.rejected, shards, decision.rejected, None)
        return ShardResults(reports)

    def _write(
        self,
        run: JobRun,
        phase: str,
        folder: str,
        shards: list[Shard],
        rows: dict[int, np.ndarray],
        decision: Decision | None,
    ) -> dict[int, ShardReport]:
        from curate.engine.tasks import write_selected

        ctx = RunContext(
            columns=run.columns(), batch_size=run.job.batch_size, threads=run.threads, output=folder
        )
        done, todo = _shard_phase(run, phase, shards, lambda s: f"{phase}:{s.index}")
        reports = {i: _report(rec) for i, rec in done.items()}

        def finished(i: int, rep: ShardReport) -> None:
            reports[todo[i].index] = rep
            _record(run, f"{phase}:{todo[i].index}", {"files": rep.files, "report": _dump(rep)})

        pipeline, extra = self.pipeline(run), (self.finalize(run), self.summarize(run), self.group_by(run))
        tasks = [
            (
                pipeline,
                s,
                rows[s.index],
                ctx,
                *extra,
                decision.row_columns(s.index) if decision else None,
                self.dropped_as if decision else None,
            )
            for s in todo
        ]
        run.map(phase, write_selected, tasks, shards=todo, on_result=finished)
        return reports


# ------------------------------------------------------------------------------------------ driver
@dataclass(frozen=True, kw_only=True)
class Driver(Phase):
    """A driver-side computation; with `save`/`load`, a rerun loads its result instead."""

    name: str
    fn: Callable[[JobRun], Any]
    saver: Callable[[JobRun, Any], None] | None = None
    loader: Callable[[JobRun], Any] | None = None
    on_demand: bool = False

    def run(self, run: JobRun) -> Any:
        return self.fn(run)

    def save(self, run: JobRun, result: Any) -> None:
        if self.saver is not None:
            self.saver(run, result)  # also for an artifact job: the artifact is its output
            if run.manifest is not None:
                run.manifest.set_phase(self.name, {"saved": True})

    def load(self, run: JobRun) -> Any:
        if self.loader is None or run.manifest is None or not run.manifest.phase(self.name):
            return None
        return self.loader(run)
