"""What a command loads: the DSIR pair (`importance fit`, `score importance`) runs without the
modules it does not need, since on small pools their imports are a large share of its cost
(bench/bench_startup.py, docs/benchmarks.md)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Heavy for what they give this pair: pyarrow.compute builds a wrapper per kernel on import
# (~0.03 CPU-s), dateutil comes with pyarrow inferring a Python scalar's type (~3 ms), the
# others are the model stages' libraries.
NOT_NEEDED = (
    "pyarrow.compute",
    "dateutil",
    "torch",
    "transformers",
    "fasttext",
    "sklearn",
    "curate.stages.heuristics",
)

PROBE = """
import atexit, sys
NOT_NEEDED = {not_needed!r}
atexit.register(lambda: print("LOADED", *[m for m in NOT_NEEDED if m in sys.modules], file=sys.__stderr__))
sys.argv = ["curate", *sys.argv[1:]]
from curate.cli.main import main
main()
"""


def loaded_by(*argv: str) -> list[str]:
    code = PROBE.format(not_needed=NOT_NEEDED)
    res = subprocess.run([sys.executable, "-c", code, *argv, "--no-progress"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    line = [x for x in res.stderr.splitlines() if x.startswith("LOADED")][-1]
    return line.split()[1:]


def test_the_dsir_pair_loads_only_what_it_needs(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "w.npz"
    fit = ["importance", "fit", "--target", str(corpus.target), "--raw", str(corpus.pool), "-o", str(model)]
    assert loaded_by(*fit, "-w", "1") == []
    for extra in (["--write-sidecar"], []):  # sidecars, and full rows
        out = tmp_path / f"scored{len(extra)}"
        assert (
            loaded_by(
                "score", "importance", "--model", str(model), str(corpus.pool), str(out), *extra, "-w", "1"
            )
            == []
        )


def test_the_probe_sees_a_loaded_module() -> None:
    """The check above can fail: a module loaded before the command runs is reported."""
    code = PROBE.format(not_needed=NOT_NEEDED).replace(
        "from curate.cli.main", "import pyarrow.compute\nfrom curate.cli.main"
    )
    res = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True, text=True)
    assert "pyarrow.compute" in [x for x in res.stderr.splitlines() if x.startswith("LOADED")][-1].split()


def command_paths() -> list[tuple[str, ...]]:
    """Every leaf command of the full CLI (all families registered), as its words."""
    import typer

    from curate.cli.app import app

    def walk(cmd, path):  # type: ignore[no-untyped-def]
        subs = getattr(cmd, "commands", None)
        if not subs:
            return [path]
        return [p for name, sub in sorted(subs.items()) for p in walk(sub, (*path, name))]

    return walk(typer.main.get_command(app), ())


def test_every_command_is_reachable_from_the_entry_point() -> None:
    """The entry point registers only the families a command line names (cli/main.py): each
    command's own help must still come up through it, under its own name."""
    paths = command_paths()
    assert len(paths) > 20 and ("score", "importance") in paths and ("select",) in paths
    for path in paths:
        res = subprocess.run(
            [sys.executable, "-m", "curate.cli.main", *path, "--help"], capture_output=True, text=True
        )
        assert res.returncode == 0, (path, res.stderr)
        assert " ".join(path) in res.stdout.splitlines()[0], (path, res.stdout[:200])
