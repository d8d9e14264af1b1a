"""`curate resample`: Gumbel top-k without replacement on a log-weight column, to a budget.

keys (every row's key and cost, spilled per shard) -> decide (the exact global prefix, memory
O(selected)) -> write (the chosen rows of every shard).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.budget import Budget, human_count
from curate.engine.job import Job, JobRun
from curate.engine.phases import Decide, Decision, Keys, ShardResults, Write
from curate.engine.tasks import collect_keys
from curate.errors import UsageError
from curate.io.inputs import Columns, DatasetSpec
from curate.pipeline import Pipeline
from curate.stages.resample import GumbelTopK
from curate.steps.budget import prefix_cut
from curate.steps.profile import selection_distribution
from curate.types import TEXT


@dataclass(frozen=True, kw_only=True)
class ResampleConfig:
    input: DatasetSpec
    output: str
    selector: GumbelTopK
    sidecars: tuple[str, ...] = ()
    text_column: str = TEXT
    id_column: str | None = None
    batch_size: int = 4096


def spill_paths(run: JobRun, phase: str = "keys") -> list[str]:
    keys: ShardResults = run.get(phase)
    return [keys.paths[s.index] for s in run.shards()]


def _decide(run: JobRun) -> Decision:
    selector: GumbelTopK = run.config.selector
    paths = spill_paths(run)
    budget = selector.budget
    cost = rows = 0
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            ok = np.isfinite(z["key"])
            rows += int(ok.sum())
            cost += int(z["cost"][ok].sum())
    if not cost:
        raise UsageError(
            f"nothing to select: no row has a finite {selector.by!r} and a nonzero cost ({rows:,} finite)"
        )
    if budget.unit == "fraction":
        budget = Budget(unit="tokens", amount=float(np.ceil(budget.amount * cost)))
    if budget.amount > cost:
        raise UsageError(
            f"budget {selector.budget} is larger than the selectable rows: {human_count(cost)} "
            f"{budget.unit} in {rows:,} rows with a finite {selector.by!r}",
            hint="lower the budget, or use a percentage such as 50%",
        )
    per_shard, decision = prefix_cut(paths, budget, selector.policy)
    return Decision(
        rows={s.index: r for s, r in zip(run.shards(), per_shard, strict=True)},
        stats={
            **decision,
            "budget_resolved": {"unit": budget.unit, "amount": budget.amount},
            "selectable_rows": rows,
        },
    )


def _summary(run: JobRun) -> dict[str, Any]:
    selector: GumbelTopK = run.config.selector
    decision: Decision = run.get("decide")
    written = run.get("write").total()
    resolved = decision.stats["budget_resolved"]
    return {
        "budget": str(selector.budget),
        "budget_resolved": resolved,
        "selected_rows": written.rows_out,
        "selected_cost": decision.stats["selected_cost"],
        "budget_error": (decision.stats["selected_cost"] - resolved["amount"]) / resolved["amount"],
        "pool_rows": run.get("keys").total().rows_in,
        "selectable_rows": decision.stats["selectable_rows"],
        "mode": "top-k" if selector.top_k else "gumbel resampling",
        "policy": selector.policy,
        "seed": selector.seed,
        "by": selector.by,
        "key_threshold": decision.stats["key_threshold"],
        "distribution": selection_distribution(run.get("keys"), decision, run.shards()),
    }


def resample_job(config: ResampleConfig) -> Job:
    def validate(dataset: str, shard: Any, schema: Any) -> None:
        config.selector.validate(schema, shard.path)

    return Job(
        kind="resample",
        config=config,
        inputs={"input": config.input},
        columns={"input": Columns(text=config.text_column, id=config.id_column, sidecars=config.sidecars)},
        output=config.output,
        phases=(
            Keys(
                name="keys",
                task=collect_keys,
                args=lambda run, s: (Pipeline(stages=()), run.config.selector),
            ),
            Decide(name="decide", decide=_decide),
            Write(name="write"),
        ),
        summarize=_summary,
        validate=validate,
        batch_size=config.batch_size,
    )
