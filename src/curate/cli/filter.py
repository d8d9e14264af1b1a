"""`curate filter gopher|c4|fineweb|threshold`: keep the rows that pass, count the others."""

from __future__ import annotations

from typing import Annotated, Any

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
    Sidecars,
    StatsJson,
    SummaryMd,
    TextColumn,
    Workers,
    execute,
    filter_app,
    finish,
    map_command,
    source,
)

Rejected = Annotated[
    str | None, typer.Option(help="Also write dropped documents here, with a filter_reason column.")
]


def _rules_command(rule_set: str) -> Any:
    from curate.stages.rules import RULE_SETS

    listing = "; ".join(r.describe() for r in RULE_SETS[rule_set])

    def command(
        input: Inputs,
        output: Annotated[
            str, typer.Argument(metavar="OUT", help="Output folder for the documents kept, or -.")
        ],
        rejected: Rejected = None,
        sidecar: Sidecars = None,
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
        from curate.stages.heuristics import RuleFilter

        map_command(
            f"filter {rule_set}",
            (RuleFilter(rule_set=rule_set),),
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
            rejected=rejected,
            sidecars=sidecar,
            checks=check,
            report=report,
            summary_md=summary_md,
        )

    command.__doc__ = (
        f"Keep documents that pass the {rule_set} rules; count drops per rule (first failing rule).\n\n"
        f"Rules (kept when true): {listing}. Uses the signal columns of `curate score heuristics` when "
        "present, else computes them."
    )
    return command


for _rule_set in ("gopher", "c4", "fineweb"):
    filter_app.command(_rule_set)(_rules_command(_rule_set))


@filter_app.command("threshold")
def filter_threshold(
    input: Annotated[
        list[str],
        typer.Argument(metavar="IN", help="Input dataset (folders, globs or files, in the order given)."),
    ],
    output: Annotated[str, typer.Argument(metavar="OUT", help="Output folder for the rows kept.")],
    column: Annotated[str, typer.Option(help="Numeric score column.")],
    keep_top: Annotated[
        str | None,
        typer.Option(help="Keep this share of rows with the highest values, e.g. 10% (a global percentile)."),
    ] = None,
    min_value: Annotated[float | None, typer.Option("--min", help="Keep rows with values >= this.")] = None,
    max_value: Annotated[float | None, typer.Option("--max", help="Keep rows with values <= this.")] = None,
    rejected: Annotated[str | None, typer.Option(help="Also write the dropped rows to this folder.")] = None,
    sidecar: Sidecars = None,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    stats_json: StatsJson = None,
    check: Checks = None,
    report: ReportHtml = None,
    summary_md: SummaryMd = None,
    overwrite: Overwrite = False,
    no_progress: NoProgress = False,
    keep_going: KeepGoing = False,
    batch_size: BatchSize = 4096,
) -> None:
    """Keep rows by a score column: a global top share (percentile over the whole input, never per
    shard) and/or a range. Null and NaN scores never pass and are counted, never read as zero."""
    from curate.errors import UsageError
    from curate.jobs.threshold import ThresholdConfig, threshold_job

    top = None
    if keep_top is not None:
        try:
            top = float(keep_top[:-1]) / 100 if keep_top.endswith("%") else float(keep_top)
        except ValueError as exc:
            raise UsageError(f"--keep-top {keep_top!r} is not a share such as 10% or 0.1") from exc
    config = ThresholdConfig(
        input=source(input),
        output=output,
        column=column,
        keep_top=top,
        minimum=min_value,
        maximum=max_value,
        rejected=rejected,
        sidecars=tuple(sidecar or ()),
        text_column=text_column,
        batch_size=batch_size,
    )
    res = execute(
        threshold_job(config),
        workers=workers,
        overwrite=overwrite,
        no_progress=no_progress,
        keep_going=keep_going,
        stats_json=stats_json,
    )
    s = res.summary
    rows = [("rows", f"{s['rows_in']:,} in, {s['rows_out']:,} kept")]
    if s["threshold"] is not None:
        rows.append(("threshold", f"{column} >= {s['threshold']:.6g} (top {keep_top}, global)"))
    rows += [(f"dropped: {k}", f"{v:,}") for k, v in s["drops"].items()]
    render.kv_table("curate filter threshold", rows)
    finish(res, check, report, summary_md)
