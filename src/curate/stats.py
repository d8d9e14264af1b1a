"""The stats JSON's schema: every field a command writes (--stats-json, the manifest's summary),
documented here and rendered to docs/stats.md (`make docs`; a test keeps it current). The
golden runs fail on a field not named here, so the document cannot fall behind the code.

Stability: within one `schema` version, fields are only added. Renaming or removing one, or
changing what it means, is a new version, so a CI job that compares two runs (`curate diff`)
or checks one (`--check`) keeps working across releases of the same version.
"""

from __future__ import annotations

from typing import Any

from curate import __version__

SCHEMA = "curate.stats/1"
STATS_HEADER = {"schema": SCHEMA, "curate_version": __version__}

COMMON = {
    "schema": "the schema version, `curate.stats/1`",
    "curate_version": "the curate release that wrote it",
    "kind": "the command: `select`, `dedup minhash`, `filter gopher`, ...",
    "timings": "per pass: `seconds`, `text_mb`, `mb_per_s`, `mb_per_s_per_worker` (varies run to run)",
    "workers": "worker processes used (with Ray: tasks in flight at most)",
    "executor": "`local` or `ray`",
    "peak_rss_mb": "peak resident memory in MB: `driver`, and `workers` where measured",
    "resumed": "the phases (and shards) this run took from an earlier, killed run",
    "failed_shards": "under --keep-going: shard path -> why it was left out (absent when none)",
}

MAP_REPORT = {
    "report": "the rows: `rows_in`, `rows_out`, `text_bytes`, `null_text`, `empty_text`, `drops` "
    "(rule -> rows dropped), `nulls` (column -> null values added), `files`, `seconds`",
}

SELECTION = {
    "budget": "the budget as given, e.g. `10B tokens`, `docs:1M`",
    "budget_resolved": "`unit` (tokens, docs, bytes) and `amount` (a percentage resolved)",
    "budget_error": "(selected - budget) / budget, in the budget's unit",
    "seed": "the seed of every random choice",
    "key_threshold": "the smallest selection key kept (log weight / temperature + Gumbel noise)",
    "mode": "`gumbel resampling` or `top-k`",
    "policy": "`cover` (>= budget) or `under` (<= budget)",
    "distribution": "for the report: `score` (histogram `edges`, `pool` and `selected` counts) "
    "and `rank` (cumulative `docs` and `cost` with `key`, best first)",
}

DIVERSITY = {
    "clusters": "k",
    "clusters_nonempty": "clusters with a selectable document",
    "clusters_covered": "clusters the selection takes a document from",
    "clusters_covered_per_budget_percent": "clusters covered per percent of the pool selected",
    "budget_share_per_cluster": "`max`, `median_of_covered`, `top10` (cluster, selected and pool share)",
    "leftover_fill_docs": "documents taken after every cluster's share was spent (rounding)",
    "driver_candidate_rows": "rows the driver held at once",
    "profile": "for the report: `size_log2_histogram`, `empty_clusters`, `largest_first` shares",
}

BY_KIND: dict[str, dict[str, str]] = {
    "select": {
        **SELECTION,
        "token_counter": "how the selection counted tokens (an exact tokenizer, or a calibrated estimate)",
        "reported_token_counter": "how `selected_tokens` was counted",
        "selected_docs": "documents selected",
        "selected_tokens": "tokens selected, by `reported_token_counter`",
        "selected_tokens_estimate": "tokens selected by the estimate (null with an exact counter)",
        "selected_bytes": "UTF-8 bytes of the selected text",
        "exact_correction": "the exact-token check: `exact_sample_docs`, `exact_over_estimate`, "
        "`exact_sample_band`, `corrected_budget`; for a share of the pool (`--budget 1%`), "
        "`pool_exact_over_estimate` and `pool_exact_sample_docs`, the ratio that resolved it in exact tokens",
        "pool_docs": "documents in the pool",
        "pool_tokens": "tokens in the pool (selection counter)",
        "pool_bytes": "UTF-8 bytes of the pool's text",
        "selectable_docs": "documents that can be selected (long enough, not removed by a prefilter)",
        "selectable_tokens": "their tokens",
        "doc_share": "selected documents / pool documents",
        "token_share": "selected tokens / pool tokens (selection counter)",
        "null_text": "rows with a null text",
        "empty_text": "rows with an empty text",
        "too_short": "documents under `min_words`",
        "min_words": "the --min-words floor",
        "length_norm": "`per-chunk` or `sum`",
        "kl_target_raw": "KL(target || pool) over the hashed n-grams, in nats",
        "kl_target_selected": "KL(target || selection)",
        "kl_reduction": "kl_target_raw - kl_target_selected: positive when the selection moved toward the target",
        "kl_smoothing": "how the KL was smoothed",
        "hash": "the n-gram hashing: `buckets`, `order`, `lowercase`",
        "importance_model": "what the model was fitted on: `target`, `raw`, documents and units used",
        "groups": "with --group-by: per value, `pool_docs`, `pool_tokens`, `pool_share`, "
        "`selected_docs`, `selected_tokens`, `selected_share` (null without)",
        "group_by": "the --group-by column (null without)",
        "shards": "pool shards",
        "prefilter": "with --dedup or --quality: documents each removed before selection (null without)",
        "diversity": "with --diversity: `k`, `allocation`, `kmeans`, `target_clusters`, "
        "`target_clusters_covered`, `target_docs_in_covered_clusters` and the diversify fields",
    },
    "resample": {
        **SELECTION,
        "by": "the score column the weights come from",
        "selected_rows": "rows selected",
        "selected_cost": "their cost in the budget's unit",
        "pool_rows": "rows in the input",
        "selectable_rows": "rows with a finite score",
    },
    "diversify": {
        **{k: SELECTION[k] for k in ("budget", "budget_resolved", "budget_error", "seed")},
        **DIVERSITY,
        "unit": "the budget's unit",
        "token_counter": "the token column, or the exact counter",
        "selected_docs": "documents selected",
        "selected_cost": "their cost in the budget's unit",
        "pool_docs": "documents in the input",
        "pool_cost": "their cost",
        "selectable_docs": "documents with a cluster (and a finite quality)",
        "allocation": "how clusters share the budget: proportional, equal, ...",
        "quality": "the --quality-column (null without)",
        "temperature": "the softmax temperature of the key",
        "groups": "with --group-by: `groups_in_pool`, `groups_selected`, `share` (value -> pool, selected)",
        "group_by": "with --group-by: the column",
        "refinement": "with --previous: clusters scored, the prior's weights and the new documents",
    },
    "bids": {
        "budget": SELECTION["budget"],
        "budget_resolved": SELECTION["budget_resolved"],
        "budget_error": SELECTION["budget_error"],
        "mode": "`argmin_task` or `max_gain`",
        "selected_docs": "rows selected",
        "selected_cost": "their cost in the budget's unit",
        "pool_docs": "rows in the input",
        "selectable_docs": "rows with a finite influence on every example",
        "tasks": "task -> its validation examples",
        "per_task": "task -> `bids_mean_influence`, `bids_share` and the same for `less_top_k` (LESS's "
        "top-k on the max-over-tasks mean at the same budget): mean normalised influence, and the share "
        "of the selection whose strongest task it is",
    },
    "dedup exact": {
        "rows_in": "rows read",
        "rows_out": "rows kept",
        "duplicates_dropped": "rows dropped as copies of a kept row",
        "distinct_texts": "distinct normalised texts",
        "groups_with_copies": "texts seen more than once",
        "largest_group": "copies of the most repeated text",
        "kept": "which copy is kept",
        "normalisation": "how texts are normalised before hashing",
        "null_text": "rows with a null text",
        "empty_text": "rows with an empty text",
    },
    "dedup minhash": {
        "rows_in": "rows read",
        "rows_out": "rows kept",
        "near_duplicates_dropped": "rows dropped as near-duplicates of a kept row",
        "clusters": "clusters of near-duplicates",
        "largest_cluster": "documents in the largest",
        "threshold": "the Jaccard threshold",
        "num_perm": "MinHash permutations",
        "bands": "LSH bands",
        "rows_per_band": "rows per band",
        "banded_pairs": "pairs sharing a band",
        "candidate_pairs": "pairs past the signature screen",
        "linked_pairs": "pairs verified at or above the threshold",
        "screen": "the signature-estimate floor of the screen",
        "verify": "`exact` (shingle Jaccard) or `signature`",
        "shingles": "the shingling: words, n and normalisation",
        "signature_mb": "signature spill size",
        "signature_seconds": "time spent on signatures",
    },
    "filter threshold": {
        "rows_in": "rows read",
        "rows_out": "rows kept",
        "column": "the score column",
        "threshold": "with --keep-top: the score of the last row kept (null without)",
        "min": "lower bound applied (null when none)",
        "max": "upper bound applied (null when none)",
        "keep_top": "the --keep-top share (null without)",
        "drops": "reason -> rows dropped",
        "global": "that percentiles are over the whole input",
        "distribution": "for the report: `score` histogram of the column, pool vs kept",
    },
    "cluster": {
        "k": "clusters",
        "dim": "embedding dimension",
        "rows": "rows read",
        "rows_with_embedding": "rows with an embedding",
        "sample_rows": "rows k-means was fitted on",
        "iterations": "Lloyd passes",
        "converged": "whether it converged before the pass limit",
        "inertia_per_pass": "mean squared distance after each pass",
        "reseeded_empty_clusters": "empty clusters reseeded",
        "cluster_sizes": "`clusters`, `nonempty`, `min`, `median`, `max`, `log2_histogram`",
        "device": "where k-means ran",
    },
    "embed": {"embedder": "`method`, `dim`, `seed`, `idf_docs`, `spec`", **MAP_REPORT},
    "reweight": {
        "column": "the loss column",
        "strategy": "the reweighting rule",
        "min": "smallest weight",
        "max": "largest weight",
        "rows": "rows read",
        "rows_with_loss": "rows with a loss",
        **MAP_REPORT,
    },
    "score combine": {
        "columns": "score columns combined",
        "weights": "their weights",
        "lower_is_better": "columns negated first",
        "normalisation": "how each column is normalised",
        "missing": "column -> rows missing it",
        "output_column": "the combined column",
        **MAP_REPORT,
    },
    "importance fit": {
        "model": "the model file",
        "format": "its format",
        "hash": "`buckets`, `order`, `lowercase`",
        "kernel_version": "the n-gram kernel's version",
        "length_norm": "`per-chunk` or `sum`",
        "min_words": "the --min-words floor",
        "ref_words": "words per chunk of the per-chunk treatment",
        "raw_features": "raw features fitted on",
        "target_features": "target features fitted on",
        "target_laplace": "Laplace smoothing of the target",
        "bytes_per_token": "the token estimate's calibration",
        "tokens_per_word": "likewise, per word",
        "token_calibration": "how it was calibrated",
        "provenance": "what the model was fitted on",
    },
    "train fasttext": {
        "model": "the model file",
        "balance": "how classes were balanced",
        "train_docs": "training documents",
        "distinct_train_docs": "distinct ones",
        "holdout_docs": "held-out documents",
        "holdout_accuracy": "accuracy on them",
        "holdout_auc": "ROC AUC on them",
        "settings": "fastText's settings",
    },
    "train lora": {
        "base": "the base model folder",
        "docs": "warm-up documents (2 tokens or more)",
        "steps": "optimiser steps",
        "targets": "the modules LoRA adapted",
        "parameters": "LoRA parameters",
        "final_loss": "the last document's loss",
        "checkpoints": "checkpoints saved",
    },
    "train combine": {"output": "the weights file", "weights": "learned weights", "fit": "fit statistics"},
    "train lm": {
        "parameters": "model parameters",
        "steps": "optimiser steps",
        "train_docs": "training documents",
        "train_bytes": "their bytes",
        "holdout_docs": "held-out documents",
        "holdout_loss_before": "held-out loss before training",
        "holdout_loss_after": "and after",
        "final_train_loss": "last training loss",
        "curve": "loss by step",
        "device": "where it trained",
        "seconds": "training time",
    },
}
MAP_KINDS = (
    "featurize",
    "filter gopher",
    "filter c4",
    "filter fineweb",
    "score importance",
    "score fasttext",
    "score heuristics",
    "score lm",
    "score influence",
)
for _kind in MAP_KINDS:
    BY_KIND[_kind] = dict(MAP_REPORT)


def fields_of(kind: str) -> dict[str, str]:
    return {**COMMON, **BY_KIND.get(kind, MAP_REPORT)}


def undocumented(stats: dict[str, Any]) -> list[str]:
    """Top-level fields of a stats JSON that its kind's schema does not name."""
    kind = str(stats.get("kind"))
    if kind not in BY_KIND:
        return [f"kind {kind!r}"]
    known = fields_of(kind)
    return [f"{kind}: {name}" for name in stats if name not in known]


def markdown() -> str:
    """docs/stats.md."""
    doc = (__doc__ or "").split("\n\n", 1)[1].strip()
    out = [
        "# The stats JSON",
        "",
        f"Schema `{SCHEMA}`. Every command writes it with `--stats-json FILE` and keeps it as the "
        "`summary` of its output folder's `_manifest.json`. Checks (`--check`, `curate check`, "
        "recipe `checks`) and `curate diff` name its fields by dotted paths: `kl_reduction`, "
        '`report.drops["gopher: fewer than 50 words"]`, `groups[0].selected_share`.',
        "",
        doc,
        "",
        "Generated from `curate.stats` by `make docs`; do not edit by hand.",
        "",
        "## Every command",
        "",
        "| field | meaning |",
        "| --- | --- |",
        *[f"| `{k}` | {v} |" for k, v in COMMON.items()],
    ]
    for kind in sorted(BY_KIND):
        out += ["", f"## {kind}", "", "| field | meaning |", "| --- | --- |"]
        out += [f"| `{k}` | {v} |" for k, v in BY_KIND[kind].items()]
    return "\n".join(out) + "\n"
