"""The engine: `run_job` alone owns what every command shares. It reads and validates the
inputs (through `curate.io.inputs`) before any data, opens the output folder's manifest, runs
the job's phases (each resumes what an earlier run finished), owns the executor, progress,
timing and corrupt shards under `--keep-going`, and finishes with the job's summary.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from curate.engine.job import Job, JobResult, JobRun
from curate.engine.phases import Map, ShardResults, Write
from curate.engine.spills import clear_spill_cache
from curate.engine.staging import is_staged, run_staged
from curate.engine.streaming import run_stream_job
from curate.errors import InputDataError, SchemaError
from curate.executors import make_executor
from curate.executors.local import resolve_workers
from curate.io.inputs import STDIO, Columns, Shard, discover, shard_schema
from curate.io.outputs import Manifest
from curate.pipeline import peak_rss_mb
from curate.progress import NoProgress, Progress
from curate.samples import merge as merge_samples
from curate.stats import STATS_HEADER


def run_job(
    job: Job,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    keep_going: bool = False,
    executor: str = "local",
    ray_address: str | None = None,
) -> JobResult:
    """Run `job` to the end, resuming what an earlier run of the same plan finished, on the
    `local` executor (a process pool) or on `ray` (same output bytes)."""
    start = time.perf_counter()
    progress = progress or NoProgress()
    if is_staged(job):  # an object-store output: run into a local staging folder, then upload
        return run_staged(
            run_job,
            job,
            overwrite=overwrite,
            workers=workers,
            progress=progress,
            keep_going=keep_going,
            executor=executor,
            ray_address=ray_address,
        )
    if job.output == STDIO and not job.streams:
        return _via_folder(
            job,
            workers=workers,
            progress=progress,
            keep_going=keep_going,
            executor=executor,
            ray_address=ray_address,
        )
    if job.streams and (job.output == STDIO or job.inputs.get("input") == STDIO):
        return run_stream_job(job, workers=resolve_workers(workers), overwrite=overwrite)
    with _spooled(job) as job:
        datasets = {name: discover(spec) for name, spec in job.inputs.items()}
        nworkers = resolve_workers(workers) if executor == "local" else (workers or 0)
        failed = _validate(job, datasets, keep_going)
        out = Path(job.output) if job.output is not None else None
        manifest = Manifest(out, job.plan(datasets), overwrite=overwrite) if out is not None else None
        if manifest is not None and manifest.state.get("complete"):
            summary = manifest.state["summary"]
            failed_before = dict(summary.get("failed_shards") or {})
            return JobResult(
                summary, job.output, 0.0, ["all"], failed_before, samples=manifest.state.get("samples")
            )
        if job.rejected is not None:
            Manifest(Path(job.rejected), {**job.plan(datasets), "side": "rejected"}, overwrite=overwrite)
        with _work_dir(manifest) as work, make_executor(executor, nworkers, ray_address) as pool:
            nworkers = pool.workers
            run = JobRun(
                job=job,
                datasets=datasets,
                out=out,
                manifest=manifest,
                work=work,
                executor=pool,
                workers=nworkers,
                progress=progress,
                keep_going=keep_going,
            )
            run.failed.update(failed)
            if manifest is not None:
                run.failed.update(manifest.state.get("failed_shards", {}))
            for phase in job.phases:
                if not phase.on_demand:
                    run.get(phase.name)
                if manifest is not None and run.failed:
                    manifest.state["failed_shards"] = dict(run.failed)
                    manifest.save()
            summary = {**STATS_HEADER, "kind": job.kind, **job.summarize(run)}
            summary.setdefault("timings", run.timings_dict())
            summary.setdefault("workers", nworkers)
            summary.setdefault("executor", executor)
            summary.setdefault("resumed", run.resumed)
            summary.setdefault("peak_rss_mb", {"driver": round(peak_rss_mb(), 1)})
            if run.failed:
                summary["failed_shards"] = dict(run.failed)
            samples = _samples(job, run)
            if manifest is not None:
                manifest.finish(summary, samples)
            if job.rejected is not None:
                Manifest(Path(job.rejected), {**job.plan(datasets), "side": "rejected"}).finish(
                    {**summary, "side": "rejected rows"}
                )
            seconds = time.perf_counter() - start
            return JobResult(summary, job.output, seconds, run.resumed, run.failed, run.state, samples)


def _samples(job: Job, run: JobRun) -> dict[str, Any] | None:
    """The documents the job's writing phase kept and dropped first, for the report."""
    for phase in job.phases:
        result = run.state.get(phase.name)
        if isinstance(phase, Map | Write) and isinstance(result, ShardResults):
            return merge_samples(result.reports[i].extra.get("samples") for i in sorted(result.reports))
    return None


def _validate(job: Job, datasets: dict[str, list[Shard]], keep_going: bool) -> dict[str, str]:
    """Read every shard's schema before any data: missing columns fail here, naming the file."""
    failed: dict[str, str] = {}
    for name, shards in datasets.items():
        for s in shards:
            try:
                schema = shard_schema(s, job.columns.get(name, Columns()))
                if job.validate is not None:
                    job.validate(name, s, schema)
            except (InputDataError, SchemaError) as exc:
                if isinstance(exc, SchemaError) and name in job.hints:
                    raise type(exc)(exc.message, hint=job.hints[name]) from None
                if not keep_going or name != "input":
                    raise
                failed[s.path] = exc.message
    if failed and len(failed) == len(datasets["input"]):
        raise InputDataError(
            f"none of the {len(failed)} input shards can be read: {next(iter(failed.values()))}"
        )
    return failed


@contextmanager
def _work_dir(manifest: Manifest | None) -> Iterator[Path]:
    # the spills a job cached are its own: the next job in this process starts without them
    try:
        if manifest is not None:
            yield manifest.work_dir()
            return
        tmp = Path(tempfile.mkdtemp(prefix="curate-work-"))
        try:
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        clear_spill_cache()


@contextmanager
def _spooled(job: Job) -> Iterator[Job]:
    """A job reading stdin reads a copy of it spooled to a temporary Arrow file (read twice)."""
    if job.inputs.get("input") != STDIO:
        yield job
        return
    import pyarrow as pa

    from curate.io.inputs import iter_stdin

    tmp = Path(tempfile.mkdtemp(prefix="curate-stdin-"))
    try:
        schema, batches = iter_stdin(job.columns.get("input", Columns()), raw=True)
        path = tmp / "stdin.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
            for b in batches:
                w.write_batch(b)
        yield dataclasses.replace(job, inputs={**job.inputs, "input": str(path)})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _via_folder(
    job: Job, *, workers: int | None, progress: Progress, keep_going: bool, **executor: Any
) -> JobResult:
    """Run a job whose output is `-` into a temporary folder, then stream its rows to stdout."""
    import pyarrow.parquet as pq

    from curate.io.outputs import StdoutWriter, output_files

    tmp = Path(tempfile.mkdtemp(prefix="curate-out-"))
    try:
        result = run_job(
            dataclasses.replace(job, output=str(tmp / "out")),
            workers=workers,
            overwrite=True,
            progress=progress,
            keep_going=keep_going,
            **executor,
        )
        files = list(output_files(tmp / "out"))
        if files:
            writer = StdoutWriter(pq.read_schema(files[0]))
            for f in files:
                for b in pq.ParquetFile(f).iter_batches():
                    writer.write(b)
            writer.close()
            sys.stdout.flush()
        result.output = STDIO
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
