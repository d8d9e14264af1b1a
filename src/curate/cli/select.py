"""`curate select` and `curate resample`: selection to a budget."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    BatchSize,
    Checks,
    ExecutorOpt,
    IdColumn,
    Inputs,
    KeepGoing,
    NoProgress,
    Output,
    Overwrite,
    RayAddress,
    ReportHtml,
    Seed,
    Sidecars,
    StatsJson,
    SummaryMd,
    TextColumn,
    Tokenizer,
    Workers,
    app,
    choice,
    execute,
    finish,
    source,
)
from curate.io.stores import fetch

Budget = Annotated[
    str,
    typer.Option(
        help="How much to select: 10B, 500M, 25K tokens; docs:1M; bytes:40G; 30% (of the selectable "
        "pool's tokens, exact cl100k unless --tokenizer names another)."
    ),
]
ResampleBudget = Annotated[
    str,
    typer.Option(
        help="How much to select: 10B, 500M, 25K tokens; docs:1M; bytes:40G; 30% (of the selectable "
        "rows' tokens, as --tokens-column counts them)."
    ),
]


@app.command()
def select(
    pool: Annotated[
        list[str],
        typer.Argument(
            metavar="POOL",
            help="Pool: folders, globs or files of Parquet/JSONL(.gz/.zst) shards, in the order given.",
        ),
    ],
    output: Annotated[
        str,
        typer.Argument(
            metavar="OUT", help="Output folder (sharded Parquet, a manifest and the importance model)."
        ),
    ],
    target: Annotated[
        str, typer.Option(help="Target sample the selection should resemble (file, folder or glob).")
    ],
    budget: Budget,
    seed: Seed = 0,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    tokenizer: Tokenizer = None,
    group_by: Annotated[
        str | None, typer.Option(help="Report the share of each value of this column, before and after.")
    ] = None,
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the report as JSON to this file.")
    ] = None,
    check: Checks = None,
    report: ReportHtml = None,
    summary_md: SummaryMd = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    target_text_column: Annotated[
        str | None, typer.Option(help="Text column of the target, if it differs.")
    ] = None,
    top_k: Annotated[
        bool,
        typer.Option(
            "--top-k", help="Deterministic top-k by weight instead of resampling (DSIR's ablation)."
        ),
    ] = False,
    length_norm: Annotated[
        str,
        typer.Option(help="per-chunk: weights rescaled to a 128-word chunk (default); sum: DSIR's raw sum."),
    ] = "per-chunk",
    min_words: Annotated[
        int, typer.Option(help="Documents with fewer words are never selected (DSIR: 100).", min=0)
    ] = 100,
    buckets: Annotated[int, typer.Option(help="Hash buckets of the n-gram model.", min=1)] = 10_000,
    ngram_order: Annotated[int, typer.Option(help="Largest n-gram order (1..8).", min=1, max=8)] = 2,
    raw_features: Annotated[
        str,
        typer.Option(
            help="Raw-pool features to fit on: auto (100k per bucket, sampled row groups), all, or a number."
        ),
    ] = "auto",
    policy: Annotated[
        str, typer.Option(help="cover: stop once the budget is reached (>= budget); under: stay within it.")
    ] = "cover",
    dedup: Annotated[
        str | None, typer.Option(help="Drop duplicates before selecting: exact, or minhash (Jaccard 0.8).")
    ] = None,
    quality: Annotated[
        Path | None,
        typer.Option(help="A fastText quality model: select only from the pool's best --quality-keep."),
    ] = None,
    quality_keep: Annotated[
        str,
        typer.Option(help="Share of the (deduplicated) pool the quality filter keeps (a global percentile)."),
    ] = "50%",
    diversity: Annotated[
        int | None,
        typer.Option(
            help="Cluster the pool into this many k-means clusters (hashed embeddings) and spread the "
            "budget across them; importance resampling runs inside each cluster's share.",
            min=1,
        ),
    ] = None,
    diversity_allocation: Annotated[
        str,
        typer.Option(
            help="With --diversity, each cluster's share of the budget: target (proportional to the "
            "target's documents in the cluster, 5% spread by cluster size so every cluster gets a "
            "little), proportional (to the pool's documents in it) or equal."
        ),
    ] = "target",
    sidecar: Sidecars = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Select the documents of POOL that importance resampling toward TARGET picks, to a budget.

    Fits DSIR's hashed n-gram models of the target and the pool, weights every pool document,
    and draws without replacement (Gumbel top-k, seeded by document id) until the budget is met.
    Output rows keep every input column and gain dsir_log_weight and n_tokens. A rerun of the
    same command resumes a killed run; the output is identical whatever --workers is.
    """
    from curate.jobs.select import SelectConfig, select_job

    choice("--length-norm", length_norm, ("per-chunk", "sum"))
    choice("--policy", policy, ("cover", "under"))
    choice("--diversity-allocation", diversity_allocation, ("target", "proportional", "equal"))
    if dedup is not None:
        choice("--dedup", dedup, ("exact", "minhash"))
    config = SelectConfig(
        pool=source(pool),
        output=output,
        target=target,
        budget=budget,
        seed=seed,
        tokenizer=tokenizer,
        text_column=text_column,
        id_column=id_column,
        target_text_column=target_text_column,
        group_by=group_by,
        buckets=buckets,
        order=ngram_order,
        length_norm=length_norm,  # type: ignore[arg-type]
        min_words=min_words,
        raw_features=raw_features,
        top_k=top_k,
        policy=policy,  # type: ignore[arg-type]
        batch_size=batch_size,
        dedup=dedup,
        quality=fetch(quality) if quality is not None else None,
        quality_keep=quality_keep,
        diversity=diversity,
        diversity_allocation=diversity_allocation,
        sidecars=tuple(sidecar or ()),
    )
    result = execute(
        select_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    render.select_report(result.summary)
    render.info(f"wrote {output} ({result.summary['selected_docs']:,} documents)")
    finish(result, check, report, summary_md)


@app.command()
def resample(
    input: Inputs,
    output: Output,
    by: Annotated[str, typer.Option(help="Log-weight column to sample by (e.g. dsir_log_weight).")],
    budget: ResampleBudget,
    seed: Seed = 0,
    top_k: Annotated[
        bool, typer.Option("--top-k", help="Deterministic top-k by the column, no noise.")
    ] = False,
    temperature: Annotated[
        float, typer.Option(help="Divide log weights by this first (higher: closer to uniform).", min=1e-9)
    ] = 1.0,
    tokens_column: Annotated[
        str, typer.Option(help="Column with token counts, for token budgets.")
    ] = "n_tokens",
    policy: Annotated[
        str, typer.Option(help="cover (reach the budget) or under (stay within it).")
    ] = "cover",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    check: Checks = None,
    report: ReportHtml = None,
    summary_md: SummaryMd = None,
    sidecar: Sidecars = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Weighted sampling without replacement (Gumbel top-k) on a log-weight column, to a budget.

    The noise is a seeded hash of each document's id (or text), so the selection does not
    depend on shard layout, worker count or order. Null or NaN weights are never selected.
    """
    from curate.budget import human_count, parse_budget
    from curate.jobs.resample import ResampleConfig, resample_job
    from curate.stages.resample import GumbelTopK

    choice("--policy", policy, ("cover", "under"))
    sel = GumbelTopK(
        by=by,
        budget=parse_budget(budget),
        seed=seed,
        top_k=top_k,
        temperature=temperature,
        policy=policy,  # type: ignore[arg-type]
        tokens_column=tokens_column,
    )
    config = ResampleConfig(
        input=source(input),
        output=output,
        selector=sel,
        sidecars=tuple(sidecar or ()),
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        resample_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
    render.kv_table(
        "curate resample",
        [
            ("budget", f"{s['budget']} ({s['mode']}, policy {s['policy']}, seed {s['seed']})"),
            (
                "selected",
                f"{s['selected_rows']:,} of {s['pool_rows']:,} rows ({s['selectable_rows']:,} selectable); "
                f"{human_count(s['selected_cost'])} {s['budget_resolved']['unit']}",
            ),
            ("vs budget", f"{s['budget_error'] * 100:+.3f}%"),
            ("seconds", f"{res.seconds:.2f}"),
        ],
    )
    finish(res, check, report, summary_md)
