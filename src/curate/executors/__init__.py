"""Executors schedule shard functions; they never look inside a shard.

`local` (the default) is a process pool on this machine; `ray` runs the same functions as Ray
tasks. Both return results in task order, so a job's output does not depend on which one ran it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")
EXECUTORS = ("local", "ray")


class Executor(Protocol):
    workers: int

    def map(
        self,
        fn: Callable[..., T],
        tasks: Sequence[tuple[Any, ...]],
        *,
        on_result: Callable[[int, T], None] | None = None,
        until: Callable[[int, T], bool] | None = None,
        on_lost: Callable[[int, str], Any] | None = None,
        gpus: float = 0.0,
    ) -> list[T | None]: ...

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: Any) -> None: ...


def make_executor(kind: str, workers: int, address: str | None = None) -> Executor:
    """The executor `--executor` names: `local` (a process pool of `workers`) or `ray`."""
    if kind == "ray":
        from curate.executors.on_ray import RayExecutor

        return RayExecutor(workers, address)
    if kind != "local":
        from curate.errors import UsageError

        raise UsageError(f"--executor must be one of {', '.join(EXECUTORS)}, got {kind!r}")
    from curate.executors.local import LocalExecutor

    return LocalExecutor(workers)
