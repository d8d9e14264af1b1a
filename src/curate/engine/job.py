"""Jobs and the engine that runs them.

A `Job` is data: the datasets it reads, where it writes, and a tuple of named phases (map, fit,
keys, decide, write, driver: `curate.engine.phases`). `run_job` alone owns what every command
shares: reading and validating the inputs (through `curate.io.inputs`), the output folder's
manifest, resuming finished phases and shards, the executor, progress, timing, corrupt shards
under `--keep-going`, and the summary. A phase asks for another's result with `run.get(name)`;
a phase whose result was saved by an earlier run is loaded instead of run, so a killed job
resumes wherever it stopped and ends with the same bytes.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate import __version__, native
from curate.errors import CurateError, InputDataError, SchemaError
from curate.executors.local import LocalExecutor, resolve_workers, threads_per_worker
from curate.io.inputs import STDIO, Columns, DatasetSpec, Shard, canonical_schema, discover, read_schema
from curate.io.outputs import Manifest
from curate.pipeline import peak_rss_mb
from curate.progress import NoProgress, Progress


class Phase:
    """A named step of a job. `run` computes its result; `load` returns the result an earlier
    run saved (None when there is none); `save` keeps it for a later run."""

    name: str = "phase"
    on_demand: bool = False  # run only when another phase asks for its result (run.get)

    def run(self, run: JobRun) -> Any:
        raise NotImplementedError

    def load(self, run: JobRun) -> Any:
        return None

    def save(self, run: JobRun, result: Any) -> None:
        return None


@dataclass(frozen=True, kw_only=True)
class Job:
    """What a command does, as data. `inputs` maps dataset names ("input" first) to specs;
    `summarize(run)` gives the job's summary once every phase has run."""

    kind: str
    config: Any  # a frozen dataclass: what determines the output
    inputs: dict[str, DatasetSpec]
    columns: dict[str, Columns]
    output: str | None  # a dataset folder (with a manifest), `-` (stdout), or None (an artifact job)
    phases: tuple[Phase, ...]
    summarize: Callable[[JobRun], dict[str, Any]]
    validate: Callable[[str, Shard, Any], None] | None = None  # (dataset, shard, canonical schema)
    rejected: str | None = None  # a second output folder, for the rows a job drops
    streams: bool = False  # a map job that may read stdin and write stdout batch by batch
    hints: dict[str, str] = field(default_factory=dict)  # dataset -> hint for its schema errors
    batch_size: int = 4096

    def phase(self, name: str) -> Phase:
        for p in self.phases:
            if p.name == name:
                return p
        raise KeyError(f"job {self.kind!r} has no phase {name!r}")

    def plan(self, datasets: dict[str, list[Shard]]) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "config": _plain(self.config),
            "inputs": {k: [[s.name, s.size] for s in v] for k, v in datasets.items()},
            "curate_version": __version__,
            "kernel_version": native.KERNEL_VERSION,
        }


def _plain(config: Any) -> Any:
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        return {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple | list):
        return [_plain(x) for x in config]
    if isinstance(config, dict):
        return {str(k): _plain(v) for k, v in config.items()}
    if isinstance(config, str | int | float | bool) or config is None:
        return config
    return repr(config)


@dataclass
class PhaseTiming:
    seconds: float = 0.0
    text_bytes: int = 0

    def to_dict(self, workers: int) -> dict[str, float]:
        mbs = self.text_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        return {
            "seconds": round(self.seconds, 3),
            "text_mb": round(self.text_bytes / 1e6, 3),
            "mb_per_s": round(mbs, 2),
            "mb_per_s_per_worker": round(mbs / max(workers, 1), 2),
        }


@dataclass
class JobResult:
    summary: dict[str, Any]
    output: str | None
    seconds: float
    resumed: list[str]
    failed: dict[str, str]  # shard path -> why it could not be read (--keep-going)
    state: dict[str, Any] = field(default_factory=dict)  # phase results (this process's run only)


class TaskFailed:
    """What a task returns under --keep-going when its shard cannot be read."""

    def __init__(self, message: str) -> None:
        self.message = message


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (InputDataError, SchemaError) as exc:
        return TaskFailed(exc.message)


@dataclass
class JobRun:
    """One run of a job: what its phases see and use."""

    job: Job
    datasets: dict[str, list[Shard]]
    out: Path | None
    manifest: Manifest | None
    work: Path
    executor: LocalExecutor
    workers: int
    progress: Progress
    keep_going: bool
    state: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, PhaseTiming] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def config(self) -> Any:
        return self.job.config

    @property
    def threads(self) -> int:
        return threads_per_worker(self.workers)

    def shards(self, dataset: str = "input") -> list[Shard]:
        """The dataset's shards, less any that could not be read (--keep-going)."""
        return [s for s in self.datasets[dataset] if s.path not in self.failed]

    def columns(self, dataset: str = "input") -> Columns:
        return self.job.columns.get(dataset, Columns())

    def get(self, name: str) -> Any:
        """The result of phase `name`: computed once, or loaded from an earlier run."""
        if name in self.state:
            return self.state[name]
        phase = self.job.phase(name)
        saved = phase.load(self)
        if saved is not None:
            self.state[name] = saved
            self.resumed.append(name)
            return saved
        start = time.perf_counter()
        result = phase.run(self)
        phase.save(self, result)
        self.state[name] = result
        timing = self.timings.setdefault(name, PhaseTiming())
        timing.seconds += time.perf_counter() - start
        return result

    def map(
        self,
        phase: str,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        *,
        shards: Sequence[Shard],
        sizes: Sequence[int] | None = None,
        unit: str = "B",
        until: Callable[[int, Any], bool] | None = None,
        on_result: Callable[[int, Any], None] | None = None,
    ) -> list[Any]:
        """Run `fn(*task)` for every task on the executor (results in task order), with a
        progress bar; `shards[i]` is the shard task i reads. Under --keep-going a task whose
        shard cannot be read returns None and the shard is recorded as failed."""
        sizes = list(sizes) if sizes is not None else [s.size for s in shards]
        self.progress.start(phase, sum(sizes), unit=unit)

        def done(i: int, result: Any) -> None:
            self.progress.advance(phase, sizes[i])
            if isinstance(result, TaskFailed):
                self.failed.setdefault(shards[i].path, result.message)
            elif on_result is not None:
                on_result(i, result)

        def stop(i: int, result: Any) -> bool:
            return until is not None and not isinstance(result, TaskFailed) and until(i, result)

        if self.keep_going:
            calls = [(fn, *t) for t in tasks]
            results = self.executor.map(_guarded, calls, on_result=done, until=stop if until else None)
        else:
            results = self.executor.map(fn, tasks, on_result=done, until=stop if until else None)
        self.progress.end(phase)
        return [None if isinstance(r, TaskFailed) else r for r in results]

    def add_bytes(self, phase: str, text_bytes: int) -> None:
        self.timings.setdefault(phase, PhaseTiming()).text_bytes += text_bytes

    def timings_dict(self) -> dict[str, dict[str, float]]:
        return {k: v.to_dict(self.workers) for k, v in self.timings.items()}


def run_job(
    job: Job,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    keep_going: bool = False,
) -> JobResult:
    """Run `job` to the end, resuming what an earlier run of the same plan finished."""
    start = time.perf_counter()
    progress = progress or NoProgress()
    if job.output == STDIO and not job.streams:
        return _via_folder(job, workers=workers, progress=progress, keep_going=keep_going)
    if job.streams and (job.output == STDIO or job.inputs.get("input") == STDIO):
        from curate.engine.streaming import run_stream_job

        return run_stream_job(job, workers=resolve_workers(workers), overwrite=overwrite)
    with _spooled(job) as job:
        datasets = {name: discover(spec) for name, spec in job.inputs.items()}
        nworkers = resolve_workers(workers)
        failed = _validate(job, datasets, keep_going)
        out = Path(job.output) if job.output is not None else None
        manifest = Manifest(out, job.plan(datasets), overwrite=overwrite) if out is not None else None
        if manifest is not None and manifest.state.get("complete"):
            summary = manifest.state["summary"]
            return JobResult(summary, job.output, 0.0, ["all"], dict(summary.get("failed_shards") or {}))
        if job.rejected is not None:
            Manifest(Path(job.rejected), {**job.plan(datasets), "side": "rejected"}, overwrite=overwrite)
        with _work_dir(manifest) as work, LocalExecutor(nworkers) as executor:
            run = JobRun(
                job=job,
                datasets=datasets,
                out=out,
                manifest=manifest,
                work=work,
                executor=executor,
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
            summary = job.summarize(run)
            summary.setdefault("timings", run.timings_dict())
            summary.setdefault("workers", nworkers)
            summary.setdefault("resumed", run.resumed)
            summary.setdefault("peak_rss_mb", {"driver": round(peak_rss_mb(), 1)})
            if run.failed:
                summary["failed_shards"] = dict(run.failed)
            if manifest is not None:
                manifest.finish(summary)
            if job.rejected is not None:
                Manifest(Path(job.rejected), {**job.plan(datasets), "side": "rejected"}).finish(
                    {**summary, "side": "rejected rows"}
                )
            return JobResult(
                summary, job.output, time.perf_counter() - start, run.resumed, run.failed, run.state
            )


def _validate(job: Job, datasets: dict[str, list[Shard]], keep_going: bool) -> dict[str, str]:
    """Read every shard's schema before any data: missing columns fail here, naming the file."""
    failed: dict[str, str] = {}
    for name, shards in datasets.items():
        for s in shards:
            try:
                schema = canonical_schema(read_schema(s), job.columns.get(name, Columns()), s.path)
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
    if manifest is not None:
        yield manifest.work_dir()
        return
    tmp = Path(tempfile.mkdtemp(prefix="curate-work-"))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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


def _via_folder(job: Job, *, workers: int | None, progress: Progress, keep_going: bool) -> JobResult:
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


__all__ = [
    "CurateError",
    "Job",
    "JobResult",
    "JobRun",
    "Phase",
    "PhaseTiming",
    "TaskFailed",
    "run_job",
]
