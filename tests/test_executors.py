"""Choosing an executor: `--executor local|ray` on every command and `executor = "..."` in a
recipe; without Ray installed, `--executor ray` is a clear error with the install hint. (Runs
on Ray itself are in tests/test_ray.py, marker `ray`.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from curate.cli.app import main
from curate.errors import RecipeError
from curate.recipe import load_recipe
from tests.golden.runs import command_paths

POOL = str(Path(__file__).resolve().parent / "golden" / "corpus" / "pool")


def curate(*argv: str) -> int:
    try:
        main(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


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
