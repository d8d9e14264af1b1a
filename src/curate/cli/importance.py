"""`curate importance fit`, `curate score importance` and `curate featurize`: DSIR's model and
the hashed n-gram features it is built on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    BatchSize,
    ExecutorOpt,
    IdColumn,
    Inputs,
    KeepGoing,
    NoProgress,
    Output,
    Overwrite,
    RayAddress,
    Seed,
    Sidecars,
    StatsJson,
    TextColumn,
    Tokenizer,
    Workers,
    WriteSidecar,
    app,
    choice,
    execute,
    importance_app,
    map_command,
    score_app,
)
from curate.io.stores import fetch


@importance_app.command("fit")
def importance_fit(
    target: Annotated[str, typer.Option(help="Target sample (file, folder or glob).")],
    raw: Annotated[str, typer.Option(help="Raw pool (file, folder or glob).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Model file to write (.npz, with a .json sidecar).")
    ],
    seed: Seed = 0,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    tokenizer: Tokenizer = None,
    text_column: TextColumn = "text",
    target_text_column: Annotated[
        str | None, typer.Option(help="Text column of the target, if it differs.")
    ] = None,
    length_norm: Annotated[
        str, typer.Option(help="per-chunk (default) or sum; stored in the model and used when scoring.")
    ] = "per-chunk",
    min_words: Annotated[
        int, typer.Option(help="Scoring leaves documents with fewer words null.", min=0)
    ] = 100,
    buckets: Annotated[int, typer.Option(help="Hash buckets.", min=1)] = 10_000,
    ngram_order: Annotated[int, typer.Option(help="Largest n-gram order (1..8).", min=1, max=8)] = 2,
    target_laplace: Annotated[
        float, typer.Option(help="Add-alpha smoothing of the target counts (helps tiny targets).", min=0)
    ] = 0.0,
    raw_features: Annotated[
        str, typer.Option(help="auto (100k per bucket, sampled row groups), all, or a number.")
    ] = "auto",
    stats_json: StatsJson = None,
    no_progress: NoProgress = False,
) -> None:
    """Fit the bag-of-hashed-n-grams importance estimator (npz + JSON metadata, never pickle)."""
    from curate.jobs.importance_fit import ImportanceFitConfig, importance_fit_job

    choice("--length-norm", length_norm, ("per-chunk", "sum"))
    config = ImportanceFitConfig(
        target=target,
        pool=raw,
        output=str(output),
        seed=seed,
        tokenizer=tokenizer,
        text_column=text_column,
        target_text_column=target_text_column,
        buckets=buckets,
        order=ngram_order,
        length_norm=length_norm,  # type: ignore[arg-type]
        min_words=min_words,
        target_laplace=target_laplace,
        raw_features=raw_features,
    )
    result = execute(
        importance_fit_job(config), workers=workers, no_progress=no_progress, stats_json=stats_json
    )
    meta = result.summary
    prov = meta["provenance"]
    render.kv_table(
        f"importance model {meta['model']}",
        [
            ("target features", f"{meta['target_features']:,} from {prov['target_docs']:,} docs"),
            (
                "raw features",
                f"{meta['raw_features']:,} from {prov['raw_docs']:,} docs "
                f"({prov['raw_units_used']}/{prov['raw_units_total']} row groups)",
            ),
            ("hash", f"{buckets} buckets, order {ngram_order}, lowercase"),
            ("length treatment", f"{length_norm}, min {min_words} words"),
            ("token estimate", meta["token_calibration"] or "exact"),
        ],
    )
    render.timings_table(meta["timings"])


@score_app.command("importance")
def score_importance(
    model: Annotated[Path, typer.Option(help="Importance model from `curate importance fit`.")],
    input: Inputs,
    output: Output,
    tokenizer: Tokenizer = None,
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
    """Add dsir_log_weight (null for null, empty or too-short text) and n_tokens."""
    from curate.stages.importance import ImportanceModel, ImportanceScorer
    from curate.steps.importance import counter_from_model

    m = ImportanceModel.load(fetch(model))
    counter = counter_from_model(m, tokenizer)
    map_command(
        "score importance",
        (ImportanceScorer(model=m, counter=counter),),
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
    render.info(f"token counter: {counter.describe()}")


@app.command()
def featurize(
    input: Inputs,
    output: Output,
    buckets: Annotated[int, typer.Option(help="Hash buckets (< 2^32).", min=1)] = 10_000,
    ngram_order: Annotated[int, typer.Option(help="Largest n-gram order (1..8).", min=1, max=8)] = 2,
    no_lowercase: Annotated[bool, typer.Option("--no-lowercase", help="Keep case when hashing.")] = False,
    hash_seed: Annotated[int, typer.Option(help="Seed of the 64-bit n-gram hash.", min=0)] = 0,
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
    """Add per-document hashed n-gram features: ngram_buckets (sorted unique ids) and ngram_counts."""
    from curate.native import HashSpec
    from curate.stages.features import NgramFeaturizer

    spec = HashSpec(buckets=buckets, order=ngram_order, lowercase=not no_lowercase, seed=hash_seed)
    map_command(
        "featurize",
        (NgramFeaturizer(spec=spec),),
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
