"""`curate inspect`, `curate run`, `curate check` and `curate demo`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    ExecutorOpt,
    KeepGoing,
    NoProgress,
    Overwrite,
    RayAddress,
    Sidecars,
    Workers,
    app,
    execute,
    source,
)


@app.command()
def inspect(
    path: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="A dataset (folders, globs, files, in order), or a curate output folder."
        ),
    ],
    sample: Annotated[int, typer.Option(help="Rows to show.", min=0)] = 3,
    text_column: Annotated[str, typer.Option(help="Name of the input's text column.")] = "text",
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Count tokens exactly with this tokenizer (cl100k, o200k, tokenizer.json)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    sidecar: Sidecars = None,
) -> None:
    """Schema, rows, bytes and tokens of a dataset, and a sample of its rows."""
    from curate.inspect import inspect_dataset

    info = inspect_dataset(
        source(path),
        text_column=text_column,
        sample=sample,
        tokenizer=tokenizer,
        sidecars=tuple(sidecar or ()),
    )
    if json_out:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    render.inspect_report(info)


@app.command()
def run(
    recipe: Annotated[
        Path, typer.Argument(metavar="RECIPE.toml", help="A TOML recipe (see recipes/ and docs/recipes.md).")
    ],
    workers: Workers = 0,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="local or ray, for every step that sets none [default: the recipe's top-level "
            "`executor`, or local].",
        ),
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", metavar="ADDR", help="With ray: the cluster to join.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
) -> None:
    """Run the steps of a TOML recipe in order: each step is a command, its keys the command's
    options (strict: an unknown key is an error naming it). Steps resume like their commands."""
    from curate.recipe import load_recipe

    plan = load_recipe(recipe)
    plan.execute(
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        executor=executor,
        ray_address=ray_address,
    )


@app.command()
def check(
    stats: Annotated[
        Path, typer.Argument(metavar="STATS.json", help="A run's stats JSON (--stats-json of any command).")
    ],
    check: Annotated[
        list[str] | None,
        typer.Option("--check", help="A check, e.g. 'kl_reduction >= 0.2' (repeatable).", show_default=False),
    ] = None,
    names: Annotated[bool, typer.Option("--names", help="List the names a check can use, and stop.")] = False,
) -> None:
    """Judge a finished run's stats: exit 0 when every --check holds, 3 when one fails.

    A check compares paths into the stats JSON with numbers (suffixes K, M, B, T and %), with
    and/or/not, parentheses and abs(): 'abs(budget_error) <= 1%', 'rows_out >= 1M',
    'diversity.clusters_covered >= 200 and kl_reduction > 0'. The same checks run after a
    command with its own --check, or after a recipe step with `checks = [...]`.
    """
    from curate.checks import FAILED_CHECK_EXIT, all_names
    from curate.cli.options import judge
    from curate.cli.reports import stats_of
    from curate.errors import UsageError

    data = stats_of(stats)  # a file, an object-store URI, or a finished run's folder
    if names:
        sys.stdout.write("\n".join(all_names(data)) + "\n")
        return
    if not check:
        raise UsageError(
            "give at least one --check", hint="e.g. curate check stats.json --check 'kl_reduction >= 0.2'"
        )
    if judge(data, check):
        raise typer.Exit(FAILED_CHECK_EXIT)


@app.command()
def demo(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Folder for the demo corpus and selection.")
    ] = Path("demo-out"),
    budget: Annotated[str, typer.Option(help="Token budget of the selection.")] = "100K",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    no_progress: NoProgress = False,
) -> None:
    """Build a small real pool from this machine's text (Python docs, docstrings, stdlib code,
    Debian changelogs and copyright files), select toward Python's language reference, report."""
    from curate.jobs.select import SelectConfig, select_job
    from curate.testing import build_corpus, doc_dir

    render.info(f"building a pool from this machine's text in {out}/ ...")
    corpus = build_corpus(out / "corpus", max_bytes_per_domain=1_000_000)
    render.info("pool documents by domain: " + ", ".join(f"{k} {v}" for k, v in corpus.domains.items()))
    if not any(d.startswith("debian") for d in corpus.domains):
        render.info(
            f"no Debian documentation under {doc_dir()}: the pool is Python's own text only "
            "(the language reference, the standard library's docstrings and its source code)"
        )
    config = SelectConfig(
        pool=str(corpus.pool),
        output=str(out / "selected"),
        target=str(corpus.target),
        budget=budget,
        group_by="domain",
    )
    result = execute(select_job(config), workers=workers, overwrite=True, no_progress=no_progress)
    render.select_report(result.summary)
    render.info(f"the selection is in {out / 'selected'}; try: curate inspect {out / 'selected'}")
