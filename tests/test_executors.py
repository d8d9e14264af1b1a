"""Choosing an executor: `--executor local|ray` on every command and `executor = "..."` in a
recipe; without Ray installed, `--executor ray` is a clear error with the install hint. (Runs
on Ray itself are in tests/test_ray.py, marker `ray`.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.errors import RecipeError
from curate.recipe import load_recipe
from tests.cli import run_main as curate
from tests.golden.runs import command_paths

POOL = str(Path(__file__).resolve().parent / "golden" / "corpus" / "pool")


def test_every_command_with_workers_takes_an_executor() -> None:
    for path, cmd in command_paths().items():
        names = {p.name for p in cmd.params}
        if "workers" in names:
            assert {"executor", "ray_address"} <= names, path


def test_without_ray_the_ray_executor_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    assert curate("filter", "gopher", POOL, str(tmp_path / "o"), "--executor", "ray", "--no-progress") == 1
    err = capsys.readouterr().err
    assert "needs Ray" in err and "pip install 'curate[ray]'" in err and "Traceback" not in err


def test_an_unknown_executor_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert curate("dedup", "exact", POOL, str(tmp_path / "o"), "--executor", "dask", "--no-progress") == 1
    assert "'dask'" in capsys.readouterr().err


def test_a_recipe_sets_the_executor_of_its_steps(tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(f'executor = "ray"\n[[step]]\nrun = "dedup exact"\ninput = "{POOL}"\noutput = "o"\n')
    assert load_recipe(recipe).defaults == {"executor": "ray"}
    recipe.write_text(f'executor = "spark"\n[[step]]\nrun = "dedup exact"\ninput = "{POOL}"\noutput = "o"\n')
    with pytest.raises(RecipeError, match="spark"):
        load_recipe(recipe)


class ShuffledBackend:
    """Tasks finish in an order the test draws: the executors' loop must not care."""

    def __init__(self, order_seed: int) -> None:
        import random

        self.rng = random.Random(order_seed)
        self.cancelled: set[int] = set()

    def submit(self, i: int) -> int:
        return i

    def wait(self, pending: list[int]) -> list[int]:
        return self.rng.sample(pending, k=self.rng.randint(1, len(pending)))

    def result(self, handle: int, i: int) -> int:
        return handle * handle

    def cancel(self, handle: int) -> None:
        self.cancelled.add(handle)


@given(n=st.integers(0, 40), window=st.integers(1, 12), seed=st.integers(0, 10**6), stop=st.integers(0, 50))
def test_results_and_early_stops_do_not_depend_on_completion_order(
    n: int, window: int, seed: int, stop: int
) -> None:
    from curate.executors.ordered import run_in_order

    seen: list[int] = []
    results, running = run_in_order(
        ShuffledBackend(seed),
        n,
        window=window,
        on_result=lambda i, r: seen.append(i),
        until=lambda i, r: i == stop,
    )
    if stop < n:  # everything up to the stop, in task order, and nothing after it
        assert results == [i * i for i in range(stop + 1)] + [None] * (n - stop - 1)
    else:
        assert results == [i * i for i in range(n)] and running == []
    assert len(seen) == len(set(seen))
