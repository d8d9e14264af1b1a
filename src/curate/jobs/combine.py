"""`curate score combine`: a weighted sum of normalised scores (Meta-rater style), with the
normalisation statistics taken over the whole input, or read from learned weights.

keys (the score columns, spilled) -> combination (global statistics) -> map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver, Map, ShardResults
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.pipeline import Pipeline
from curate.stages.combine import Combination, CombinedScore, Normalisation, column_stats
from curate.steps.scores import read_spilled, require_columns, spill_scores
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class CombineConfig:
    input: DatasetSpec
    output: str
    columns: tuple[str, ...] = ()
    weights: tuple[float, ...] = ()  # one per column (default: all 1)
    lower_is_better: tuple[str, ...] = ()
    normalisation: Normalisation = "zscore"
    weights_file: str | None = None  # learned weights from `curate train combine`
    output_column: str = "combined_score"
    sidecars: tuple[str, ...] = ()
    write_sidecar: bool = False
    text_column: str = TEXT
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.weights_file is None and not self.columns:
            raise UsageError("name the scores with --columns (or give --weights-file)")


def _combination(run: JobRun) -> Combination:
    c: CombineConfig = run.config
    if c.weights_file is not None:
        return Combination.load(c.weights_file)
    names = list(c.columns)
    values = read_spilled(run, "scores", names)
    return Combination(
        columns=tuple(names),
        weights=c.weights or tuple(1.0 for _ in names),
        lower_is_better=c.lower_is_better,
        normalisation=c.normalisation,
        stats=tuple(column_stats(n, values[n]) for n in names),
    )


def _summary(run: JobRun) -> dict[str, Any]:
    combo: Combination = run.get("combination")
    result: ShardResults = run.get("map")
    return {
        "report": result.total().to_dict(),
        "columns": list(combo.columns),
        "weights": list(combo.weights),
        "lower_is_better": list(combo.lower_is_better),
        "normalisation": combo.normalisation,
        "missing": {st.column: st.missing for st in combo.stats},
        "output_column": run.config.output_column,
    }


def combine_job(config: CombineConfig) -> Job:
    def pipeline(run: JobRun) -> Pipeline:
        return Pipeline(
            stages=(CombinedScore(combination=run.get("combination"), output=config.output_column),)
        )

    return Job(
        kind="score combine",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, sidecars=config.sidecars)},
        output=config.output,
        phases=(
            spill_scores("scores", lambda run: run.config.columns),
            Driver(name="combination", fn=_combination),
            Map(name="map", pipeline=pipeline, sidecar=config.write_sidecar),
        ),
        summarize=_summary,
        validate=require_columns(list(config.columns)),
        batch_size=config.batch_size,
    )
