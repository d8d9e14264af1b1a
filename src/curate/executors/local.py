"""The default executor: a process pool over shards on this machine (no services).

Results come back in task order whatever the completion order, so the output does not depend
on the worker count. With one worker, tasks run inline in this process.
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, TypeVar

from curate.executors.ordered import run_in_order
from curate.native import default_threads

T = TypeVar("T")


def resolve_workers(workers: int | None) -> int:
    return default_threads() if workers is None or workers <= 0 else workers


def threads_per_worker(workers: int) -> int:
    return max(1, default_threads() // max(1, workers))


def _call(fn: Callable[..., T], args: tuple[Any, ...]) -> T:
    return fn(*args)


# Modules the fork server imports once, so each worker starts with them loaded (saves ~0.5 s
# of numpy/pyarrow/curate imports per worker).
PRELOAD = ["numpy", "pyarrow", "pyarrow.parquet", "curate.native", "curate.pipeline", "curate.engine.tasks"]


def _context(workers: int) -> Any:
    # Each worker's BLAS gets its share of the cores, set before the fork server (or a spawned
    # worker) imports numpy: OpenBLAS's own threads, spinning beside the other workers, cost
    # `select --diversity` a third of its time on 2 cores. A value the user set is kept; the fork
    # server is started once per process, so the first pool's share holds for later pools.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", str(threads_per_worker(workers)))
    if "forkserver" in mp.get_all_start_methods():
        ctx = mp.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return mp.get_context("spawn")


class WorkerPool:
    """One process pool for a whole run, so workers start (and import) once, not per pass."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: ProcessPoolExecutor | None = None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            # gc.freeze: the preloaded modules live as long as the worker; the collector skips them
            self._executor = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=_context(self.workers), initializer=gc.freeze
            )
        return self._executor

    def terminate(self) -> None:
        """Stop every worker now: partial outputs are temporary files, never results."""
        if self._executor is None:
            return
        for proc in list(getattr(self._executor, "_processes", {}).values()):
            proc.terminate()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.terminate()


def map_tasks(
    fn: Callable[..., T],
    tasks: Sequence[tuple[Any, ...]],
    *,
    workers: int,
    on_result: Callable[[int, T], None] | None = None,
    until: Callable[[int, T], bool] | None = None,
    pool: WorkerPool | None = None,
) -> list[T | None]:
    """Run `fn(*task)` for every task; results are returned in task order.

    `on_result(i, result)` is called in the driver as each task ends (any order).
    `until(i, result)` is called in task order; when it returns True the remaining tasks are
    cancelled (their results stay None), so an early stop does not depend on the worker count.
    """
    results: list[Any] = [None] * len(tasks)
    if not tasks:
        return results
    if workers <= 1 or len(tasks) == 1:
        for i, t in enumerate(tasks):
            results[i] = fn(*t)
            if on_result:
                on_result(i, results[i])
            if until is not None and until(i, results[i]):
                break
        return results
    owned = pool is None
    workers_pool = pool if pool is not None else WorkerPool(min(workers, len(tasks)))
    executor = workers_pool.executor()
    # Submit lazily (a few per worker) so an early stop wastes little work.
    window = max(2 * workers, 4) if until is not None else len(tasks)
    try:
        results, running = run_in_order(
            _PoolBackend(executor, fn, tasks), len(tasks), window=window, on_result=on_result, until=until
        )
    except BaseException:
        workers_pool.terminate()
        raise
    if running:  # an early stop: wait for the cancelled window's running tasks to drain
        wait(running)
    if owned:
        workers_pool.close()
    return results


class _PoolBackend:
    def __init__(
        self, executor: ProcessPoolExecutor, fn: Callable[..., Any], tasks: Sequence[tuple[Any, ...]]
    ):
        self.executor, self.fn, self.tasks = executor, fn, tasks

    def submit(self, i: int) -> Future[Any]:
        return self.executor.submit(_call, self.fn, self.tasks[i])

    def wait(self, pending: list[Future[Any]]) -> set[Future[Any]]:
        return wait(pending, return_when=FIRST_COMPLETED)[0]

    def result(self, handle: Future[Any], i: int) -> Any:
        return handle.result()

    def cancel(self, handle: Future[Any]) -> None:
        handle.cancel()


class LocalExecutor:
    """The executor a job runs on: one process pool for the whole run (started when first needed)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = WorkerPool(workers)

    def map(
        self,
        fn: Callable[..., T],
        tasks: Sequence[tuple[Any, ...]],
        *,
        on_result: Callable[[int, T], None] | None = None,
        until: Callable[[int, T], bool] | None = None,
        on_lost: Callable[[int, str], Any] | None = None,
        gpus: float = 0.0,  # a local task is never lost, only failed
    ) -> list[T | None]:
        return map_tasks(fn, tasks, workers=self.workers, on_result=on_result, until=until, pool=self.pool)

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        self.pool.__exit__(exc_type)


def cpu_count() -> int:
    return os.cpu_count() or 1
