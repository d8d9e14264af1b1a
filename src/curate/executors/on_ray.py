"""The Ray executor: the same per-shard functions as the local one, as Ray tasks.

Results come back in task order and `until` is judged in task order, exactly as locally, so a
job's output bytes do not depend on the executor. Each task asks Ray for one CPU; a task whose
worker dies is retried `RETRIES` times, and past that it is lost: under --keep-going its shard
is left out and reported like a corrupt one (`on_lost`), otherwise the run stops naming it.

Ray is optional (`pip install 'curate[ray]'`). With no address, a local Ray is started (or the
one `RAY_ADDRESS` names is joined); outputs are written by the tasks, so on a multi-machine
cluster the output folder must be on storage every node sees.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from curate.errors import CurateError, UsageError

T = TypeVar("T")
RETRIES = 2


class TaskLost(CurateError):
    """A task whose worker died more than RETRIES times."""


def _call(fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    return fn(*args)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--executor ray needs Ray, which is not installed", hint="pip install 'curate[ray]'"
        ) from None
    return ray


class RayExecutor:
    """Runs tasks on a Ray cluster (a local one by default); `workers` caps the tasks in flight
    (0: the cluster's CPUs)."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        ray = _ray()
        self.ray = ray
        self.started = False
        if not ray.is_initialized():
            ray.init(
                address=address,
                include_dashboard=False,
                log_to_driver=False,
                configure_logging=False,
                ignore_reinit_error=True,
            )
            self.started = True
        resources = ray.cluster_resources()
        cpus = int(resources.get("CPU", 1))
        self.cluster_gpus = float(resources.get("GPU", 0))
        self.workers = workers if workers > 0 else max(cpus, 1)
        self.remote = ray.remote(num_cpus=1, max_retries=RETRIES, retry_exceptions=False)(_call)

    def map(
        self,
        fn: Callable[..., T],
        tasks: Sequence[tuple[Any, ...]],
        *,
        on_result: Callable[[int, T], None] | None = None,
        until: Callable[[int, T], bool] | None = None,
        on_lost: Callable[[int, str], Any] | None = None,
        gpus: float = 0.0,
    ) -> list[T | None]:
        """As `curate.executors.local.map_tasks`: results in task order, `until` in task order."""
        ray = self.ray
        # A GPU stage's task asks for a GPU where the cluster has them (each worker then loads
        # its model once and keeps it across tasks); on a cluster without GPUs it runs on CPU.
        remote = self.remote.options(num_gpus=gpus) if gpus and self.cluster_gpus >= gpus else self.remote
        results: list[Any] = [None] * len(tasks)
        finished = [False] * len(tasks)
        pending: dict[Any, int] = {}
        window = max(2 * self.workers, 4) if until is not None else len(tasks)
        submitted = next_in_order = 0
        stopped = False

        def submit() -> None:
            nonlocal submitted
            while submitted < len(tasks) and len(pending) < window:
                pending[remote.remote(fn, tasks[submitted])] = submitted
                submitted += 1

        submit()
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                i = pending.pop(ref)
                results[i] = self._get(ref, i, on_lost)
                finished[i] = True
                if on_result:
                    on_result(i, results[i])
            while not stopped and next_in_order < len(tasks) and finished[next_in_order]:
                if until is not None and until(next_in_order, results[next_in_order]):
                    stopped = True
                next_in_order += 1
            if stopped:
                for ref in pending:
                    ray.cancel(ref)
                for i in range(next_in_order, len(tasks)):
                    results[i] = None
                break
            submit()
        return results

    def _get(self, ref: Any, i: int, on_lost: Callable[[int, str], Any] | None) -> Any:
        from ray.exceptions import RayError, RayTaskError

        try:
            return self.ray.get(ref)
        except RayTaskError as exc:  # the task itself raised: re-raise what it raised
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except RayError as exc:  # the worker or node died, past its retries
            message = f"task lost after {RETRIES} retries ({type(exc).__name__})"
            if on_lost is None:
                raise TaskLost(message, hint="rerun the command: finished shards are kept") from None
            return on_lost(i, message)

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *_: Any) -> None:
        if self.started:  # a Ray this run started ends with it; a joined cluster stays
            self.ray.shutdown()
