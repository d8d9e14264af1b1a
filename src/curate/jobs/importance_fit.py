"""`curate importance fit`: DSIR's bag-of-hashed-n-grams importance model, saved as npz + JSON
(never pickle): the target's histogram, the raw pool's over a seeded sample of row groups, and
a token estimate calibrated on that sample."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.engine.job import Job, JobRun
from curate.io.inputs import Columns
from curate.stages.importance import ImportanceModel
from curate.steps.importance import FitConfig, importance_phases


@dataclass(frozen=True, kw_only=True)
class ImportanceFitConfig(FitConfig):
    output: str  # the model file (.npz, with a .json beside it)

    @property
    def model_path(self) -> Path:
        p = Path(self.output)
        return p if p.suffix == ".npz" else p.with_name(p.name + ".npz")


def _summary(run: JobRun) -> dict[str, Any]:
    model: ImportanceModel = run.get("importance model")
    return {"model": str(run.config.model_path), **model.metadata()}


def importance_fit_job(config: ImportanceFitConfig) -> Job:
    return Job(
        kind="importance fit",
        config=config,
        inputs={"input": config.pool, "target": config.target},
        columns={
            "input": Columns(text=config.text_column, id=config.id_column),
            "target": Columns(text=config.target_text_column or config.text_column),
        },
        output=None,
        phases=importance_phases(lambda run: run.config.model_path),
        summarize=_summary,
        batch_size=config.batch_size,
        hints={"target": "the target's text column is set with --target-text-column"},
    )
