"""`curate dedup exact|minhash`: remove duplicate documents."""

from __future__ import annotations

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
    Overwrite,
    RayAddress,
    ReportHtml,
    Seed,
    StatsJson,
    SummaryMd,
    TextColumn,
    Workers,
    dedup_app,
    execute,
    finish,
    source,
)

Out = Annotated[str, typer.Argument(metavar="OUT", help="Output folder, or - for Arrow IPC on stdout.")]


@dedup_app.command("exact")
def dedup_exact(
    input: Inputs,
    output: Out,
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
    """Drop exact duplicates: texts equal after NFKC, lower-casing and collapsing whitespace.

    Keeps the first occurrence in input order (shards in sorted order, then rows), and adds
    dedup_exact_hash and dedup_exact_copies (how many times the text occurs in the input, so
    duplicated documents can be up-weighted later). Null and empty texts are kept and counted.
    """
    from curate.jobs.dedup_exact import ExactDedupConfig, exact_dedup_job

    config = ExactDedupConfig(
        input=source(input),
        output=output,
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        exact_dedup_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
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
    finish(res, check, report, summary_md)


@dedup_app.command("minhash")
def dedup_minhash(
    input: Inputs,
    output: Out,
    threshold: Annotated[
        float,
        typer.Option(help="Jaccard similarity of word-shingle sets at which documents are near-duplicates."),
    ] = 0.8,
    num_perm: Annotated[
        int, typer.Option(help="MinHash permutations (signature length).", min=1, max=4096)
    ] = 128,
    ngram: Annotated[int, typer.Option(help="Words per shingle.", min=1, max=8)] = 5,
    verify: Annotated[
        str,
        typer.Option(
            help="How candidate pairs are decided: exact (the Jaccard of the two shingle sets, "
            "recomputed from the text of candidate rows: a second read of the shards that hold "
            "them) or signature (the MinHash estimate, ±0.035 at 128 permutations; no second read).",
        ),
    ] = "exact",
    seed: Seed = 0,
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
    """Drop near-duplicates: documents whose word-shingle sets have a Jaccard similarity of at
    least --threshold.

    MinHash signatures and LSH banding find candidate pairs (banded so that a pair at the
    threshold is a candidate with probability >= 0.999), each candidate pair is decided on its
    exact Jaccard (--verify), and near-duplicates are joined into clusters (connected
    components). The first document of each cluster in input order is kept, with
    minhash_cluster and minhash_cluster_size (to up-weight by cluster size later)."""
    from curate.jobs.dedup_minhash import MinHashConfig, minhash_dedup_job

    config = MinHashConfig(
        input=source(input),
        output=output,
        threshold=threshold,
        num_perm=num_perm,
        ngram=ngram,
        seed=seed,
        verify=verify,
        text_column=text_column,
        id_column=id_column,
        batch_size=batch_size,
    )
    res = execute(
        minhash_dedup_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
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
                f"{s['num_perm']} permutations = {s['bands']} bands x {s['rows_per_band']} rows; {s['banded_pairs']:,} banded pairs, {s['candidate_pairs']:,} after the signature screen",
            ),
            (
                "decided on",
                f"{'exact Jaccard' if s['verify'] == 'exact' else 'signature estimate'} >= {s['threshold']}: {s['linked_pairs']:,} pairs linked",
            ),
            ("shingles", s["shingles"]),
            ("seconds", f"{res.seconds:.2f}"),
        ],
    )
    finish(res, check, report, summary_md)
