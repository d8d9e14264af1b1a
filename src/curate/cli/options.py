"""What every command shares: the typer apps, the common options, and running a job with
progress bars, the stats JSON and --keep-going's exit status."""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from curate.cli import render
from curate.errors import CurateError

app = typer.Typer(
    name="curate",
    help=(
        "Data curation for LLM pretraining corpora.\n\n"
        "Select the documents of a large pool that best serve a target:\n\n"
        "  curate select pool/ out/ --target wiki.parquet --budget 10B\n\n"
        "or run the stages one by one, chained through Arrow IPC on stdin/stdout (`-`):\n\n"
        "  curate importance fit --target wiki.parquet --raw pool/ -o imp.npz\n\n"
        "  curate score importance --model imp.npz pool/ - | curate resample - out/ --by dsir_log_weight --budget 10B"
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
importance_app = typer.Typer(
    help="Fit DSIR importance models (target vs raw hashed n-gram distributions).", no_args_is_help=True
)
score_app = typer.Typer(
    help="Add score columns to a dataset (one output shard per input shard).", no_args_is_help=True
)
dedup_app = typer.Typer(help="Remove duplicate documents.", no_args_is_help=True)
train_app = typer.Typer(help="Train models used by scorers.", no_args_is_help=True)
filter_app = typer.Typer(
    help="Keep the rows that pass a rule; count the others by reason.", no_args_is_help=True
)
app.add_typer(train_app, name="train")
app.add_typer(filter_app, name="filter")
app.add_typer(importance_app, name="importance")
app.add_typer(dedup_app, name="dedup")
app.add_typer(score_app, name="score")

MANY = "Several (files, folders, quoted globs) are read in the order given."
Inputs = Annotated[
    list[str], typer.Argument(metavar="IN", help=f"Input dataset, or - for Arrow IPC on stdin. {MANY}")
]
Output = Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")]
Workers = Annotated[int, typer.Option("--workers", "-w", help="Worker processes (0: one per core).", min=0)]
# Where the command's shard tasks run. The options' callbacks keep the parsed values here for
# `execute`, so that each command declares them without passing them through its body.
RUN_ON: dict[str, Any] = {"executor": "local", "ray_address": None}


def _keep(name: str) -> Any:
    def keep(value: Any) -> Any:
        RUN_ON[name] = value
        return value

    return keep


ExecutorOpt = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where shard tasks run: local (a process pool here) or ray (Ray tasks on a local Ray, "
        "or the cluster --ray-address or $RAY_ADDRESS names; pip install 'curate[ray]'). The output "
        "is byte-identical either way.",
        callback=_keep("executor"),
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        metavar="ADDR",
        help="With --executor ray: the cluster to join (e.g. ray://head:10001) [default: $RAY_ADDRESS, "
        "or a local Ray started for the run].",
        callback=_keep("ray_address"),
    ),
]
Seed = Annotated[int, typer.Option(help="Seed for every random choice (Gumbel noise, raw-sample order).")]
Overwrite = Annotated[
    bool, typer.Option("--overwrite", help="Replace an output folder that holds another run.")
]
NoProgress = Annotated[
    bool,
    typer.Option(
        "--no-progress", help="No progress bars (they are off anyway when stderr is not a terminal)."
    ),
]
KeepGoing = Annotated[
    bool,
    typer.Option(
        "--keep-going",
        help="A shard that cannot be read is recorded in the report and left out, and the command "
        "exits with status 1 at the end, instead of stopping at once.",
    ),
]
TextColumn = Annotated[str, typer.Option(help="Name of the input's text column.")]
IdColumn = Annotated[
    str | None,
    typer.Option(
        help="Name of the input's document-id column (default: `id` if present, else ids derive from the text)."
    ),
]
Tokenizer = Annotated[
    str | None,
    typer.Option(
        help="Count tokens exactly with this tokenizer: cl100k, o200k, or a Hugging Face tokenizer.json path. "
        "Default: a fast estimate calibrated on the pool against cl100k, with the selection then counted exactly."
    ),
]
BatchSize = Annotated[int, typer.Option(help="Rows per record batch (bounds memory).", min=1)]
Sidecars = Annotated[
    list[str] | None,
    typer.Option(
        "--sidecar",
        help="A folder of score sidecars (from --write-sidecar on this input) whose columns are "
        "joined to every row by shard and row order, the key checked; repeatable.",
    ),
]
WriteSidecar = Annotated[
    bool,
    typer.Option(
        "--write-sidecar",
        help="Write only the row key (id, or a hash of the text) and the new columns, one shard per "
        "input shard, instead of every column: scoring never rewrites the text. Join it back "
        "with --sidecar.",
    ),
]
StatsJson = Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file.")]
Checks = Annotated[
    list[str] | None,
    typer.Option(
        "--check",
        help="A check over the run's stats, e.g. 'kl_reduction >= 0.2' or 'rows_out >= 50% * rows_in' "
        "(repeatable; names are paths into --stats-json; see docs/ci.md). A failed check exits 3, "
        "after the outputs are written.",
    ),
]
ReportHtml = Annotated[
    Path | None,
    typer.Option(
        "--report",
        metavar="FILE.html",
        help="Also write a self-contained HTML report (plots, checks, sample documents kept and "
        "dropped, timings); `curate report OUT` rebuilds it later.",
    ),
]
SummaryMd = Annotated[
    Path | None,
    typer.Option(
        "--summary-md",
        metavar="FILE.md",
        help="Also write a short Markdown summary (key numbers, checks, the report's path); it is "
        "appended to $GITHUB_STEP_SUMMARY too when that is set.",
    ),
]
Device = Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")]


def source(paths: list[str]) -> str | tuple[str, ...]:
    """Positional inputs as a dataset spec: one path (or `-`) as is, several in order."""
    return paths[0] if len(paths) == 1 else tuple(paths)


def choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        from curate.errors import UsageError, did_you_mean

        raise UsageError(
            f"{option} {value!r} is not one of: {', '.join(allowed)}{did_you_mean(value, allowed)}"
        )
    return value


def names(value: str | None) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip()) if value else ()


def execute(
    job: Any,
    *,
    workers: int = 0,
    overwrite: bool = False,
    no_progress: bool = False,
    keep_going: bool = False,
    stats_json: Path | None = None,
) -> Any:
    """Run a job with progress bars on stderr; write the stats JSON; under --keep-going, name the
    shards that could not be read (the caller renders its table first, then `finish`)."""
    from curate.engine.run import run_job

    job, upload = _staged_artifact(job)
    progress = render.RichProgress(not no_progress)
    # The modules and objects of start-up live as long as the process: the cyclic collector
    # need not walk them again at every collection the job's allocations trigger.
    gc.freeze()
    try:
        result = run_job(
            job, workers=workers, overwrite=overwrite, progress=progress, keep_going=keep_going, **RUN_ON
        )
    finally:
        progress.close()
    if upload is not None:
        local, target = upload()
        # the summary names the artifact where it now is, not where it was staged
        result.summary.update({k: target for k, v in result.summary.items() if v == local})
    write_stats(stats_json, result.summary)
    return result


def _staged_artifact(job: Any) -> tuple[Any, Any]:
    """An artifact job (a model file or folder, not a dataset) writing to an object store
    writes into a local staging folder; the returned function uploads what it wrote there (the
    artifact and its sidecars, each through a temporary key) once the job has finished."""
    import dataclasses

    from curate.io.stores import is_uri, location

    target = location(getattr(job.config, "output", "") or "")
    if job.output is not None or not is_uri(target):
        return job, None
    from curate.engine.staging import staging_folder
    from curate.io.stores import upload

    folder = staging_folder(target)
    folder.mkdir(parents=True, exist_ok=True)
    parent, base = target.rstrip("/").rsplit("/", 1)
    staged = dataclasses.replace(job, config=dataclasses.replace(job.config, output=str(folder / base)))

    def send() -> tuple[str, str]:
        names = sorted(
            str(p.relative_to(folder))
            for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).parts[0].startswith(base) and ".tmp-" not in p.name
        )
        upload(str(folder), parent, names)
        render.info(f"uploaded {len(names)} file(s) to {target}")
        return str(folder / base), target

    return staged, send


FAILED_CHECK_EXIT = 3  # curate.checks.FAILED_CHECK_EXIT, without importing it at start-up


def finish(
    result: Any, checks: list[str] | None = None, report: Path | None = None, summary_md: Path | None = None
) -> None:
    """Exit 1 when --keep-going left shards out, after the outputs and the report are written;
    the --check expressions are judged first and exit 3 when one fails (unless shards failed:
    exit 1 wins, as the stats then cover only part of the input)."""
    from curate.cli.publish import publish

    failed_checks = publish(result, checks, report, summary_md)
    if failed_checks and not result.failed:
        raise typer.Exit(FAILED_CHECK_EXIT)
    if result.failed:
        for path, why in result.failed.items():
            render.error(f"{path}: left out ({why})")
        render.error(
            f"{len(result.failed)} input shard(s) could not be read and were left out",
            "the outputs hold the other shards; fix or remove those files and rerun with --overwrite",
        )
        raise typer.Exit(1)


def judge(stats: dict[str, Any], checks: list[str]) -> int:
    """Print each check's verdict with the values it read; the number that failed."""
    from curate.cli.publish import verdicts

    results = verdicts(stats, checks)
    if os.environ.get("GITHUB_STEP_SUMMARY"):  # a GitHub Actions job page shows this file
        from curate.checks import markdown_table

        with open(os.environ["GITHUB_STEP_SUMMARY"], "a", encoding="utf-8") as fh:
            fh.write(markdown_table(results))
    return sum(not r.passed for r in results)


def map_command(
    title: str,
    stages: tuple[Any, ...],
    input: list[str],
    output: str,
    *,
    text_column: str,
    id_column: str | None,
    workers: int,
    overwrite: bool,
    no_progress: bool,
    keep_going: bool,
    batch_size: int,
    stats_json: Path | None = None,
    rejected: str | None = None,
    sidecars: list[str] | None = None,
    write_sidecar: bool = False,
    checks: list[str] | None = None,
    report: Path | None = None,
    summary_md: Path | None = None,
) -> Any:
    """Run a map job (annotators/filters over every shard) and print its table."""
    from curate.jobs.map import MapConfig, map_job

    config = MapConfig(
        kind=title,
        stages=stages,
        input=source(input),
        output=output,
        rejected=rejected,
        sidecars=tuple(sidecars or ()),
        write_sidecar=write_sidecar,
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        map_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    render.stage_table(title, res.summary["report"], res.seconds)
    finish(res, checks, report, summary_md)
    return res


def write_stats(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    from curate.io.outputs import save_bytes
    from curate.io.stores import location

    save_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode())
    render.info(f"stats written to {location(path)}")


def run_app(typer_app: Any, argv: list[str] | None) -> None:
    """Run the CLI: user errors print `error:`/`hint:` and exit 1, never a traceback; usage
    errors exit 2."""
    try:
        typer_app(args=argv, standalone_mode=True)
    except CurateError as exc:
        render.error(exc.message, exc.hint)
        sys.exit(1)
    except KeyboardInterrupt:
        render.error("interrupted", "rerun the same command to resume")
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:  # e.g. a full disk or a permission problem while writing
        where = f"{exc.filename}: " if exc.filename else ""
        render.error(f"{where}{exc.strerror or exc}", "check the path, its permissions and free space")
        sys.exit(1)
