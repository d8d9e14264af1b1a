"""`curate score heuristics|fasttext|lm|combine` and `curate reweight`: score columns."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    BatchSize,
    Device,
    ExecutorOpt,
    IdColumn,
    Inputs,
    KeepGoing,
    NoProgress,
    Output,
    Overwrite,
    RayAddress,
    Sidecars,
    StatsJson,
    TextColumn,
    Workers,
    WriteSidecar,
    app,
    choice,
    execute,
    finish,
    map_command,
    names,
    score_app,
    source,
)
from curate.io.stores import fetch


@score_app.command("heuristics")
def score_heuristics(
    input: Inputs,
    output: Output,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add Gopher (quality, repetition), C4 and FineWeb signals as columns: gopher_*, c4_*, fineweb_*.

    One pass of the compiled kernel per document; threshold them later with `curate filter`."""
    from curate.stages.heuristics import HeuristicSignals

    map_command(
        "score heuristics",
        (HeuristicSignals(),),
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


@score_app.command("fasttext")
def score_fasttext(
    model: Annotated[Path, typer.Option(help="fastText model from `curate train fasttext` (or DCLM's).")],
    input: Inputs,
    output: Output,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add fasttext_quality: the probability of __label__hq (null for null or empty text)."""
    from curate.stages.quality import FastTextScorer, check_model_file

    model = Path(fetch(model))  # an s3:// model is downloaded once, into the cache
    check_model_file(model)  # fail here with a clear message; workers load it
    map_command(
        "score fasttext",
        (FastTextScorer(model_path=str(model)),),
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


@score_app.command("lm")
def score_lm(
    model: Annotated[
        Path,
        typer.Option(
            help="A local Hugging Face causal-LM folder (loaded offline) or one from `curate train lm`."
        ),
    ],
    input: Inputs,
    output: Output,
    device: Device = "auto",
    max_batch_tokens: Annotated[
        int | None,
        typer.Option(help="Padded tokens per forward pass (default: 2,048 on CPU, 16,384 on CUDA).", min=16),
    ] = None,
    stride: Annotated[
        int | None,
        typer.Option(
            help="Tokens a window advances for long documents (default: half the window; the rest is "
            "context only, never scored twice).",
            min=1,
        ),
    ] = None,
    window: Annotated[
        int | None, typer.Option(help="Window for long documents (default: the model's context).", min=2)
    ] = None,
    el2n: Annotated[bool, typer.Option("--el2n", help="Also add lm_el2n (mean per-token EL2N).")] = False,
    precision: Annotated[
        str, typer.Option(help="auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16 or fp16.")
    ] = "auto",
    workers: Annotated[
        int, typer.Option("--workers", "-w", help="Worker processes (each loads the model).", min=1)
    ] = 1,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 1024,
) -> None:
    """Add lm_loss (mean token cross-entropy), lm_perplexity, lm_tokens (and lm_el2n) per document."""
    from curate.stages.lm import LMScorer, check_model_folder

    model = Path(fetch(model))
    check_model_folder(str(model))  # fail here with a clear message; workers load the model
    scorer = LMScorer(
        model_path=str(model),
        device=device,
        max_batch_tokens=max_batch_tokens,
        window=window,
        stride=stride,
        el2n=el2n,
        precision=precision,
    )
    map_command(
        "score lm",
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


@score_app.command("combine")
def score_combine(
    input: Annotated[
        list[str],
        typer.Argument(metavar="IN", help="Input dataset with the score columns (several in order)."),
    ],
    output: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    columns: Annotated[str | None, typer.Option(help="Score columns to combine, comma-separated.")] = None,
    weights: Annotated[
        str | None, typer.Option(help="One weight per column, comma-separated (default: all 1).")
    ] = None,
    lower_is_better: Annotated[
        str | None, typer.Option(help="Columns whose low values are good (their sign is flipped).")
    ] = None,
    normalisation: Annotated[
        str, typer.Option(help="zscore (pool mean and std) or rank (pool percentile in [0, 1]).")
    ] = "zscore",
    weights_file: Annotated[
        Path | None, typer.Option(help="Learned weights from `curate train combine` (columns, signs, stats).")
    ] = None,
    output_column: Annotated[str, typer.Option(help="Name of the combined column.")] = "combined_score",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    stats_json: StatsJson = None,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add a weighted sum of normalised scores (Meta-rater style). Statistics are global over IN."""
    from curate.errors import UsageError
    from curate.jobs.combine import CombineConfig, combine_job

    choice("--normalisation", normalisation, ("zscore", "rank"))
    try:
        w = tuple(float(x) for x in names(weights))
    except ValueError as exc:
        raise UsageError(f"--weights must be numbers, got {weights!r}") from exc
    config = CombineConfig(
        input=source(input),
        output=output,
        columns=names(columns),
        weights=w,
        lower_is_better=names(lower_is_better),
        normalisation=normalisation,  # type: ignore[arg-type]
        weights_file=fetch(weights_file) if weights_file is not None else None,
        output_column=output_column,
        sidecars=tuple(sidecar or ()),
        write_sidecar=write_sidecar,
        text_column=text_column,
        batch_size=batch_size,
    )
    res = execute(
        combine_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
    render.stage_table("score combine", s["report"], res.seconds)
    for column, missing in s["missing"].items():
        if missing:
            render.info(f"  {missing:,} rows have no {column} (null or NaN): their {output_column} is null")
    render.info(
        "weights: "
        + ", ".join(
            f"{c}={x:+.4g}{' (lower is better)' if c in s['lower_is_better'] else ''}"
            for c, x in zip(s["columns"], s["weights"], strict=True)
        )
        + f"; normalisation {s['normalisation']}"
    )
    finish(res)


@app.command()
def reweight(
    input: Annotated[
        list[str],
        typer.Argument(
            metavar="IN", help="Input dataset with a per-document loss column (several in order)."
        ),
    ],
    output: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    by: Annotated[str, typer.Option(help="Loss column (length-normalised, e.g. lm_loss).")],
    strategy: Annotated[
        str, typer.Option(help="linupper (recommended), quadratic, extremes, upper or uniform.")
    ] = "linupper",
    temperature: Annotated[
        float,
        typer.Option(
            help="Softmax temperature r (1.0 for small models; 0.4 in the paper's larger runs).", min=1e-9
        ),
    ] = 1.0,
    delta: Annotated[float, typer.Option(help="Losses are mapped onto [-delta, delta].", min=1e-9)] = 1.0,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    stats_json: StatsJson = None,
    sidecar: Sidecars = None,
    write_sidecar: WriteSidecar = False,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add reweight_log_weight: loss-based sampling log weights (Sow et al. 2025) for offline use.

    Losses are scaled with the whole input's min and max, so the weights are on one global
    scale; sample with `curate resample OUT SEL --by reweight_log_weight --budget ...`."""
    from curate.jobs.reweight import ReweightConfig, reweight_job

    config = ReweightConfig(
        input=source(input),
        output=output,
        by=by,
        strategy=strategy,
        temperature=temperature,
        delta=delta,
        sidecars=tuple(sidecar or ()),
        write_sidecar=write_sidecar,
        text_column=text_column,
        batch_size=batch_size,
    )
    res = execute(
        reweight_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
    render.stage_table("reweight", s["report"], res.seconds)
    render.info(
        f"{by}: min {s['min']:.4g}, max {s['max']:.4g} over {s['rows_with_loss']:,} rows; "
        f"{s['rows'] - s['rows_with_loss']:,} rows without a loss get a null weight"
    )
    finish(res)
