"""`curate select` as a library call: fit importance, score and key the pool, decide, write.

The plan is a composition of stages (DESIGN §2): NgramHistogram (Fittable, on target and on a
sample of the raw pool) -> ImportanceScorer (Annotator) -> GumbelTopK (Selector) -> write.
Every phase is recorded in the output folder's manifest, so a killed run resumes and gives the
same bytes as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate import __version__, native
from curate.budget import Budget, human_count, parse_budget
from curate.errors import CurateError, UsageError
from curate.executors.local import WorkerPool, map_tasks, resolve_workers, threads_per_worker
from curate.io.inputs import (
    Columns,
    Shard,
    discover,
    iter_batches,
    iter_unit_batches,
    read_schema,
    row_groups,
)
from curate.io.outputs import Manifest
from curate.native import HashSpec
from curate.pipeline import (
    Pipeline,
    RunContext,
    ShardReport,
    canonicalize_schema,
    collect_keys,
    merge_reports,
    peak_rss_mb,
    write_selected,
)
from curate.progress import NoProgress, Progress
from curate.report import group_shares, kl_reduction, merge_groups
from curate.stages.importance import ImportanceModel, ImportanceScorer, LengthNorm
from curate.stages.resample import GumbelTopK, Policy, prefix_mask
from curate.tokens import TokenCounter, bytes_counter, calibrate, exact_counter
from curate.types import DSIR_LOG_WEIGHT, N_TOKENS, TEXT

N_TOKENS_ESTIMATE = "n_tokens_estimate"
CALIBRATION_DOCS_PER_UNIT = 64
CALIBRATION_MAX_DOCS = 1_000


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


@dataclass(frozen=True, kw_only=True)
class SelectConfig(FitConfig):
    """Everything that determines the output of `curate select` (workers do not)."""

    output: str
    budget: str
    group_by: str | None = None
    dedup: str | None = None  # "exact" or "minhash": applied before selection
    quality: str | None = None  # a fastText model: keep the top `quality_keep` of the pool by it
    quality_keep: str = "50%"
    diversity: int | None = None  # k: cluster the pool and spread the budget across clusters
    diversity_allocation: str = "proportional"
    top_k: bool = False
    temperature: float = 1.0
    policy: Policy = "cover"

    def plan(self, pool: list[Shard], target: list[Shard]) -> dict[str, Any]:
        d = asdict(self)
        d.pop("output")
        d["pool_shards"] = [[s.name, s.size] for s in pool]
        d["target_shards"] = [[s.name, s.size] for s in target]
        d["curate_version"] = __version__
        d["kernel_version"] = native.KERNEL_VERSION
        return d


@dataclass
class PhaseTiming:
    seconds: float = 0.0
    text_bytes: int = 0

    def to_dict(self, workers: int) -> dict[str, float]:
        mbs = self.text_bytes / 1e6 / self.seconds if self.seconds > 0 else 0.0
        return {
            "seconds": round(self.seconds, 3),
            "text_mb": round(self.text_bytes / 1e6, 3),
            "mb_per_s": round(mbs, 2),
            "mb_per_s_per_worker": round(mbs / max(workers, 1), 2),
        }


@dataclass
class SelectResult:
    summary: dict[str, Any]
    output: Path
    manifest: Path
    resumed: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------- fit units
def _raw_cap(spec: str, buckets: int) -> int | None:
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


def fit_units(shards: list[Shard]) -> list[tuple[Shard, int | None]]:
    """(shard, row group) work units for a fit; JSONL/IPC shards are one unit each."""
    units: list[tuple[Shard, int | None]] = []
    for s in shards:
        n = row_groups(s)
        if n is None:
            units.append((s, None))
        else:
            units.extend((s, rg) for rg in range(n))
    return units


def histogram_unit(
    shard: Shard,
    row_group: int | None,
    cols: Columns,
    spec: HashSpec,
    threads: int,
    calibration_docs: int,
    batch_size: int,
) -> dict[str, Any]:
    """Bucket histogram of one unit, plus a few documents' text for token calibration."""
    hist = np.zeros(spec.buckets, np.int64)
    docs = 0
    nbytes = 0
    sample: list[str] = []
    batches = iter_unit_batches(shard, row_group, cols, columns=[TEXT], batch_size=batch_size)
    for b in batches:
        texts = b.column(TEXT)
        hist += native.ngram_histogram(texts, spec, threads=threads)
        docs += b.num_rows
        nbytes += int(pa.compute.sum(pa.compute.binary_length(texts)).as_py() or 0)
        if len(sample) < calibration_docs:
            sample.extend(t for t in texts.to_pylist()[: calibration_docs - len(sample)] if t)
    return {"hist": hist, "docs": docs, "bytes": nbytes, "sample": sample}


def fit_importance(
    config: FitConfig,
    pool: list[Shard],
    target: list[Shard],
    *,
    workers: int,
    progress: Progress,
    timings: dict[str, PhaseTiming],
    pool_: WorkerPool | None = None,
) -> ImportanceModel:
    """Target histogram over all target text; raw histogram over a seeded random sample of the
    pool's row groups, up to the feature cap (avoids DSIR's first-N bias, METHODS §1.7.2)."""
    spec = HashSpec(buckets=config.buckets, order=config.order, lowercase=config.lowercase)
    threads = threads_per_worker(workers)
    tcols = Columns(text=config.target_text_column or config.text_column)
    pcols = Columns(text=config.text_column, id=config.id_column)

    t0 = time.perf_counter()
    t_units = fit_units(target)
    progress.start("fit target", len(t_units), unit="units")
    t_res = map_tasks(
        histogram_unit,
        [(s, rg, tcols, spec, threads, 0, config.batch_size) for s, rg in t_units],
        workers=workers,
        on_result=lambda i, r: progress.advance("fit target", 1),
        pool=pool_,
    )
    progress.end("fit target")
    t_done = [r for r in t_res if r is not None]
    target_hist = np.sum([r["hist"] for r in t_done], axis=0) if t_done else np.zeros(spec.buckets, np.int64)
    target_docs = sum(r["docs"] for r in t_done)
    timings["fit target"] = PhaseTiming(time.perf_counter() - t0, sum(r["bytes"] for r in t_done))
    if target_hist.sum() == 0:
        raise UsageError(
            f"target {config.target}: no text to fit on ({target_docs} documents, all empty or null)"
        )

    t0 = time.perf_counter()
    units = fit_units(pool)
    order = np.random.default_rng(config.seed).permutation(len(units))
    cap = _raw_cap(config.raw_features, config.buckets)
    raw_hist = np.zeros(spec.buckets, np.int64)
    used_units = 0
    raw_docs = 0
    raw_bytes = 0
    sample: list[str] = []
    progress.start("fit raw", len(units), unit="units")

    # The cap is applied in the seeded unit order (map_tasks' `until`), so the result does not
    # depend on the worker count or on which unit finished first.
    def take(i: int, r: dict[str, Any]) -> bool:
        nonlocal raw_hist, raw_docs, raw_bytes, used_units
        raw_hist += r["hist"]
        raw_docs += r["docs"]
        raw_bytes += r["bytes"]
        sample.extend(r["sample"][: max(0, CALIBRATION_MAX_DOCS - len(sample))])
        used_units += 1
        return cap is not None and int(raw_hist.sum()) >= cap

    map_tasks(
        histogram_unit,
        [
            (units[i][0], units[i][1], pcols, spec, threads, CALIBRATION_DOCS_PER_UNIT, config.batch_size)
            for i in order
        ],
        workers=workers,
        on_result=lambda i, r: progress.advance("fit raw", 1),
        until=take,
        pool=pool_,
    )
    progress.end("fit raw")
    timings["fit raw"] = PhaseTiming(time.perf_counter() - t0, raw_bytes)

    counter = _selection_counter(config, sample)
    return ImportanceModel(
        spec=spec,
        target_counts=target_hist,
        raw_counts=raw_hist,
        target_laplace=config.target_laplace,
        length_norm=config.length_norm,
        ref_words=config.ref_words,
        min_words=config.min_words,
        bytes_per_token=counter.bytes_per_token if not counter.exact else 0.0,
        tokens_per_word=counter.per_word if not counter.exact else 0.0,
        token_calibration=counter.calibration,
        provenance={
            "target": config.target,
            "target_docs": target_docs,
            "raw": config.pool,
            "raw_docs": raw_docs,
            "raw_units_used": used_units,
            "raw_units_total": len(units),
            "raw_feature_cap": cap,
        },
    )


def _selection_counter(config: FitConfig, sample: list[str]) -> TokenCounter:
    if config.tokenizer:
        return exact_counter(config.tokenizer)
    return calibrate(pa.array(sample, type=pa.large_string()))


def counter_from_model(model: ImportanceModel, tokenizer: str | None) -> TokenCounter:
    if tokenizer:
        return exact_counter(tokenizer)
    if model.bytes_per_token > 0:
        return bytes_counter(model.bytes_per_token, model.token_calibration, per_word=model.tokens_per_word)
    return bytes_counter(4.0, "fixed default; the model carries no calibration")


# ---------------------------------------------------------------------------------- decide
def decide(keys_paths: list[str], budget: Budget, policy: Policy) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Exact global budget prefix from per-shard prefixes (METHODS §10.5). Memory: O(selected)."""
    parts = []
    for si, path in enumerate(keys_paths):
        with np.load(path, allow_pickle=False) as z:
            key, tie, cost = z["key"], z["tie"], z["cost"]
        # The local cut keeps a superset of both policies' prefixes: the crossing item must survive
        # it, since it still blocks the items after it in the global prefix.
        local = np.flatnonzero(prefix_mask(key, tie, cost, budget.amount, policy="local"))
        parts.append((np.full(len(local), si, np.int64), local, key[local], tie[local], cost[local]))
    if parts:
        shard_ix = np.concatenate([p[0] for p in parts])
        rows = np.concatenate([p[1] for p in parts])
        key = np.concatenate([p[2] for p in parts])
        tie = np.concatenate([p[3] for p in parts])
        cost = np.concatenate([p[4] for p in parts])
    else:
        shard_ix = rows = cost = np.zeros(0, np.int64)
        key = np.zeros(0)
        tie = np.zeros(0, np.uint64)
    keep = prefix_mask(key, tie, cost, budget.amount, policy)
    per_shard = [np.sort(rows[keep & (shard_ix == si)]) for si in range(len(keys_paths))]
    threshold = float(key[keep].min()) if keep.any() else float("nan")
    return per_shard, {
        "selected_cost": int(cost[keep].sum()),
        "selected_docs": int(keep.sum()),
        "key_threshold": threshold,
    }


# ---------------------------------------------------------------------------------- prefilter
def quality_shard(shard: Shard, cols: Columns, model_path: str, batch_size: int, out_path: str) -> int:
    """fastText quality of every row of a shard (NaN for null/empty text), spilled."""
    from curate.stages.quality import FASTTEXT_QUALITY, FastTextScorer

    scorer = FastTextScorer(model_path=model_path)
    values = []
    for batch in iter_batches(shard, cols, columns=[TEXT], batch_size=batch_size):
        col = scorer.annotate(batch)[FASTTEXT_QUALITY]
        values.append(np.asarray(col.fill_null(np.nan).to_numpy(zero_copy_only=False), dtype=np.float64))
    v = np.concatenate(values) if values else np.zeros(0)
    np.savez(out_path, values=v)
    return len(v)


def parse_share(text: str, option: str) -> float:
    try:
        share = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError as exc:
        raise UsageError(f"{option} {text!r} is not a share such as 50% or 0.5") from exc
    if not 0 < share <= 1:
        raise UsageError(f"{option} must be in (0, 100%], got {text!r}")
    return share


def prefilter(
    config: SelectConfig,
    pool: list[Shard],
    work: Path,
    *,
    workers: int,
    pool_: WorkerPool,
    progress: Progress,
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """Rows of each shard that may be selected after dedup and the quality filter (DESIGN: filters
    run before selection, identically on every shard; METHODS §10.5 condition 4)."""
    from curate.runner import exact_decision, hash_shard, minhash_decision, signature_shard
    from curate.stages.dedup import lsh_params

    pcols = Columns(text=config.text_column, id=config.id_column)
    ctx = RunContext(columns=pcols, batch_size=config.batch_size, threads=threads_per_worker(workers))
    keeps: list[np.ndarray] | None = None
    stats: dict[str, Any] = {}
    if config.dedup is not None:
        if config.dedup not in ("exact", "minhash"):
            raise UsageError(f"--dedup must be exact or minhash, got {config.dedup!r}")
        paths = [str(work / f"dedup-{s.index:05d}.npz") for s in pool]
        progress.start("dedup", sum(s.size for s in pool))
        if config.dedup == "exact":
            map_tasks(
                hash_shard,
                [(s, ctx, paths[s.index]) for s in pool],
                workers=workers,
                pool=pool_,
                on_result=lambda i, r: progress.advance("dedup", pool[i].size),
            )
            keeps, _, _ = exact_decision(pool, paths)
        else:
            bands, rows = lsh_params(0.8, 128)
            map_tasks(
                signature_shard,
                [(s, ctx, paths[s.index], 128, 5, config.seed, bands, rows) for s in pool],
                workers=workers,
                pool=pool_,
                on_result=lambda i, r: progress.advance("dedup", pool[i].size),
            )
            keeps, _, _, _ = minhash_decision(pool, paths, num_perm=128, bands=bands, threshold=0.8)
        progress.end("dedup")
        stats["dedup"] = config.dedup
        stats["dedup_dropped"] = sum(int((~k).sum()) for k in keeps)
    if config.quality is not None:
        from curate.stages.quality import load_model

        load_model(config.quality)  # a clear error before any work
        share = parse_share(config.quality_keep, "--quality-keep")
        paths = [str(work / f"quality-{s.index:05d}.npz") for s in pool]
        progress.start("quality", sum(s.size for s in pool))
        map_tasks(
            quality_shard,
            [(s, pcols, config.quality, config.batch_size, paths[s.index]) for s in pool],
            workers=workers,
            pool=pool_,
            on_result=lambda i, r: progress.advance("quality", pool[i].size),
        )
        progress.end("quality")
        values = []
        for p in paths:
            with np.load(p, allow_pickle=False) as z:
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


# ---------------------------------------------------------------------------------- run
def select(
    config: SelectConfig,
    *,
    workers: int | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> SelectResult:
    """Run `curate select`; resumes a run the output folder already holds (same plan)."""
    workers = resolve_workers(workers)
    with WorkerPool(workers) as pool:
        return _select(config, workers, overwrite, progress or NoProgress(), pool)


def _select(
    config: SelectConfig, workers: int, overwrite: bool, progress: Progress, pool_: WorkerPool
) -> SelectResult:
    budget = parse_budget(config.budget)
    if config.diversity is not None and config.diversity_allocation not in ("proportional", "equal"):
        raise UsageError(
            f"unknown diversity allocation {config.diversity_allocation!r}; allowed: proportional, equal"
        )
    pool = discover(config.pool)
    target = discover(config.target)
    pcols = Columns(text=config.text_column, id=config.id_column)
    tcols = Columns(text=config.target_text_column or config.text_column)
    # Validate every shard's schema before reading any data.
    for s in pool:
        schema = canonicalize_schema(read_schema(s), pcols, s.path)
        if config.group_by and config.group_by not in schema.names:
            raise UsageError(
                f"{s.path}: no group-by column {config.group_by!r}; columns present: {', '.join(schema.names)}"
            )
    for s in target:
        try:
            canonicalize_schema(read_schema(s), tcols, s.path)
        except CurateError as exc:
            raise type(exc)(
                exc.message, hint="the target's text column is set with --target-text-column"
            ) from None

    out = Path(config.output)
    manifest = Manifest(out, config.plan(pool, target), overwrite=overwrite)
    work = manifest.work_dir()
    timings: dict[str, PhaseTiming] = {}
    resumed: list[str] = []
    if manifest.state.get("complete"):
        return SelectResult(
            summary=manifest.state["summary"], output=out, manifest=manifest.path, resumed=["all"]
        )

    # ---- fit
    model_path = out / "_importance.npz"
    if manifest.phase("fit") and model_path.exists():
        model = ImportanceModel.load(model_path)
        resumed.append("fit")
    else:
        model = fit_importance(
            config, pool, target, workers=workers, progress=progress, timings=timings, pool_=pool_
        )
        model.save(model_path)
        manifest.set_phase("fit", {"model": model_path.name})
    counter = counter_from_model(model, config.tokenizer)
    scorer = ImportanceScorer(model=model, counter=counter)
    stages: tuple[Any, ...] = (scorer,)
    if config.quality is not None:
        from curate.stages.quality import FastTextScorer

        stages = (scorer, FastTextScorer(model_path=config.quality))
    pipeline = Pipeline(stages=(scorer,))
    write_pipeline = Pipeline(stages=stages)  # selected rows also carry their quality score

    # ---- prefilter: dedup and quality, before any selection
    mask_paths: list[str | None] = [None] * len(pool)
    prefilter_stats: dict[str, Any] = {}
    if config.dedup is not None or config.quality is not None:
        mask_paths = [str(work / f"mask-{s.index:05d}.npy") for s in pool]
        if manifest.phase("prefilter") is not None and all(Path(p).exists() for p in mask_paths if p):
            prefilter_stats = manifest.phase("prefilter")
            resumed.append("prefilter")
        else:
            t0 = time.perf_counter()
            keeps, prefilter_stats = prefilter(
                config, pool, work, workers=workers, pool_=pool_, progress=progress
            )
            for path, keep in zip(mask_paths, keeps, strict=True):
                assert path is not None
                np.save(path, keep)
            manifest.set_phase("prefilter", prefilter_stats)
            timings["prefilter"] = PhaseTiming(time.perf_counter() - t0, 0)
    # ---- diversity: clusters of hashed embeddings; the budget is then spread across clusters
    row_column = None
    kmeans_stats: dict[str, Any] = {}
    if config.diversity is not None:
        from curate.stages.diversity import KMEANS_CLUSTER, KMeansAssign

        embedder, centroids, kmeans_stats = _diversity_phase(
            config, pool, pcols, out, manifest, workers, pool_, progress, timings, resumed
        )
        pipeline = Pipeline(stages=(scorer, embedder, KMeansAssign(centroids=centroids)))
        row_column = KMEANS_CLUSTER
    selector = GumbelTopK(
        by=DSIR_LOG_WEIGHT,
        budget=budget,
        seed=config.seed,
        top_k=config.top_k,
        temperature=config.temperature,
        policy=config.policy,
    )
    ctx = RunContext(
        columns=pcols, batch_size=config.batch_size, threads=threads_per_worker(workers), output=str(out)
    )

    # ---- pass 1: keys
    keys_paths = [str(work / f"keys-{s.index:05d}.npz") for s in pool]
    reports1: dict[int, ShardReport] = {}
    todo = []
    for s in pool:
        rec = manifest.shard_done(f"keys:{s.index}")
        if rec is not None and Path(keys_paths[s.index]).exists():
            reports1[s.index] = ShardReport.from_dict(rec["report"])
            reports1[s.index].extra = rec["extra"]
        else:
            todo.append(s)
    if len(todo) < len(pool):
        resumed.append(f"score ({len(pool) - len(todo)}/{len(pool)} shards)")
    t0 = time.perf_counter()
    progress.start("score", sum(s.size for s in todo))

    def _keys_done(i: int, rep: ShardReport) -> None:
        s = todo[i]
        reports1[s.index] = rep
        manifest.mark_shard(f"keys:{s.index}", {"report": rep.to_dict(), "extra": rep.extra})
        progress.advance("score", s.size)

    sample_counter = None if counter.exact else _exact_or_none()
    every = _exact_sample_every(pool)
    map_tasks(
        collect_keys,
        [
            (
                pipeline,
                selector,
                s,
                ctx,
                keys_paths[s.index],
                config.group_by,
                sample_counter,
                every,
                mask_paths[s.index],
                row_column,
            )
            for s in todo
        ],
        workers=workers,
        on_result=_keys_done,
        pool=pool_,
    )
    progress.end("score")
    timings["score"] = PhaseTiming(time.perf_counter() - t0, sum(reports1[s.index].text_bytes for s in todo))
    pass1 = merge_reports(reports1[s.index] for s in pool)
    pool_tokens = sum(reports1[s.index].extra["pool_tokens"] for s in pool)
    eligible_tokens = sum(reports1[s.index].extra["eligible_tokens"] for s in pool)
    eligible_rows = sum(reports1[s.index].extra["eligible_rows"] for s in pool)
    eligible_bytes = 0
    eligible_cost = {"tokens": eligible_tokens, "docs": eligible_rows}

    # ---- decide
    if budget.unit == "fraction":
        resolved = Budget(unit="tokens", amount=float(np.ceil(budget.amount * eligible_tokens)))
    else:
        resolved = budget
    if resolved.unit == "bytes":
        for p in keys_paths:
            with np.load(p, allow_pickle=False) as z:
                eligible_bytes += int(z["bytes"][np.isfinite(z["key"])].sum())
        eligible_cost["bytes"] = eligible_bytes
    available = eligible_cost[resolved.unit]
    if resolved.amount > available:
        raise UsageError(
            f"budget {budget} is larger than the selectable pool: {human_count(available)} {resolved.unit} "
            f"in {eligible_rows:,} documents ({pass1.rows_in - eligible_rows:,} of {pass1.rows_in:,} are null, empty "
            f"or shorter than {config.min_words} words)",
            hint="lower the budget (a percentage such as 50% is resolved against the selectable pool)",
        )
    t0 = time.perf_counter()
    sel_path = work / "selection.npz"
    if manifest.phase("decide") and sel_path.exists():
        with np.load(sel_path, allow_pickle=False) as z:
            per_shard = [z[f"s{i}"] for i in range(len(pool))]
        decision = manifest.phase("decide")
        resumed.append("decide")
    else:

        def cut(b: Budget) -> tuple[list[np.ndarray], dict[str, Any]]:
            if config.diversity is None:
                return decide(keys_paths, b, config.policy)
            return decide_balanced(keys_paths, b, config.diversity_allocation)

        per_shard, decision = cut(resolved)
        # A fraction is a share in the estimate's own units; only absolute token budgets are corrected.
        if budget.unit == "tokens" and not counter.exact:
            ratio, n_sampled = _exact_ratio(keys_paths, per_shard)
            band = 1.0
            # Too few exactly-counted documents inside the selection: take the ratio over the
            # top of the ranking just beyond it (2x, 4x, ... the budget), the closest documents
            # in kind to the selected ones.
            while n_sampled < MIN_CORRECTION_SAMPLE and resolved.amount * band < eligible_tokens:
                band *= 2
                wider, _ = cut(Budget(unit="tokens", amount=resolved.amount * band))
                ratio, n_sampled = _exact_ratio(keys_paths, wider)
            decision["exact_sample_docs"] = n_sampled
            decision["exact_over_estimate"] = ratio
            decision["exact_sample_band"] = band
            if n_sampled >= MIN_CORRECTION_SAMPLE:
                # Re-cut the prefix so that the selection's exact tokens, not its estimate, meet the budget.
                corrected = Budget(unit="tokens", amount=min(resolved.amount / ratio, float(eligible_tokens)))
                per_shard, d2 = cut(corrected)
                decision.update(d2, corrected_budget=corrected.amount)
        np.savez(sel_path, **{f"s{i}": r for i, r in enumerate(per_shard)})  # type: ignore[arg-type]
        manifest.set_phase("decide", decision)
    timings["decide"] = PhaseTiming(time.perf_counter() - t0, 0)

    # ---- pass 2: write
    exact = counter if counter.exact else _exact_or_none()
    finalize = _Finalize(counter=counter, exact=exact)
    summarize = _Summarize(spec=model.spec)
    reports2: dict[int, ShardReport] = {}
    todo2 = []
    for s in pool:
        rec = manifest.shard_done(f"write:{s.index}")
        if rec is not None:
            reports2[s.index] = ShardReport.from_dict(rec["report"])
            reports2[s.index].extra = _load_extra(rec["extra"])
        else:
            todo2.append(s)
    if len(todo2) < len(pool):
        resumed.append(f"write ({len(pool) - len(todo2)}/{len(pool)} shards)")
    t0 = time.perf_counter()
    progress.start("write", sum(s.size for s in todo2))

    def _write_done(i: int, rep: ShardReport) -> None:
        s = todo2[i]
        reports2[s.index] = rep
        manifest.mark_shard(
            f"write:{s.index}", {"files": rep.files, "report": rep.to_dict(), "extra": _dump_extra(rep.extra)}
        )
        progress.advance("write", s.size)

    cluster_of: dict[int, dict[str, np.ndarray]] = {}
    if config.diversity is not None:  # selected rows carry their cluster (the embedding is not kept)
        for s in todo2:
            with np.load(keys_paths[s.index], allow_pickle=False) as z:
                cluster_of[s.index] = {"kmeans_cluster": z["row_col"][per_shard[s.index]].astype(np.int32)}
    map_tasks(
        write_selected,
        [
            (
                write_pipeline,
                s,
                per_shard[s.index],
                ctx,
                finalize,
                summarize,
                config.group_by,
                cluster_of.get(s.index),
            )
            for s in todo2
        ],
        workers=workers,
        on_result=_write_done,
        pool=pool_,
    )
    progress.end("write")
    timings["write"] = PhaseTiming(time.perf_counter() - t0, sum(reports2[s.index].text_bytes for s in todo2))

    # ---- report
    selected_hist = np.zeros(model.spec.buckets, np.int64)
    sel_tokens_est = 0
    sel_tokens_exact = 0
    for s in pool:
        for summ in reports2[s.index].extra.get("summaries", []):
            selected_hist += np.asarray(summ["hist"], dtype=np.int64)
            sel_tokens_est += summ["tokens"]
            sel_tokens_exact += summ["tokens_exact"]
    pass2 = merge_reports(reports2[s.index] for s in pool)
    summary = build_summary(
        config=config,
        budget=budget,
        resolved=resolved,
        counter=counter,
        exact=exact,
        model=model,
        pass1=pass1,
        pass2=pass2,
        pool_tokens=pool_tokens,
        eligible_tokens=eligible_tokens,
        eligible_rows=eligible_rows,
        decision=decision,
        selected_hist=selected_hist,
        sel_tokens_est=sel_tokens_est,
        sel_tokens_exact=sel_tokens_exact,
        groups_pool=merge_groups([reports1[s.index].extra.get("groups", {}) for s in pool]),
        groups_sel=merge_groups([reports2[s.index].extra.get("groups", {}) for s in pool]),
        timings={k: v.to_dict(workers) for k, v in timings.items()},
        workers=workers,
        resumed=resumed,
        shards=len(pool),
        prefilter=prefilter_stats,
    )
    if config.diversity is not None:
        summary["diversity"] = {
            "k": config.diversity,
            "allocation": config.diversity_allocation,
            **decision.get("diversity", {}),
            "kmeans": kmeans_stats,
        }
    manifest.finish(summary)  # also removes the keys and the selection from the work dir
    return SelectResult(summary=summary, output=out, manifest=manifest.path, resumed=resumed)


def decide_balanced(
    keys_paths: list[str], budget: Budget, allocation: str
) -> tuple[list[np.ndarray], dict[str, Any]]:
    """`--diversity`: each cluster gets a share of the budget and takes its rows in key order
    (DSIR log weight / T + Gumbel noise), i.e. importance resampling inside each cluster's share.
    The spilled keys are scanned per shard; memory is the candidates, not the pool."""
    from curate.stages.diversity import balanced_from_parts

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        with np.load(keys_paths[i], allow_pickle=False) as z:
            return z["key"], z["tie"], z["cost"], z["row_col"]

    sel = balanced_from_parts(load, len(keys_paths), budget=budget.amount, allocation=allocation)
    mins = [float(load(i)[0][rows].min()) for i, rows in enumerate(sel.rows) if len(rows)]
    return sel.rows, {
        "selected_cost": sel.selected_cost,
        "selected_docs": sel.selected_docs,
        "key_threshold": min(mins) if mins else float("nan"),
        "diversity": sel.report(),
    }


def _diversity_phase(
    config: SelectConfig,
    pool: list[Shard],
    cols: Columns,
    out: Path,
    manifest: Manifest,
    workers: int,
    pool_: WorkerPool,
    progress: Progress,
    timings: dict[str, PhaseTiming],
    resumed: list[str],
) -> tuple[Any, np.ndarray, dict[str, Any]]:
    """Fit (or, on a rerun, load) the embedder's idf and the k-means centroids for --diversity."""
    from curate.diversity import (
        EMBED_ARTIFACT,
        KMEANS_ARTIFACT,
        POOL_EMBED_DIM,
        fit_pool_clusters,
        pool_embed_spec,
    )
    from curate.kmeans import KMeansModel
    from curate.stages.embed import HashedEmbedder

    embed_path, kmeans_path = out / f"{EMBED_ARTIFACT}.npz", out / KMEANS_ARTIFACT
    done = manifest.phase("diversity")
    if done and embed_path.exists() and kmeans_path.with_suffix(".npz").exists():
        with np.load(embed_path, allow_pickle=False) as z:
            idf = z["idf"]
        embedder = HashedEmbedder(
            spec=pool_embed_spec(config.seed), idf=idf, dim=POOL_EMBED_DIM, seed=config.seed
        )
        resumed.append("diversity")
        return embedder, KMeansModel.load(kmeans_path).centroids, done
    assert config.diversity is not None
    t0 = time.perf_counter()
    embedder, model = fit_pool_clusters(
        pool,
        cols,
        k=config.diversity,
        seed=config.seed,
        workers=workers,
        batch_size=config.batch_size,
        progress=progress,
        pool=pool_,
    )
    np.savez(embed_path, idf=embedder.idf)
    model.save(kmeans_path)
    stats = {
        "passes": model.iterations,
        "converged": model.converged,
        "inertia_per_pass": model.inertia,
        "reseeded_empty_clusters": model.reseeded,
        "rows": model.rows,
    }
    manifest.set_phase("diversity", stats)
    timings["diversity"] = PhaseTiming(time.perf_counter() - t0, 0)
    return embedder, model.centroids, stats


MIN_CORRECTION_SAMPLE = 20
EXACT_SAMPLE_TARGET_DOCS = 1_000


def _exact_sample_every(pool: list[Shard]) -> int:
    """Count every document of a pool under 2K documents exactly, 1 in 64 of one over 64K.

    Enough to correct the estimate on a selection of 20 x that many documents or more. Exact
    BPE counting runs at ~20 MB/s per core here, ~14x slower than the kernel, so on large pools
    the sample costs ~0.1x of a kernel pass."""
    from curate.io.inputs import count_rows

    rows = 0
    for s in pool:
        n = count_rows(s)
        rows += n if n is not None else s.size // 2000  # JSONL: ~2 KB per document
    return int(min(64, max(1, rows // EXACT_SAMPLE_TARGET_DOCS)))


def _exact_ratio(keys_paths: list[str], per_shard: list[np.ndarray]) -> tuple[float, int]:
    """Exact/estimated tokens over the selected rows that pass 1 counted exactly."""
    est = exact = n = 0
    for path, rows in zip(keys_paths, per_shard, strict=True):
        with np.load(path, allow_pickle=False) as z:
            ex = z["exact"][rows]
            cost = z["cost"][rows]
        m = ex >= 0
        n += int(m.sum())
        est += int(cost[m].sum())
        exact += int(ex[m].sum())
    return (exact / est if est > 0 else 1.0), n


def _exact_or_none() -> TokenCounter | None:
    try:
        c = exact_counter("cl100k")
        from curate.tokens import _bpe

        _bpe(c.name)
        return c
    except Exception:
        return None


@dataclass(frozen=True, kw_only=True)
class _Finalize:
    """Adds exact token counts to the selected rows when selection used an estimate."""

    counter: TokenCounter
    exact: TokenCounter | None

    def __call__(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        if self.counter.exact or self.exact is None:
            return batch
        est = batch.column(N_TOKENS)
        idx = batch.schema.get_field_index(N_TOKENS)
        batch = batch.set_column(idx, N_TOKENS, pa.array(self.exact.count(batch.column(TEXT)), pa.int64()))
        return batch.append_column(N_TOKENS_ESTIMATE, est)


@dataclass(frozen=True, kw_only=True)
class _Summarize:
    spec: HashSpec

    def __call__(self, batch: pa.RecordBatch) -> dict[str, Any]:
        texts = batch.column(TEXT)
        est_col = N_TOKENS_ESTIMATE if N_TOKENS_ESTIMATE in batch.schema.names else N_TOKENS
        return {
            "hist": native.ngram_histogram(texts, self.spec, threads=1),
            "tokens": int(pa.compute.sum(batch.column(est_col)).as_py() or 0),
            "tokens_exact": int(pa.compute.sum(batch.column(N_TOKENS)).as_py() or 0),
        }


def _dump_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe copy of a write report's extras (histograms as sparse lists)."""
    out = dict(extra)
    out["summaries"] = [
        {
            **s,
            "hist": {
                "idx": np.flatnonzero(s["hist"]).tolist(),
                "val": s["hist"][s["hist"] > 0].tolist(),
                "n": len(s["hist"]),
            },
        }
        for s in extra.get("summaries", [])
    ]
    return out


def _load_extra(extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(extra)
    sums = []
    for s in extra.get("summaries", []):
        h = np.zeros(s["hist"]["n"], np.int64)
        h[np.asarray(s["hist"]["idx"], dtype=np.int64)] = s["hist"]["val"]
        sums.append({**s, "hist": h})
    out["summaries"] = sums
    return out


def build_summary(**kw: Any) -> dict[str, Any]:
    config: SelectConfig = kw["config"]
    counter: TokenCounter = kw["counter"]
    exact: TokenCounter | None = kw["exact"]
    pass1: ShardReport = kw["pass1"]
    pass2: ShardReport = kw["pass2"]
    resolved: Budget = kw["resolved"]
    model: ImportanceModel = kw["model"]
    sel_docs = pass2.rows_out
    sel_est = kw["sel_tokens_est"]
    sel_exact = kw["sel_tokens_exact"]
    # With an exact counter at hand, the reported token total is exact; the estimate is kept too.
    sel_tokens = sel_exact if exact is not None else sel_est
    budget_unit_selected = {"tokens": sel_tokens, "docs": sel_docs, "bytes": pass2.text_bytes}[resolved.unit]
    kl = kl_reduction(model.target_counts, model.raw_counts, kw["selected_hist"])
    short = pass1.nulls.get(DSIR_LOG_WEIGHT, 0) - pass1.null_text - pass1.empty_text
    summary: dict[str, Any] = {
        "budget": str(kw["budget"]),
        "budget_resolved": {"unit": resolved.unit, "amount": resolved.amount},
        "policy": config.policy,
        "mode": "top-k" if config.top_k else "gumbel resampling",
        "seed": config.seed,
        "token_counter": counter.describe(),
        "reported_token_counter": (exact or counter).describe(),
        "selected_docs": sel_docs,
        "selected_tokens": sel_tokens,
        "selected_tokens_estimate": sel_est if not counter.exact else None,
        "selected_bytes": pass2.text_bytes,
        "budget_error": (budget_unit_selected - resolved.amount) / resolved.amount,
        "exact_correction": {
            k: kw["decision"][k]
            for k in ("exact_sample_docs", "exact_over_estimate", "exact_sample_band", "corrected_budget")
            if k in kw["decision"]
        },
        "pool_docs": pass1.rows_in,
        "pool_tokens": kw["pool_tokens"],
        "pool_bytes": pass1.text_bytes,
        "selectable_docs": kw["eligible_rows"],
        "selectable_tokens": kw["eligible_tokens"],
        "doc_share": sel_docs / max(pass1.rows_in, 1),
        "token_share": sel_est / max(kw["pool_tokens"], 1),  # both in the selection counter's units
        "null_text": pass1.null_text,
        "empty_text": pass1.empty_text,
        "too_short": max(short, 0),
        "min_words": config.min_words,
        "length_norm": config.length_norm,
        "key_threshold": kw["decision"]["key_threshold"],
        **kl,
        "kl_smoothing": "selected/raw distributions smoothed with +1e-8 per bucket; natural log",
        "hash": {"buckets": model.spec.buckets, "order": model.spec.order, "lowercase": model.spec.lowercase},
        "importance_model": model.provenance,
        "groups": group_shares(kw["groups_pool"], kw["groups_sel"]) if config.group_by else None,
        "group_by": config.group_by,
        "timings": kw["timings"],
        "workers": kw["workers"],
        "peak_rss_mb": {
            "driver": round(peak_rss_mb(), 1),
            "workers": max(pass1.peak_rss_mb, pass2.peak_rss_mb),
        },
        "shards": kw["shards"],
        "resumed": kw["resumed"],
        "prefilter": kw.get("prefilter") or None,
    }
    json.dumps(summary)  # fail here, not in the manifest writer, if something is not JSON-safe
    return summary
