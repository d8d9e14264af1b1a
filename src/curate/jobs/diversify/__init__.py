"""`curate diversify`: cluster-balanced selection to a budget (METHODS §5.1): allocate shares to
the k-means clusters, then Gumbel top-k inside each.

With `previous` (an earlier selection from this pool) it is a refinement round (§5.2): the
budget (documents) is spread by softmax weights of per-cluster scores, drawn from the rows not
selected yet, and the output holds the previous selection plus the new rows.

keys (cluster, quality, id hash, cost per row; spilled) [+ previous (the earlier selection's id
hashes and scores)] -> decide (shares, then the cut, streamed over the spills) -> write.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.budget import Budget
from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.errors import SchemaError, UsageError
from curate.io.inputs import Columns, DatasetSpec, Shard, shard_schema
from curate.jobs.diversify.keys import keys_unit, previous_unit
from curate.stages.diversity import (
    KMEANS_CLUSTER,
    balanced_from_parts,
    refinement_counts,
    refinement_weights,
    selection_keys,
)
from curate.steps.budget import profile_of
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class DiversifyConfig:
    input: DatasetSpec
    output: str
    budget: Budget
    allocation: str = "proportional"
    quality_column: str | None = None
    temperature: float = 1.0
    tokens_column: str = "n_tokens"
    group_by: str | None = None
    previous: str | None = None
    cluster_scores: str | None = None
    score_column: str | None = None
    score_temperature: float = 1.0
    seed: int = 0
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096

    def __post_init__(self) -> None:
        if self.allocation not in ("proportional", "equal"):
            raise UsageError(f"unknown allocation {self.allocation!r}; allowed: proportional, equal")
        if self.temperature <= 0:
            raise UsageError(f"--temperature must be positive, got {self.temperature}")
        if self.previous is not None:
            if self.budget.unit != "docs":
                raise UsageError("a refinement round (--previous) takes a document budget, e.g. docs:10000")
            if (self.cluster_scores is None) == (self.score_column is None):
                raise UsageError(
                    "a refinement round needs exactly one of --cluster-scores FILE or --score-column C"
                )
        elif self.cluster_scores is not None or self.score_column is not None:
            raise UsageError("--cluster-scores and --score-column need --previous (the earlier selection)")

    @property
    def unit(self) -> str:
        return "tokens" if self.budget.unit == "fraction" else self.budget.unit


def read_cluster_scores(path: str) -> dict[int, float]:
    """A JSON object {"cluster id": score} (or a list of scores indexed by cluster)."""
    try:
        raw = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UsageError(f"--cluster-scores {path}: not a readable JSON file ({exc})") from exc
    try:
        if isinstance(raw, list):
            return {i: float(v) for i, v in enumerate(raw) if v is not None}
        return {int(k): float(v) for k, v in raw.items()}
    except (TypeError, ValueError, AttributeError) as exc:
        raise UsageError(
            f'--cluster-scores {path}: expected {{"cluster": score, ...}} or a list of scores ({exc})'
        ) from exc


def _previous(run: JobRun) -> tuple[np.ndarray, dict[int, float]]:
    c: DiversifyConfig = run.config
    spills: ShardResults = run.get("previous")
    ties, clusters, values = [], [], []
    for s in run.shards("previous"):
        with np.load(spills.paths[s.index], allow_pickle=False) as z:
            ties.append(z["tie"])
            clusters.append(z["cluster"])
            values.append(z["value"])
    scores: dict[int, float] = {}
    if c.score_column is not None and clusters:
        cl, v = np.concatenate(clusters), np.concatenate(values)
        ok = (cl >= 0) & np.isfinite(v)
        for k in np.unique(cl[ok]):
            scores[int(k)] = float(v[ok & (cl == k)].mean())
    if c.cluster_scores is not None:
        scores = read_cluster_scores(c.cluster_scores)
    return (np.concatenate(ties) if ties else np.zeros(0, np.uint64)), scores


def _decide(run: JobRun) -> Decision:
    c: DiversifyConfig = run.config
    shards = run.shards()
    spills: ShardResults = run.get("keys")
    paths = [spills.paths[s.index] for s in shards]

    def raw(i: int) -> dict[str, np.ndarray]:
        with np.load(paths[i], allow_pickle=False) as z:
            return {k: z[k] for k in z.files}

    def selectable_of(z: dict[str, np.ndarray]) -> np.ndarray:
        ok = z["cluster"] >= 0
        return ok & np.isfinite(z["quality"]) if c.quality_column else ok

    prev_ties, scores = _previous(run) if c.previous is not None else (None, {})
    # one scan of the spills for the pool's totals; the selection then streams them (memory:
    # the candidates and the selection, not the pool)
    pool_docs = selectable_docs = pool_cost = prev_docs = prev_cost = left = k = 0
    for i in range(len(paths)):
        z = raw(i)
        ok = selectable_of(z)
        pool_docs += len(ok)
        selectable_docs += int(ok.sum())
        pool_cost += int(z["cost"][ok].sum())
        if ok.any():
            k = max(k, int(z["cluster"][ok].max()) + 1)
        if prev_ties is not None:
            was = np.isin(z["tie"], prev_ties)
            prev_docs += int(was.sum())
            prev_cost += int(z["cost"][was].sum())
            left += int((ok & ~was).sum())
    resolved = c.budget.resolve(pool_cost)
    if not pool_cost:
        raise UsageError(
            f"nothing to select: none of the {pool_docs:,} rows has a cluster, a score and a cost"
        )
    if resolved.amount > pool_cost:
        raise UsageError(
            f"budget {c.budget} is larger than the selectable pool ({pool_cost:,} {c.unit})",
            hint="lower the budget or use a percentage",
        )
    refine: dict[str, Any] = {}
    weights = None
    if prev_ties is not None:
        if prev_docs == 0:
            raise UsageError(f"--previous {c.previous}: none of its rows are in {c.input}")
        weights, unseen = refinement_weights(scores, k, temperature=c.score_temperature)
        counts = refinement_counts(weights, int(resolved.amount), c.seed)
        if resolved.amount > left:
            raise UsageError(
                f"budget {c.budget}: only {left:,} selectable rows are not in the previous selection"
            )
        weights = counts.astype(np.float64)
        refine = {
            "previous_docs": prev_docs,
            "clusters_scored": k - unseen,
            "clusters_given_the_prior": unseen,
            "weights_top10": [
                {"cluster": int(x), "draws": int(counts[x])} for x in np.argsort(-counts)[:10] if counts[x]
            ],
        }

    def load(i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        z = raw(i)
        key = selection_keys(
            z["tie"],
            c.seed,
            quality=z["quality"] if c.quality_column else None,
            temperature=c.temperature,
            exclude=np.isin(z["tie"], prev_ties) if prev_ties is not None else None,
        )
        return key, z["tie"], z["cost"], z["cluster"]

    sel = balanced_from_parts(
        load, len(paths), budget=resolved.amount, allocation=c.allocation, weights=weights
    )
    per_shard = list(sel.rows)
    if prev_ties is not None:  # the output is the previous selection plus this round
        for i in range(len(paths)):
            per_shard[i] = np.union1d(per_shard[i], np.flatnonzero(np.isin(raw(i)["tie"], prev_ties)))
    vocabs = [spills.reports[s.index].extra.get("groups", []) for s in shards]
    stats: dict[str, Any] = {
        "budget_resolved": {"unit": resolved.unit, "amount": resolved.amount},
        "selected_docs": int(sum(len(r) for r in per_shard)),
        "selected_cost": sel.selected_cost + prev_cost,
        "budget_error": (sel.selected_cost - resolved.amount) / resolved.amount,
        "pool_docs": pool_docs,
        "selectable_docs": selectable_docs,
        "pool_cost": pool_cost,
        **sel.report(),
        "profile": profile_of(sel),
    }
    if refine:
        stats["refinement"] = {**refine, "new_docs": sel.selected_docs}
    if c.group_by:
        stats["groups"] = _group_stats(raw, len(paths), per_shard, selectable_of, vocabs)
    return Decision(rows={s.index: r for s, r in zip(shards, per_shard, strict=True)}, stats=stats)


def _group_stats(
    raw: Callable[[int], dict[str, np.ndarray]],
    parts: int,
    per_shard: list[np.ndarray],
    selectable_of: Callable[[dict[str, np.ndarray]], np.ndarray],
    vocabs: list[list[str]],
) -> dict[str, Any]:
    """Per-group share of the pool's and of the selection's cost, and groups covered."""
    before: dict[str, float] = {}
    after: dict[str, float] = {}
    for i in range(parts):
        z = raw(i)
        names = vocabs[i]
        ok = selectable_of(z)
        chosen = np.zeros(len(ok), bool)
        chosen[per_shard[i]] = True
        pool_sum = np.bincount(z["group"][ok], weights=z["cost"][ok], minlength=len(names))
        sel_sum = np.bincount(z["group"][chosen], weights=z["cost"][chosen], minlength=len(names))
        for j, name in enumerate(names):
            before[name] = before.get(name, 0.0) + float(pool_sum[j])
            after[name] = after.get(name, 0.0) + float(sel_sum[j])
    tb, ta = max(sum(before.values()), 1.0), max(sum(after.values()), 1.0)
    order = sorted(before, key=lambda g: -before[g])
    return {
        "groups_in_pool": sum(1 for v in before.values() if v > 0),
        "groups_selected": sum(1 for v in after.values() if v > 0),
        "share": {g: {"pool": before[g] / tb, "selected": after[g] / ta} for g in order[:50]},
    }


def _summary(run: JobRun) -> dict[str, Any]:
    c: DiversifyConfig = run.config
    stats = dict(run.get("decide").stats)
    has_tokens = all(c.tokens_column in shard_schema(s, run.columns()).names for s in run.shards())
    groups = stats.pop("groups", None)
    refinement = stats.pop("refinement", None)
    summary: dict[str, Any] = {
        "budget": str(c.budget),
        "budget_resolved": stats.pop("budget_resolved"),
        "unit": c.unit,
        "token_counter": (c.tokens_column if has_tokens else "exact cl100k")
        if c.unit == "tokens"
        else c.unit,
        **stats,
        "allocation": c.allocation,
        "quality": c.quality_column,
        "temperature": c.temperature,
        "seed": c.seed,
    }
    if refinement:
        summary["refinement"] = refinement
    if groups is not None:
        summary["groups"] = groups
        summary["group_by"] = c.group_by
    return summary


def _validate(config: DiversifyConfig) -> Callable[[str, Shard, Any], None]:
    def validate(dataset: str, shard: Shard, schema: Any) -> None:
        names = schema.names
        if dataset == "previous":
            if config.score_column is not None and (
                config.score_column not in names or KMEANS_CLUSTER not in names
            ):
                raise SchemaError(
                    f"{shard.path}: --score-column needs columns {config.score_column!r} and {KMEANS_CLUSTER!r}"
                )
            return
        for c in [KMEANS_CLUSTER, config.quality_column, config.group_by]:
            if c and c not in names:
                raise SchemaError(
                    f"{shard.path}: no column {c!r}",
                    hint="run `curate cluster` first" if c == KMEANS_CLUSTER else None,
                )

    return validate


def diversify_job(config: DiversifyConfig) -> Job:
    inputs: dict[str, DatasetSpec] = {"input": config.input}
    columns = Columns(text=config.text_column, id=config.id_column)
    if config.previous is not None:
        inputs["previous"] = config.previous
    c = config
    return Job(
        kind="diversify",
        config=config,
        inputs=inputs,
        columns={"input": columns, "previous": columns},
        output=config.output,
        phases=(
            Keys(
                name="keys",
                task=keys_unit,
                args=lambda run, s: (c.quality_column, c.unit, c.tokens_column, c.group_by),
            ),
            Keys(
                name="previous",
                task=previous_unit,
                args=lambda run, s: (c.score_column,),
                dataset="previous",
                on_demand=True,
            ),
            Decide(name="decide", decide=_decide),
            Write(name="write"),
        ),
        summarize=_summary,
        validate=_validate(config),
        batch_size=config.batch_size,
    )
