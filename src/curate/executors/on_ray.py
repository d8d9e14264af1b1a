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
from curate.executors.ordered import run_in_order

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
        # A GPU stage's task asks for a GPU where the cluster has them (each worker then loads
        # its model once and keeps it across tasks); on a cluster without GPUs it runs on CPU.
        remote = self.remote.options(num_gpus=gpus) if gpus and self.cluster_gpus >= gpus else self.remote
        window = max(2 * self.workers, 4) if until is not None else len(tasks)
        backend = _RayBackend(self, remote, fn, tasks, on_lost)
        results, _ = run_in_order(backend, len(tasks), window=window, on_result=on_result, until=until)
        return results

    def get(self, ref: Any, i: int, on_lost: Callable[[int, str], Any] | None) -> Any:
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


class _RayBackend:
    def __init__(
        self,
        ex: RayExecutor,
        remote: Any,
        fn: Callable[..., Any],
        tasks: Sequence[tuple[Any, ...]],
        on_lost: Any,
    ):
        self.ex, self.remote, self.fn, self.tasks, self.on_lost = ex, remote, fn, tasks, on_lost

    def submit(self, i: int) -> Any:
        return self.remote.remote(self.fn, self.tasks[i])

    def wait(self, pending: list[Any]) -> list[Any]:
        return list(self.ex.ray.wait(pending, num_returns=1)[0])

    def result(self, handle: Any, i: int) -> Any:
        return self.ex.get(handle, i, self.on_lost)

    def cancel(self, handle: Any) -> None:
        self.ex.ray.cancel(handle)
