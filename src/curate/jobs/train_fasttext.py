"""`curate train fasttext`: a DCLM-style quality classifier (balanced classes, by oversampling the
smaller one or DCLM's downsampling; held-out accuracy and AUC), from the texts of a positive and
a negative dataset."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.steps.texts import read_texts
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class TrainFastTextConfig:
    positive: DatasetSpec
    negative: DatasetSpec
    output: str
    max_per_class: int | None = None
    balance: str = "oversample"
    holdout: float = 0.1
    epoch: int = 5
    lr: float = 0.1
    dim: int = 100
    word_ngrams: int = 2
    threads: int = 1
    seed: int = 0
    text_column: str = TEXT
    batch_size: int = 4096

    def __post_init__(self) -> None:
        from curate.stages.quality import BALANCE

        if self.balance not in BALANCE:
            raise UsageError(f"--balance must be one of {', '.join(BALANCE)}, got {self.balance!r}")


def _train(run: JobRun) -> Any:
    from curate.stages.quality import FastTextSettings, train_fasttext

    c: TrainFastTextConfig = run.config
    settings = FastTextSettings(
        lr=c.lr, dim=c.dim, epoch=c.epoch, word_ngrams=c.word_ngrams, threads=c.threads, seed=c.seed
    )
    return train_fasttext(
        read_texts(run, "positive"),
        read_texts(run, "negative"),
        c.output,
        settings=settings,
        holdout=c.holdout,
        max_per_class=c.max_per_class,
        balance=c.balance,
    )


def train_fasttext_job(config: TrainFastTextConfig) -> Job:
    columns = Columns(text=config.text_column)
    return Job(
        kind="train fasttext",
        config=config,
        inputs={"positive": config.positive, "negative": config.negative},
        columns={"positive": columns, "negative": columns},
        output=None,
        phases=(Driver(name="train", fn=_train),),
        summarize=lambda run: run.get("train").to_dict(),
        batch_size=config.batch_size,
    )
