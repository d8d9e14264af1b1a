"""`curate select`: the documents of a pool that importance resampling toward a target picks,
to a budget (DESIGN §2: a composition of stages, not a special case).

importance model (fit target, fit raw) -> [prefilter (dedup, quality)] -> [diversity (idf,
k-means)] -> score (keys: log weight + Gumbel noise, cost, exact-token sample) -> decide (the
budget prefix, or cluster shares; corrected to exact tokens) -> write (rows with their exact
token counts) -> summary (budget check, KL reduction, shares by group, timings).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from curate.budget import Budget, human_count, parse_budget
from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.engine.spills import read_spill
from curate.engine.tasks import collect_keys
from curate.errors import UsageError
from curate.io.inputs import Columns
from curate.jobs.select.diversity import (
    ALLOCATIONS,
    PLAIN_SHARE,
    TARGET_SMOOTHING,
    diversity_phases,
    sample_in_raw_fit,
    target_counts,
)
from curate.jobs.select.prefilter import mask_path, prefilter_phases
from curate.jobs.select.summary import Finalize, Summarize, build_summary
from curate.pipeline import Pipeline
from curate.stages.importance import ImportanceModel, ImportanceScorer
from curate.stages.resample import GumbelTopK, Policy
from curate.steps.budget import (
    MIN_CORRECTION_SAMPLE,
    balanced_cut,
    correct_to_exact,
    exact_or_none,
    exact_sample_every,
    pool_exact_ratio,
    prefix_cut,
)
from curate.steps.importance import MODEL_ARTIFACT, FitConfig, counter_from_model, importance_phases
from curate.types import DSIR_LOG_WEIGHT


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
    diversity_allocation: str = "target"  # or proportional (to cluster size), equal
    top_k: bool = False
    temperature: float = 1.0
    policy: Policy = "cover"
    sidecars: tuple[str, ...] = ()  # score sidecars joined to the pool (their columns are kept)

    def __post_init__(self) -> None:
        parse_budget(self.budget)
        if self.dedup is not None and self.dedup not in ("exact", "minhash"):
            raise UsageError(f"--dedup must be exact or minhash, got {self.dedup!r}")
        if self.diversity is not None and self.diversity_allocation not in ALLOCATIONS:
            raise UsageError(
                f"unknown diversity allocation {self.diversity_allocation!r}; allowed: {', '.join(ALLOCATIONS)}"
            )


def _scorer(run: JobRun) -> ImportanceScorer:
    model: ImportanceModel = run.get("importance model")
    return ImportanceScorer(model=model, counter=counter_from_model(model, run.config.tokenizer))


def _keys_pipeline(run: JobRun) -> Pipeline:
    if run.config.diversity is None:
        return Pipeline(stages=(_scorer(run),))
    from curate.stages.diversity import KMeansAssign

    fitted = run.get("diversity")
    scorer = replace(_scorer(run), embedder=fitted["embedder"])  # one tokenisation for both
    return Pipeline(stages=(scorer, KMeansAssign(centroids=fitted["model"].centroids)))


def _write_pipeline(run: JobRun) -> Pipeline:
    if run.config.quality is None:
        return Pipeline(stages=(_scorer(run),))
    from curate.stages.quality import FastTextScorer

    return Pipeline(
        stages=(_scorer(run), FastTextScorer(model_path=run.config.quality))
    )  # rows keep their score


def selector(config: SelectConfig) -> GumbelTopK:
    return GumbelTopK(
        by=DSIR_LOG_WEIGHT,
        budget=parse_budget(config.budget),
        seed=config.seed,
        top_k=config.top_k,
        temperature=config.temperature,
        policy=config.policy,
    )


def _keys_args(run: JobRun, shard: Any) -> tuple[Any, ...]:
    c: SelectConfig = run.config
    counter = _scorer(run).counter
    masked = c.dedup is not None or c.quality is not None
    if masked:
        run.get("prefilter")
    return (
        _keys_pipeline(run),
        selector(c),
        c.group_by,
        None if counter.exact else exact_or_none(),
        exact_sample_every(run.shards(), _pool_rows(run)),
        mask_path(run, shard) if masked else None,
        "kmeans_cluster" if c.diversity is not None else None,
    )


def _pool_rows(run: JobRun) -> int | None:
    """The pool's documents as the raw fit counted them (scaled up when it stopped at its cap)."""
    p = run.get("importance model").provenance
    if not p.get("raw_units_used") or "raw_docs" not in p:
        return None
    return int(p["raw_docs"] * p["raw_units_total"] / p["raw_units_used"])


def _decide(run: JobRun) -> Decision:
    c: SelectConfig = run.config
    shards = run.shards()
    keys: ShardResults = run.get("score")
    paths = [keys.paths[s.index] for s in shards]
    extra = [keys.reports[s.index].extra for s in shards]
    eligible_tokens = sum(e["eligible_tokens"] for e in extra)
    eligible_rows = sum(e["eligible_rows"] for e in extra)
    rows_in = keys.total().rows_in
    budget = parse_budget(c.budget)
    estimated = not _scorer(run).counter.exact
    pool_ratio, pool_sampled = pool_exact_ratio(paths) if estimated else (1.0, 0)
    if pool_sampled < MIN_CORRECTION_SAMPLE:
        pool_ratio = 1.0
    resolved = (  # a share of the pool's exact tokens (estimated from its exactly counted rows)
        Budget(unit="tokens", amount=float(np.ceil(budget.amount * eligible_tokens * pool_ratio)))
        if budget.unit == "fraction"
        else budget
    )
    available = {"tokens": eligible_tokens, "docs": eligible_rows}
    if resolved.unit == "bytes":
        available["bytes"] = 0
        for p in paths:
            z = read_spill(p)
            available["bytes"] += int(z["bytes"][np.isfinite(z["key"])].sum())
    if not eligible_rows:
        raise UsageError(
            f"nothing to select: all {rows_in:,} documents are null, empty or shorter than {c.min_words} words",
            hint="lower --min-words (DSIR's default is 100 words)" if c.min_words else None,
        )
    # A share (at most 100%) always fits; its exact-token amount is not comparable to the estimate.
    if budget.unit != "fraction" and resolved.amount > available[resolved.unit]:
        raise UsageError(
            f"budget {budget} is larger than the selectable pool: {human_count(available[resolved.unit])} "
            f"{resolved.unit} in {eligible_rows:,} documents ({rows_in - eligible_rows:,} of {rows_in:,} are "
            f"null, empty or shorter than {c.min_words} words)",
            hint="lower the budget (a percentage such as 50% is resolved against the selectable pool)",
        )

    def cut(b: Budget) -> tuple[list[np.ndarray], dict[str, Any]]:
        if c.diversity is None:
            return prefix_cut(paths, b, c.policy)
        return balanced_cut(
            paths,
            b,
            c.diversity_allocation,
            target=target_counts(run),
            smoothing=TARGET_SMOOTHING,
            plain_share=PLAIN_SHARE,
        )

    # Token budgets, absolute or a share, are met in exact tokens (DESIGN: exact budgets).
    if resolved.unit == "tokens" and estimated:
        per_shard, decision = correct_to_exact(cut, paths, resolved, eligible_tokens)
        if budget.unit == "fraction":
            decision.update(pool_exact_over_estimate=pool_ratio, pool_exact_sample_docs=pool_sampled)
    else:
        per_shard, decision = cut(resolved)
    columns: dict[str, dict[int, np.ndarray]] = {}
    if c.diversity is not None:  # selected rows carry their cluster (the embedding is not kept)
        columns["kmeans_cluster"] = {}
        for s, p, r in zip(shards, paths, per_shard, strict=True):
            columns["kmeans_cluster"][s.index] = read_spill(p)["row_col"][r].astype(np.int32)
    decision["resolved"] = {"unit": resolved.unit, "amount": resolved.amount}
    return Decision(
        rows={s.index: r for s, r in zip(shards, per_shard, strict=True)}, columns=columns, stats=decision
    )


def _finalize(run: JobRun) -> Finalize:
    counter = _scorer(run).counter
    return Finalize(counter=counter, exact=counter if counter.exact else exact_or_none())


def _summary(run: JobRun) -> dict[str, Any]:
    return build_summary(run, _finalize(run).exact, _scorer(run).counter)


def select_job(config: SelectConfig) -> Job:
    if config.quality is not None:
        from curate.stages.quality import check_model_file

        check_model_file(config.quality)  # a clear error before any work

    def validate(dataset: str, shard: Any, schema: Any) -> None:
        if dataset == "input" and config.group_by and config.group_by not in schema.names:
            raise UsageError(
                f"{shard.path}: no group-by column {config.group_by!r}; columns present: {', '.join(schema.names)}"
            )

    phases = (
        *importance_phases(lambda run: run.out / MODEL_ARTIFACT, side=sample_in_raw_fit(config)),
        *prefilter_phases(),
        *diversity_phases(),
        Keys(name="score", task=collect_keys, args=_keys_args),
        Decide(name="decide", decide=_decide),
        Write(
            name="write",
            pipeline=_write_pipeline,
            finalize=_finalize,
            summarize=lambda run: Summarize(spec=run.get("importance model").spec),
            group_by=lambda run: run.config.group_by,
        ),
    )
    return Job(
        kind="select",
        config=config,
        inputs={"input": config.pool, "target": config.target},
        columns={
            "input": Columns(text=config.text_column, id=config.id_column, sidecars=config.sidecars),
            "target": Columns(text=config.target_text_column or config.text_column),
        },
        output=config.output,
        phases=phases,
        summarize=_summary,
        validate=validate,
        batch_size=config.batch_size,
        hints={"target": "the target's text column is set with --target-text-column"},
    )
