"""Canonical column names and small shared value types."""

from __future__ import annotations

TEXT = "text"
ID = "id"
N_TOKENS = "n_tokens"

# Columns a stage adds are named <stage>_<field>.
DSIR_LOG_WEIGHT = "dsir_log_weight"
NGRAM_BUCKETS = "ngram_buckets"
NGRAM_COUNTS = "ngram_counts"
