"""`curate reweight`: loss-based sampling log weights (Sow et al. 2025) for offline use, on one
global scale (the whole input's min and max loss), for `curate resample --by reweight_log_weight`.

keys (the loss column, spilled) -> scale (min and max) -> map.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver, Map, ShardResults
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.pipeline import Pipeline
from curate.reweight import ReweightAnnotatorSpec, _check
from curate.stages.reweight import ReweightLogWeight
from curate.steps.scores import read_spilled, require_columns, spill_scores
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class ReweightConfig:
    input: DatasetSpec
    output: str
    by: str
    strategy: str = "linupper"
    temperature: float = 1.0
    delta: float = 1.0
    sidecars: tuple[str, ...] = ()
    write_sidecar: bool = False
    text_column: str = TEXT
    batch_size: int = 4096

    def __post_init__(self) -> None:
        _check(self.strategy, self.temperature, self.delta)


def _scale(run: JobRun) -> dict[str, Any]:
    c: ReweightConfig = run.config
    values = read_spilled(run, "losses", [c.by])[c.by]
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        raise UsageError(f"column {c.by!r} has no finite values")
    spec = ReweightAnnotatorSpec(
        column=c.by,
        strategy=c.strategy,
        temperature=c.temperature,
        delta=c.delta,
        lo=float(finite.min()),
        hi=float(finite.max()),
    )
    return {"spec": spec, "rows": len(values), "finite": len(finite)}


def _summary(run: JobRun) -> dict[str, Any]:
    scale = run.get("scale")
    result: ShardResults = run.get("map")
    return {
        "report": result.total().to_dict(),
        "column": run.config.by,
        "min": scale["spec"].lo,
        "max": scale["spec"].hi,
        "rows": scale["rows"],
        "rows_with_loss": scale["finite"],
        "strategy": run.config.strategy,
    }


def reweight_job(config: ReweightConfig) -> Job:
    return Job(
        kind="reweight",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, sidecars=config.sidecars)},
        output=config.output,
        phases=(
            spill_scores("losses", lambda run: [run.config.by]),
            Driver(name="scale", fn=_scale),
            Map(
                name="map",
                pipeline=lambda run: Pipeline(stages=(ReweightLogWeight(spec=run.get("scale")["spec"]),)),
                sidecar=config.write_sidecar,
            ),
        ),
        summarize=_summary,
        validate=require_columns([config.by]),
        batch_size=config.batch_size,
    )
