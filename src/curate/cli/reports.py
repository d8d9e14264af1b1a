"""`curate report` (rebuild a finished run's HTML report) and `curate diff` (compare two runs)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli import render
from curate.cli.options import FAILED_CHECK_EXIT, Checks, SummaryMd, app
from curate.errors import UsageError


def _read(where: str) -> bytes | None:
    """A local file's or an object's bytes; None when there is none."""
    from curate.io.stores import is_uri, read_bytes

    if is_uri(where):
        return read_bytes(where)
    try:
        return Path(where).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _manifest(folder: Path | str) -> dict[str, Any]:
    from curate.io.outputs import MANIFEST
    from curate.io.stores import is_uri, location

    where = location(folder)
    if not is_uri(where) and not Path(where).is_dir():
        raise UsageError(
            f"{where}: not a folder", hint="give a curate output folder (it holds _manifest.json)"
        )
    path = f"{where.rstrip('/')}/{MANIFEST}"
    data = _read(path)
    if data is None:
        raise UsageError(f"{where}: no {MANIFEST}; not a curate output folder (or a run that never finished)")
    try:
        state = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable manifest ({exc})") from None
    if not isinstance(state, dict) or not state.get("complete") or "summary" not in state:
        raise UsageError(
            f"{where}: the run has not finished", hint="rerun its command to finish it, then report"
        )
    return state


def stats_of(path: Path | str) -> dict[str, Any]:
    """A stats JSON file or object, or the summary in a run folder's manifest."""
    from curate.io.stores import is_uri, location

    where = location(path)
    if (is_uri(where) and where.endswith("/")) or (not is_uri(where) and Path(where).is_dir()):
        return dict(_manifest(where)["summary"])
    data = _read(where)
    if data is None and is_uri(where):
        return dict(_manifest(where)["summary"])  # a prefix given without its trailing slash
    if data is None:
        raise UsageError(f"{where}: no such file or folder")
    try:
        stats = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: not a stats JSON ({exc})") from None
    if not isinstance(stats, dict):
        raise UsageError(f"{where}: not a stats JSON (a JSON object is expected)")
    return stats


@app.command()
def report(
    run_dir: Annotated[
        Path,
        typer.Argument(metavar="RUN_DIR", help="A finished run's output folder (it holds _manifest.json)."),
    ],
    output: Annotated[
        Path | None,
        typer.Option(
            "-o", "--output", metavar="FILE.html", help="Where to write it [default: RUN_DIR/_report.html]."
        ),
    ] = None,
    check: Checks = None,
    summary_md: SummaryMd = None,
) -> None:
    """Rebuild the HTML report of a finished run from its manifest: the stats, the plan, the
    sample documents and the checks the run judged (or, with --check, these checks instead;
    a failed one exits 3, the report still written)."""
    from curate.cli.publish import as_dicts, verdicts
    from curate.io.outputs import save_bytes
    from curate.reporting.page import render_report

    state = _manifest(run_dir)
    stats = state["summary"]
    checks = as_dicts(verdicts(stats, check)) if check else state.get("checks") or []
    page = render_report(
        stats,
        plan=state.get("plan"),
        samples=state.get("samples"),
        checks=checks,
        command=state.get("command"),
    )
    from curate.io.stores import location

    target = location(output) if output is not None else f"{location(run_dir).rstrip('/')}/_report.html"
    save_bytes(target, page.encode())
    render.info(f"report written to {target}")
    if summary_md is not None:
        from curate.reporting.markdown import summary_markdown

        save_bytes(summary_md, summary_markdown(stats, checks, str(target)).encode())
        render.info(f"summary written to {summary_md}")
    if check and any(not c["passed"] for c in checks):
        raise typer.Exit(FAILED_CHECK_EXIT)


@app.command()
def diff(
    before: Annotated[
        Path, typer.Argument(metavar="A", help="A stats JSON, or a finished run's output folder.")
    ],
    after: Annotated[Path, typer.Argument(metavar="B", help="The run to compare with A, likewise.")],
    all_fields: Annotated[
        bool, typer.Option("--all", help="Also compare timings, memory, workers and what was resumed.")
    ] = False,
    tolerance: Annotated[
        float,
        typer.Option(help="Ignore numbers that moved by at most this relative amount (0.01: 1%).", min=0),
    ] = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the changes as JSON lines.")] = False,
) -> None:
    """Print what moved between two runs' stats: each field that differs, by its path (the same
    paths --check uses), with both values and the change. Exit 0 either way; judge a run with
    --check or `curate check`."""
    from curate.reporting.diff import diff as compare
    from curate.reporting.diff import render_diff

    a, b = stats_of(before), stats_of(after)
    if a.get("schema") != b.get("schema"):
        render.info(
            f"the stats schemas differ ({a.get('schema')} vs {b.get('schema')}): paths may have moved"
        )
    if a.get("kind") != b.get("kind"):
        render.info(f"the runs are different commands ({a.get('kind')} vs {b.get('kind')})")
    changes = compare(a, b, everything=all_fields, tolerance=tolerance)
    if json_out:
        for c in changes:
            sys.stdout.write(json.dumps(c.to_dict(), default=list) + "\n")
        return
    sys.stdout.write(render_diff(changes))
