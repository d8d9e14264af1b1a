"""`curate train combine`: combination weights learned from a labelled set (scikit-learn: a
logistic regression for a 0/1 label, a linear one otherwise), saved as JSON with the
normalisation statistics of the scores.

keys (the score and label columns, spilled) -> learn (fit and save the weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver
from curate.io.inputs import Columns, DatasetSpec, describe
from curate.stages.combine import Combination, Normalisation, column_stats, learn_weights
from curate.steps.scores import read_spilled, require_columns, spill_scores
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class TrainCombineConfig:
    input: DatasetSpec
    output: str  # the weights file (JSON)
    columns: tuple[str, ...]
    label: str
    lower_is_better: tuple[str, ...] = ()
    normalisation: Normalisation = "zscore"
    seed: int = 0
    sidecars: tuple[str, ...] = ()
    text_column: str = TEXT
    batch_size: int = 4096


def _learn(run: JobRun) -> dict[str, Any]:
    c: TrainCombineConfig = run.config
    names = list(c.columns)
    values = read_spilled(run, "scores", [*names, c.label])
    stats = tuple(column_stats(n, values[n]) for n in names)
    draft = Combination(
        columns=tuple(names),
        weights=tuple(1.0 for _ in names),
        lower_is_better=c.lower_is_better,
        normalisation=c.normalisation,
        stats=stats,
    )
    w, metrics = learn_weights(draft.features(values), values[c.label], seed=c.seed)
    combo = Combination(
        columns=draft.columns,
        weights=tuple(float(x) for x in w),
        lower_is_better=draft.lower_is_better,
        normalisation=draft.normalisation,
        stats=stats,
        provenance={"label": c.label, "data": describe(c.input), **metrics},
    )
    combo.save(c.output)
    return {
        "weights": dict(zip(combo.columns, combo.weights, strict=True)),
        "fit": metrics,
        "output": c.output,
    }


def train_combine_job(config: TrainCombineConfig) -> Job:
    return Job(
        kind="train combine",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, sidecars=config.sidecars)},
        output=None,
        phases=(
            spill_scores("scores", lambda run: [*run.config.columns, run.config.label]),
            Driver(name="learn", fn=_learn),
        ),
        summarize=lambda run: run.get("learn"),
        validate=require_columns([*config.columns, config.label]),
        batch_size=config.batch_size,
    )
