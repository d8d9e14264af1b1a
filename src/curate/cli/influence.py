"""`curate bids`: balanced selection over per-example influence."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    BatchSize,
    Checks,
    Device,
    ExecutorOpt,
    IdColumn,
    Inputs,
    KeepGoing,
    NoProgress,
    Output,
    Overwrite,
    RayAddress,
    ReportHtml,
    Sidecars,
    StatsJson,
    SummaryMd,
    TextColumn,
    Workers,
    WriteSidecar,
    app,
    choice,
    execute,
    finish,
    names,
    score_app,
    source,
)


@app.command()
def bids(
    input: Inputs,
    output: Output,
    budget: Annotated[
        str,
        typer.Option(
            help="How much to select: docs:50K, 10B (tokens), bytes:40G, or 15% (of the selectable rows)."
        ),
    ],
    mode: Annotated[
        str,
        typer.Option(
            help="argmin_task: take the best candidate for the task the selection serves least (the "
            "paper's abstract, read literally); max_gain: the candidate with the largest gain over "
            "the selection's mean on any task (a secondary reading of its Algorithm 1)."
        ),
    ] = "argmin_task",
    example_tasks: Annotated[
        str | None,
        typer.Option(
            help="The task of each validation example, comma-separated in column order, when the "
            "input's metadata (written by `curate score influence`) has no map."
        ),
    ] = None,
    tokens_column: Annotated[
        str, typer.Option(help="Column with token counts, for token budgets (else counted exactly, cl100k).")
    ] = "n_tokens",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    check: Checks = None,
    report: ReportHtml = None,
    summary_md: SummaryMd = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Select with BIDS: every validation example's influence column (`influence_by_example`) is
    normalised over the whole input, averaged per task, and the selection grows one candidate at
    a time toward the task it serves least. Rows keep their columns and gain bids_rank (the
    order they were taken in); the stats compare each task's share with LESS's top-k on the same
    input and budget."""
    from curate.jobs.bids import BidsConfig, bids_job

    choice("--mode", mode, ("argmin_task", "max_gain"))
    config = BidsConfig(
        input=source(input),
        output=output,
        budget=budget,
        mode=mode,
        example_tasks=names(example_tasks),
        tokens_column=tokens_column,
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        bids_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
    rows = [
        ("budget", f"{s['budget']} ({s['mode']})"),
        (
            "selected",
            f"{s['selected_docs']:,} of {s['pool_docs']:,} rows ({s['selectable_docs']:,} selectable)",
        ),
        ("vs budget", f"{s['budget_error'] * 100:+.3f}%"),
    ]
    for task, t in s["per_task"].items():
        rows.append(
            (
                f"task {task}",
                f"share {100 * t['bids_share']:.1f}% (LESS top-k {100 * t['less_top_k_share']:.1f}%), "
                f"mean influence {t['bids_mean_influence']:+.3f} (LESS {t['less_top_k_mean_influence']:+.3f})",
            )
        )
    render.kv_table("curate bids", rows)
    finish(res, check, report, summary_md)


def _read_task(spec: str, text_column: str) -> tuple[str, tuple[str, ...]]:
    from curate.errors import UsageError
    from curate.io.inputs import Columns, discover, iter_batches

    name, sep, path = spec.partition("=")
    if not sep or not name or not path:
        raise UsageError(f"--task {spec!r}: expected NAME=PATH, e.g. --task wiki=wiki_examples.jsonl")
    texts: list[str] = []
    for shard in discover(path):
        for batch in iter_batches(shard, Columns(text=text_column), columns=["text"]):
            texts.extend(t for t in batch.column("text").to_pylist() if t)
    return name, tuple(texts)


@score_app.command("influence")
def score_influence(
    input: Inputs,
    output: Output,
    model: Annotated[
        Path, typer.Option(help="A warm-up model with checkpoints (`curate train lm --checkpoints 4`).")
    ],
    task: Annotated[
        list[str],
        typer.Option(
            help="A target task as NAME=PATH: a dataset of its few validation examples (repeatable; "
            "5-20 examples each is LESS's regime)."
        ),
    ],
    dim: Annotated[int, typer.Option(help="Projected gradient dimension (LESS: 8192).", min=16)] = 8192,
    seed: Annotated[int, typer.Option(help="Seed of the projection (the same for every feature).")] = 0,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Bytes of each document the loss covers (default and most: the model's context).", min=1
        ),
    ] = None,
    keep_features: Annotated[
        bool,
        typer.Option(
            "--keep-features",
            help="Also write influence_features: each candidate's projected feature at every "
            "checkpoint (float16; with --write-sidecar, a sidecar of them). Scoring new tasks on an "
            "input (or --sidecar) that has them needs no backward pass.",
        ),
    ] = False,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    gradient_batch: Annotated[
        int, typer.Option(help="Documents per batched per-example-gradient pass.", min=1)
    ] = 16,
    device: Device = "cpu",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 256,
) -> None:
    """Add LESS's influence of each document on each task: influence_<task> (the mean over the
    task's examples of Σ_c η̄_c·cos(Adam-preconditioned candidate gradient, plain example
    gradient) over the checkpoints), influence (the max over tasks) and influence_by_example
    (one value per example, for `curate bids`), with influence_tokens (bytes the loss covered;
    longer documents are cut to the model's context). Rows whose gradients are not finite get
    nulls."""
    from curate.cli.options import map_command
    from curate.io.stores import fetch
    from curate.stages.influence import InfluenceScorer
    from curate.stages.lm import resolve_device

    scorer = InfluenceScorer(
        warm=fetch(model),
        tasks=tuple(_read_task(t, text_column) for t in task),
        dim=dim,
        seed=seed,
        batch=gradient_batch,
        device=resolve_device(device),
        max_tokens=max_tokens,
        keep_features=keep_features,
    )
    res = map_command(
        "score influence",
        (scorer,),
        input,
        output,
        text_column=text_column,
        id_column=id_column,
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        batch_size=batch_size,
        stats_json=stats_json,
        sidecars=sidecar,
        write_sidecar=write_sidecar,
    )
    del res
