"""Jobs, and what a running job's phases see.

A `Job` is data: the datasets it reads, where it writes, and a tuple of named phases (map, fit,
keys, decide, write, driver: `curate.engine.phases`); `curate.engine.run.run_job` runs it. A
phase asks for another's result with `run.get(name)`: computed once, or loaded when an earlier
run saved it, so a killed job resumes wherever it stopped and ends with the same bytes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate import __version__, native
from curate.errors import CurateError, InputDataError, SchemaError
from curate.executors import Executor
from curate.executors.local import threads_per_worker
from curate.io.inputs import Columns, DatasetSpec, Shard
from curate.io.outputs import Manifest
from curate.progress import Progress


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
    samples: dict[str, Any] | None = None  # documents kept and dropped, for the report
    local_output: str | None = None  # where the output's files are here (staging, for a store URI)


class TaskFailed:
    """What a task returns under --keep-going when its shard cannot be read."""

    def __init__(self, message: str) -> None:
        self.message = message


def _guarded(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except (InputDataError, SchemaError) as exc:
        return TaskFailed(exc.message)


def _lost(i: int, message: str) -> TaskFailed:
    return TaskFailed(message)


@dataclass
class JobRun:
    """One run of a job: what its phases see and use."""

    job: Job
    datasets: dict[str, list[Shard]]
    out: Path | None
    manifest: Manifest | None
    work: Path
    executor: Executor
    workers: int
    progress: Progress
    keep_going: bool
    state: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, PhaseTiming] = field(default_factory=dict)
    resumed: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    _nested_seconds: float = 0.0  # time of the phases the running one pulled in (`get`)

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

    def peek(self, name: str) -> Any:
        """The result of phase `name` if this run already has it (computed or loaded), else None."""
        return self.state.get(name)

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
        # A phase's seconds are its own: the phases it pulls in while it runs are timed apart
        outer, self._nested_seconds = self._nested_seconds, 0.0
        start = time.perf_counter()
        try:
            result = phase.run(self)
            phase.save(self, result)
        finally:
            elapsed = time.perf_counter() - start
            own = elapsed - self._nested_seconds
            self._nested_seconds = outer + elapsed
        self.state[name] = result
        timing = self.timings.setdefault(name, PhaseTiming())
        timing.seconds += own
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
        gpus: float = 0.0,
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
            results = self.executor.map(
                _guarded, calls, on_result=done, until=stop if until else None, on_lost=_lost, gpus=gpus
            )
        else:
            results = self.executor.map(fn, tasks, on_result=done, until=stop if until else None, gpus=gpus)
        self.progress.end(phase)
        return [None if isinstance(r, TaskFailed) else r for r in results]

    def add_bytes(self, phase: str, text_bytes: int) -> None:
        self.timings.setdefault(phase, PhaseTiming()).text_bytes += text_bytes

    def timings_dict(self) -> dict[str, dict[str, float]]:
        return {k: v.to_dict(self.workers) for k, v in self.timings.items()}


__all__ = ["CurateError", "Job", "JobResult", "JobRun", "Phase", "PhaseTiming", "TaskFailed"]
