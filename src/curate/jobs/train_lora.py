"""`curate train lora`: LESS's warm-up of a local Hugging Face causal LM (LoRA adapters, with
checkpoints of the adapters, AdamW's moments and the mean learning rate) for
`curate score influence`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver
from curate.errors import CurateError
from curate.io.inputs import Columns, DatasetSpec, describe
from curate.steps.texts import read_texts
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class TrainLoraConfig:
    data: DatasetSpec
    model: str
    output: str
    settings: Any  # curate.lora.LoraSettings
    text_column: str = TEXT
    batch_size: int = 4096


def _train(run: JobRun) -> Any:
    from curate.lora import train_lora

    c: TrainLoraConfig = run.config
    texts = [t for t in read_texts(run, "input") if t]
    if not texts:
        raise CurateError(f"{describe(c.data)}: no non-empty documents in column {c.text_column!r}")
    return {
        **train_lora(texts, c.model, c.output, c.settings),
        "base": c.model,
        "checkpoints": c.settings.checkpoints,
    }


def train_lora_job(config: TrainLoraConfig) -> Job:
    return Job(
        kind="train lora",
        config=config,
        inputs={"input": config.data},
        columns={"input": Columns(text=config.text_column)},
        output=None,
        phases=(Driver(name="train", fn=_train),),
        summarize=lambda run: run.get("train"),
        batch_size=config.batch_size,
    )
