"""`select --dedup/--quality`: the rows that may be selected, decided before any selection and
identically on every shard (METHODS §10.5 condition 4): duplicates after the first, and the
documents below the pool's global fastText percentile (over the deduplicated pool), are masked.

dedup (hashes or signatures, spilled) + quality (fastText scores, spilled) -> prefilter (one
boolean mask per shard, saved in the work folder).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from curate.engine.job import JobRun
from curate.engine.phases import Driver, Keys, ShardResults
from curate.errors import UsageError
from curate.io.inputs import Shard, iter_batches
from curate.pipeline import RunContext, ShardReport, peak_rss_mb
from curate.steps.dedup import exact_decision, hash_shard
from curate.steps.near_duplicates import (
    NearDupParams,
    near_duplicate_decision,
    signature_shard,
    verify_phases,
)
from curate.types import TEXT


def near_dup_params(run: JobRun) -> NearDupParams:
    return NearDupParams(seed=run.config.seed)  # `dedup minhash`'s defaults


def dedup_task(shard: Shard, ctx: RunContext, out_path: str, how: str, params: NearDupParams) -> ShardReport:
    if how == "exact":
        return hash_shard(shard, ctx, out_path)
    return signature_shard(shard, ctx, out_path, params)


def quality_task(shard: Shard, ctx: RunContext, out_path: str, model_path: str) -> ShardReport:
    """fastText quality of every row of a shard (NaN for null/empty text), spilled."""
    from curate.stages.quality import FASTTEXT_QUALITY, FastTextScorer

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    scorer = FastTextScorer(model_path=model_path)
    values = []
    for batch in iter_batches(shard, ctx.columns, columns=[TEXT], batch_size=ctx.batch_size):
        report.rows_in += batch.num_rows
        col = scorer.annotate(batch)[FASTTEXT_QUALITY]
        values.append(np.asarray(col.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64))
    np.savez(out_path, values=np.concatenate(values) if values else np.zeros(0))
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def parse_share(text: str, option: str) -> float:
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a share such as 50% or 0.5") from exc
    if not 0 < share <= 1:
        raise UsageError(f"{option} must be in (0, 100%], got {text!r}")
    return share


def _keeps(run: JobRun) -> tuple[list[np.ndarray], dict[str, Any]]:
    config = run.config
    pool = run.shards()
    keeps: list[np.ndarray] | None = None
    stats: dict[str, Any] = {}
    if config.dedup is not None:
        spills: ShardResults = run.get("dedup")
        paths = [spills.paths[s.index] for s in pool]
        if config.dedup == "exact":
            keeps, _, _ = exact_decision(pool, paths)
        else:
            keeps, _, _, _ = near_duplicate_decision(
                run, near_dup_params(run), signatures="dedup", prefix="dedup "
            )
        stats["dedup"] = config.dedup
        stats["dedup_dropped"] = sum(int((~k).sum()) for k in keeps)
    if config.quality is not None:
        share = parse_share(config.quality_keep, "--quality-keep")
        spills = run.get("quality")
        values = []
        for s in pool:
            with np.load(spills.paths[s.index], allow_pickle=False) as z:
                values.append(z["values"])
        if keeps is None:
            keeps = [np.ones(len(v), bool) for v in values]
        # The percentile is global, over the documents that survived dedup (never per shard).
        candidates = np.concatenate([v[k] for v, k in zip(values, keeps, strict=True)] + [np.zeros(0)])
        candidates = candidates[np.isfinite(candidates)]
        if len(candidates) == 0:
            raise UsageError("no document has a quality score (all texts null or empty)")
        k = max(1, int(np.ceil(share * len(candidates))))
        threshold = float(np.partition(candidates, len(candidates) - k)[len(candidates) - k])
        before = sum(int(x.sum()) for x in keeps)
        keeps = [keep & np.isfinite(v) & (v >= threshold) for keep, v in zip(keeps, values, strict=True)]
        stats.update(
            quality_model=config.quality,
            quality_keep=share,
            quality_threshold=threshold,
            quality_dropped=before - sum(int(x.sum()) for x in keeps),
        )
    assert keeps is not None
    return keeps, stats


def mask_path(run: JobRun, shard: Shard) -> str:
    return str(run.work / f"mask-{shard.index:05d}.npy")


def _prefilter(run: JobRun) -> dict[str, Any]:
    keeps, stats = _keeps(run)
    for s, keep in zip(run.shards(), keeps, strict=True):
        np.save(mask_path(run, s), keep)
    return stats


def _load(run: JobRun) -> dict[str, Any] | None:
    assert run.manifest is not None
    rec = run.manifest.phase("prefilter stats")
    if rec is None or not all(Path(mask_path(run, s)).exists() for s in run.shards()):
        return None
    return dict(rec)


def _save(run: JobRun, stats: dict[str, Any]) -> None:
    if run.manifest is not None:
        run.manifest.set_phase("prefilter stats", stats)


def prefilter_phases() -> tuple[Keys | Driver, ...]:
    return (
        Keys(
            name="dedup",
            task=dedup_task,
            args=lambda run, s: (run.config.dedup, near_dup_params(run)),
            on_demand=True,
        ),
        *verify_phases(near_dup_params, signatures="dedup", prefix="dedup ", on_demand=True),
        Keys(name="quality", task=quality_task, args=lambda run, s: (run.config.quality,), on_demand=True),
        Driver(name="prefilter", fn=_prefilter, saver=_save, loader=_load, on_demand=True),
    )
