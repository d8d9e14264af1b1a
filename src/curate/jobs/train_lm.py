"""`curate train lm`: a small byte-level causal transformer trained on target text, for
`curate score lm` (pure torch, no downloads; the folder holds model.safetensors and
curate_lm.json)."""

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
class TrainLMConfig:
    data: DatasetSpec
    output: str
    context: int = 256
    dim: int = 128
    layers: int = 4
    heads: int = 4
    steps: int = 2000
    train_batch: int = 32
    lr: float = 1e-3
    holdout: float = 0.05
    device: str = "auto"
    threads: int | None = None
    seed: int = 0
    checkpoints: int = 0
    text_column: str = TEXT
    batch_size: int = 4096


def _train(run: JobRun) -> Any:
    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm
    from curate.stages.lm import resolve_device

    c: TrainLMConfig = run.config
    texts = read_texts(run, "input")
    if not texts:
        raise CurateError(f"{describe(c.data)}: no non-empty documents in column {c.text_column!r}")
    settings = TrainSettings(
        steps=c.steps,
        batch_size=c.train_batch,
        lr=c.lr,
        warmup=min(100, c.steps // 10),
        holdout=c.holdout,
        seed=c.seed,
        threads=c.threads,
        device=resolve_device(c.device),
        checkpoints=c.checkpoints,
    )
    model = ProxyLMConfig(context=c.context, dim=c.dim, layers=c.layers, heads=c.heads)
    run.progress.start("train lm", c.steps, unit="steps")
    try:
        report = train_proxy_lm(
            texts, c.output, model, settings, on_step=lambda _: run.progress.advance("train lm", 1)
        )
    finally:
        run.progress.end("train lm")
    return {**report.__dict__, "device": settings.device}


def train_lm_job(config: TrainLMConfig) -> Job:
    return Job(
        kind="train lm",
        config=config,
        inputs={"input": config.data},
        columns={"input": Columns(text=config.text_column)},
        output=None,
        phases=(Driver(name="train", fn=_train),),
        summarize=lambda run: run.get("train"),
        batch_size=config.batch_size,
    )
