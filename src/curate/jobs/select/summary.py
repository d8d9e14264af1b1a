"""What `curate select` reports, and the per-row work of its write phase: exact token counts
for the selected rows (when the budget used an estimate) and mergeable statistics of them (their
n-gram histogram, for the KL reduction toward the target)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from curate import native
from curate.budget import parse_budget
from curate.engine.job import JobRun
from curate.engine.phases import Decision, ShardResults
from curate.native import HashSpec
from curate.pipeline import peak_rss_mb
from curate.report import group_shares, kl_reduction, merge_groups
from curate.stages.importance import ImportanceModel
from curate.steps.profile import selection_distribution
from curate.tokens import TokenCounter
from curate.types import DSIR_LOG_WEIGHT, N_TOKENS, TEXT

N_TOKENS_ESTIMATE = "n_tokens_estimate"


@dataclass(frozen=True, kw_only=True)
class Finalize:
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
class Summarize:
    spec: HashSpec

    def __call__(self, batch: pa.RecordBatch) -> dict[str, Any]:
        texts = batch.column(TEXT)
        est_col = N_TOKENS_ESTIMATE if N_TOKENS_ESTIMATE in batch.schema.names else N_TOKENS
        return {
            "hist": native.ngram_histogram(texts, self.spec, threads=1),
            "tokens": int(pa.compute.sum(batch.column(est_col)).as_py() or 0),
            "tokens_exact": int(pa.compute.sum(batch.column(N_TOKENS)).as_py() or 0),
        }


def build_summary(run: JobRun, exact: TokenCounter | None, counter: TokenCounter) -> dict[str, Any]:
    config = run.config
    model: ImportanceModel = run.get("importance model")
    keys: ShardResults = run.get("score")
    written: ShardResults = run.get("write")
    decision: Decision = run.get("decide")
    d = decision.stats
    pool = run.shards()
    pass1, pass2 = keys.total(), written.total()
    selected_hist = np.zeros(model.spec.buckets, np.int64)
    sel_est = sel_exact = 0
    for s in pool:
        rep = written.reports.get(s.index)
        for summ in rep.extra.get("summaries", []) if rep is not None else []:
            selected_hist += np.asarray(summ["hist"], dtype=np.int64)
            sel_est += summ["tokens"]
            sel_exact += summ["tokens_exact"]
    extra = [keys.reports[s.index].extra for s in pool]
    pool_tokens = sum(e["pool_tokens"] for e in extra)
    sel_docs = pass2.rows_out
    # With an exact counter at hand, the reported token total is exact; the estimate is kept too.
    sel_tokens = sel_exact if exact is not None else sel_est
    resolved = d["resolved"]
    selected = {"tokens": sel_tokens, "docs": sel_docs, "bytes": pass2.text_bytes}[resolved["unit"]]
    kl = kl_reduction(model.target_counts, model.raw_counts, selected_hist)
    short = pass1.nulls.get(DSIR_LOG_WEIGHT, 0) - pass1.null_text - pass1.empty_text
    summary: dict[str, Any] = {
        "budget": str(parse_budget(config.budget)),
        "budget_resolved": resolved,
        "policy": config.policy,
        "mode": "top-k" if config.top_k else "gumbel resampling",
        "seed": config.seed,
        "token_counter": counter.describe(),
        "reported_token_counter": (exact or counter).describe(),
        "selected_docs": sel_docs,
        "selected_tokens": sel_tokens,
        "selected_tokens_estimate": sel_est if not counter.exact else None,
        "selected_bytes": pass2.text_bytes,
        "budget_error": (selected - resolved["amount"]) / resolved["amount"],
        "exact_correction": {
            k: d[k]
            for k in (
                "exact_sample_docs",
                "exact_over_estimate",
                "exact_sample_band",
                "corrected_budget",
                "pool_exact_over_estimate",
                "pool_exact_sample_docs",
            )
            if k in d
        },
        "pool_docs": pass1.rows_in,
        "pool_tokens": pool_tokens,
        "pool_bytes": pass1.text_bytes,
        "selectable_docs": sum(e["eligible_rows"] for e in extra),
        "selectable_tokens": sum(e["eligible_tokens"] for e in extra),
        "doc_share": sel_docs / max(pass1.rows_in, 1),
        "token_share": sel_est / max(pool_tokens, 1),  # both in the selection counter's units
        "null_text": pass1.null_text,
        "empty_text": pass1.empty_text,
        "too_short": max(short, 0),
        "min_words": config.min_words,
        "length_norm": config.length_norm,
        "key_threshold": d["key_threshold"],
        **kl,
        "kl_smoothing": "selected/raw distributions smoothed with +1e-8 per bucket; natural log",
        "hash": {"buckets": model.spec.buckets, "order": model.spec.order, "lowercase": model.spec.lowercase},
        "importance_model": model.provenance,
        "groups": group_shares(
            merge_groups([e.get("groups", {}) for e in extra]),
            merge_groups(
                [written.reports[s.index].extra.get("groups", {}) for s in pool if s.index in written.reports]
            ),
        )
        if config.group_by
        else None,
        "group_by": config.group_by,
        "timings": run.timings_dict(),
        "workers": run.workers,
        "peak_rss_mb": {
            "driver": round(peak_rss_mb(), 1),
            "workers": max(pass1.peak_rss_mb, pass2.peak_rss_mb),
        },
        "shards": len(pool),
        "resumed": run.resumed,
        "prefilter": run.get("prefilter") if (config.dedup or config.quality) else None,
    }
    summary["distribution"] = selection_distribution(keys, decision, pool)
    if config.diversity is not None:
        from curate.jobs.select.diversity import kmeans_stats

        summary["diversity"] = {
            "k": config.diversity,
            "allocation": config.diversity_allocation,
            **d.get("diversity", {}),
            "kmeans": kmeans_stats(run),
        }
    json.dumps(summary)  # fail here, not in the manifest writer, if something is not JSON-safe
    return summary
