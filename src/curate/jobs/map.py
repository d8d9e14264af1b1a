"""Map jobs: a pipeline of annotators and filters over every shard, one output shard per input
shard (`score importance|heuristics|fasttext|lm`, `featurize`, `filter gopher|c4|fineweb`).
Input and output may be `-` (Arrow IPC on stdin/stdout); rows filters drop may go to a
`rejected` folder with a `filter_reason` column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.engine.job import Job, JobRun
from curate.engine.phases import Map, ShardResults
from curate.errors import UsageError
from curate.io.inputs import STDIO, Columns, DatasetSpec
from curate.pipeline import MapStage, Pipeline
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class MapConfig:
    kind: str
    stages: tuple[MapStage, ...]
    input: DatasetSpec
    output: str
    rejected: str | None = None
    write_sidecar: bool = False  # only the row key and the added columns (a score sidecar)
    sidecars: tuple[str, ...] = ()  # sidecars to join to the input
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if (self.sidecars or self.write_sidecar) and STDIO in (self.input, self.output):
            raise UsageError("sidecars belong to dataset shards: read and write folders, not -")


def _summary(run: JobRun) -> dict[str, Any]:
    result: ShardResults = run.get("map")
    return {"report": result.total().to_dict()}


def map_job(config: MapConfig) -> Job:
    pipeline = Pipeline(stages=config.stages)

    def validate(dataset: str, shard: Any, schema: Any) -> None:
        pipeline.validate(schema, shard.path)

    return Job(
        kind=config.kind,
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column, sidecars=config.sidecars)},
        output=config.output,
        rejected=config.rejected,
        phases=(Map(name="map", pipeline=lambda run: pipeline, sidecar=config.write_sidecar),),
        summarize=_summary,
        validate=validate,
        streams=config.rejected is None and not config.write_sidecar,
        batch_size=config.batch_size,
    )
