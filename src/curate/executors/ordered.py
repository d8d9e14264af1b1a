"""The scheduling loop every executor shares: tasks submitted a window at a time, results kept
by task index, and an early stop (`until`) judged in task order, never in completion order, so
that what a job computes does not depend on the executor or on how many workers it has."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol


class Backend(Protocol):
    """How one executor submits a task, waits for some, reads a result and cancels one."""

    def submit(self, i: int) -> Any: ...

    def wait(self, pending: list[Any]) -> Iterable[Any]: ...

    def result(self, handle: Any, i: int) -> Any: ...

    def cancel(self, handle: Any) -> None: ...


def run_in_order(
    backend: Backend,
    n: int,
    *,
    window: int,
    on_result: Callable[[int, Any], None] | None = None,
    until: Callable[[int, Any], bool] | None = None,
) -> tuple[list[Any], list[Any]]:
    """Results of tasks 0..n-1 (None for those after an early stop), and the handles still
    running when it stopped (cancelled; the caller may wait for them to drain).

    `on_result(i, result)` runs as each task ends (any order); `until(i, result)` in task order,
    and when it returns True the tasks after i are cancelled."""
    results: list[Any] = [None] * n
    finished = [False] * n
    pending: dict[Any, int] = {}
    submitted = next_in_order = 0

    def fill() -> None:
        nonlocal submitted
        while submitted < n and len(pending) < window:
            pending[backend.submit(submitted)] = submitted
            submitted += 1

    fill()
    while pending:
        for handle in backend.wait(list(pending)):
            i = pending.pop(handle)
            results[i] = backend.result(handle, i)
            finished[i] = True
            if on_result:
                on_result(i, results[i])
        while next_in_order < n and finished[next_in_order]:
            if until is not None and until(next_in_order, results[next_in_order]):
                for handle in pending:
                    backend.cancel(handle)
                for j in range(next_in_order + 1, n):
                    results[j] = None
                return results, list(pending)
            next_in_order += 1
        fill()
    return results, []
