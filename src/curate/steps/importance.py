"""Fitting DSIR's importance model, as phases (`curate select` and `curate importance fit`).

The target histogram covers all target text; the raw histogram a seeded random order of the
pool's units (Parquet row groups) up to the feature cap, so that a pool ordered by domain or
time does not bias it (METHODS §1.7.2). The cap is applied in that order, never in completion
order, so the model does not depend on the worker count. The raw units also give a sample of
texts that calibrates the token estimate against cl100k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate.engine.job import JobRun
from curate.engine.phases import Driver, Fit, FitResult
from curate.errors import UsageError
from curate.native import HashSpec
from curate.stages.base import Fittable, Paired
from curate.stages.importance import ImportanceModel, LengthNorm, NgramSample
from curate.tokens import TokenCounter, bytes_counter, calibrate, exact_counter
from curate.types import ID, TEXT

# The calibration sample: up to 64 texts from each raw unit in the seeded order, at most 1,000
# texts and 2 MB (~0.09 CPU-s through cl100k; a pool of long documents would otherwise pay for
# 1,000 of them), and 256 KB per unit so that at least 8 units contribute.
CALIBRATION_DOCS_PER_UNIT = 64
CALIBRATION_MAX_DOCS = 1_000
CALIBRATION_MAX_BYTES = 2_000_000
CALIBRATION_UNIT_BYTES = 256_000
MODEL_ARTIFACT = "_importance.npz"


@dataclass(frozen=True, kw_only=True)
class FitConfig:
    """What determines a fitted importance model."""

    target: str
    pool: str | tuple[str, ...]  # one path, folder or glob, or several in order
    seed: int = 0
    tokenizer: str | None = None
    text_column: str = TEXT
    id_column: str | None = None
    target_text_column: str | None = None
    buckets: int = 10_000
    order: int = 2
    lowercase: bool = True
    length_norm: LengthNorm = "per-chunk"
    ref_words: int = 128
    min_words: int = 100
    target_laplace: float = 0.0
    raw_features: str = "auto"  # "auto" (100k per bucket, DSIR's default), "all", or a number
    batch_size: int = 4096

    @property
    def spec(self) -> HashSpec:
        return HashSpec(buckets=self.buckets, order=self.order, lowercase=self.lowercase)


def raw_cap(spec: str, buckets: int) -> int | None:
    if spec == "auto":
        return 100_000 * buckets
    if spec == "all":
        return None
    try:
        cap = int(float(spec))
    except ValueError as exc:
        raise UsageError(f"raw_features must be 'auto', 'all' or a number, got {spec!r}") from exc
    if cap <= 0:
        raise UsageError(f"raw_features must be positive, got {spec!r}")
    return cap


def _target_stage(run: JobRun) -> NgramSample:
    return NgramSample(spec=run.config.spec, threads=run.threads)


def _raw_stage(run: JobRun) -> NgramSample:
    return NgramSample(
        spec=run.config.spec,
        threads=run.threads,
        sample_docs=CALIBRATION_DOCS_PER_UNIT,
        max_sample=CALIBRATION_MAX_DOCS,
        unit_sample_bytes=CALIBRATION_UNIT_BYTES,
        max_sample_bytes=CALIBRATION_MAX_BYTES,
    )


def raw_histogram(result: FitResult) -> Any:
    """The raw fit's histogram summary (the first of a Paired fit's two)."""
    return result.summary[0] if isinstance(result.summary, tuple) else result.summary


def _seeded_order(run: JobRun, n: int) -> Any:
    return np.random.default_rng(run.config.seed).permutation(n)


def _over_cap(run: JobRun, summary: Any) -> bool:
    cap = raw_cap(run.config.raw_features, run.config.buckets)
    hist = summary[0].hist if isinstance(summary, tuple) else summary.hist
    return cap is not None and int(hist.sum()) >= cap


def _model(run: JobRun) -> ImportanceModel:
    config: FitConfig = run.config
    target: FitResult = run.get("fit target")
    run.add_bytes("fit target", target.summary.bytes)
    if target.summary.hist.sum() == 0:
        raise UsageError(
            f"target {config.target}: no text to fit on ({target.summary.docs} documents, all empty or null)"
        )
    result: FitResult = run.get("fit raw")
    raw = raw_histogram(result)
    run.add_bytes("fit raw", raw.bytes)
    counter = selection_counter(config.tokenizer, raw.sample)
    return ImportanceModel(
        spec=config.spec,
        target_counts=target.summary.hist,
        raw_counts=raw.hist,
        target_laplace=config.target_laplace,
        length_norm=config.length_norm,
        ref_words=config.ref_words,
        min_words=config.min_words,
        bytes_per_token=counter.bytes_per_token if not counter.exact else 0.0,
        tokens_per_word=counter.per_word if not counter.exact else 0.0,
        token_calibration=counter.calibration,
        provenance={
            "target": config.target,
            "target_docs": target.summary.docs,
            "raw": config.pool if isinstance(config.pool, str) else list(config.pool),
            "raw_docs": raw.docs,
            "raw_units_used": result.units_used,
            "raw_units_total": result.units_total,
            "raw_feature_cap": raw_cap(config.raw_features, config.buckets),
        },
    )


def importance_phases(
    artifact: Any, side: Callable[[JobRun], Fittable[Any]] | None = None
) -> tuple[Fit, Fit, Driver]:
    """fit target, fit raw (seeded order, capped), and the model saved at `artifact(run)`.

    `side(run)`, when given, is fitted in the same read of the raw units (`Paired`: the result's
    summary is then a pair, whose first is the histogram; `raw_histogram`)."""

    def save(run: JobRun, model: ImportanceModel) -> None:
        model.save(artifact(run))

    def load(run: JobRun) -> ImportanceModel | None:
        path = Path(artifact(run))
        return ImportanceModel.load(path) if path.exists() else None

    return (
        Fit(name="fit target", stage=_target_stage, dataset="target", on_demand=True),
        Fit(
            name="fit raw",
            stage=_raw_stage if side is None else lambda run: Paired(first=_raw_stage(run), second=side(run)),
            columns=(TEXT,) if side is None else (TEXT, ID),
            order=_seeded_order,
            stop=_over_cap,
            on_demand=True,
        ),
        Driver(name="importance model", fn=_model, saver=save, loader=load),
    )


def selection_counter(tokenizer: str | None, sample: list[str]) -> TokenCounter:
    """The counter a selection's budget is measured in: exact with a tokenizer, else the
    estimate calibrated on the raw sample."""
    if tokenizer:
        return exact_counter(tokenizer)
    return calibrate(pa.array(sample, type=pa.large_string()))


def counter_from_model(model: ImportanceModel, tokenizer: str | None) -> TokenCounter:
    if tokenizer:
        return exact_counter(tokenizer)
    if model.bytes_per_token > 0:
        return bytes_counter(model.bytes_per_token, model.token_calibration, per_word=model.tokens_per_word)
    return exact_counter("cl100k")  # a model fitted with an exact counter carries no estimate
