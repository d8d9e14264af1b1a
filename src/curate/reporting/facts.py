"""The key numbers of a run, by job kind, read from its stats (shared by the HTML report and
the Markdown summary)."""

from __future__ import annotations

import math
from typing import Any

# kind -> (path into the stats, label, how to show it); the first matching kind prefix wins.
KEY_NUMBERS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "select": (
        ("selected_docs", "documents selected", "count"),
        ("selected_tokens", "tokens selected", "count"),
        ("budget", "budget", "text"),
        ("budget_error", "vs budget", "signed%"),
        ("doc_share", "share of the pool's documents", "%"),
        ("token_share", "share of the pool's tokens", "%"),
        ("kl_reduction", "KL reduction toward the target (nats)", "float"),
        ("pool_docs", "pool documents", "count"),
        ("too_short", "too short to select", "count"),
        ("diversity.clusters_covered", "clusters covered", "count"),
    ),
    "resample": (
        ("selected_rows", "rows selected", "count"),
        ("selected_cost", "selected (budget units)", "count"),
        ("budget", "budget", "text"),
        ("budget_error", "vs budget", "signed%"),
        ("pool_rows", "pool rows", "count"),
        ("by", "score column", "text"),
    ),
    "diversify": (
        ("selected_docs", "documents selected", "count"),
        ("selected_cost", "selected (budget units)", "count"),
        ("budget", "budget", "text"),
        ("budget_error", "vs budget", "signed%"),
        ("clusters_covered", "clusters covered", "count"),
        ("clusters_nonempty", "clusters with documents", "count"),
        ("pool_docs", "pool documents", "count"),
    ),
    "bids": (
        ("selected_docs", "rows selected", "count"),
        ("selected_cost", "selected (budget units)", "count"),
        ("budget", "budget", "text"),
        ("budget_error", "vs budget", "signed%"),
        ("mode", "mode", "text"),
        ("pool_docs", "pool rows", "count"),
    ),
    "dedup exact": (
        ("rows_in", "rows in", "count"),
        ("rows_out", "rows kept", "count"),
        ("duplicates_dropped", "duplicates dropped", "count"),
        ("largest_group", "largest group of copies", "count"),
    ),
    "dedup minhash": (
        ("rows_in", "rows in", "count"),
        ("rows_out", "rows kept", "count"),
        ("near_duplicates_dropped", "near-duplicates dropped", "count"),
        ("clusters", "duplicate clusters", "count"),
        ("largest_cluster", "largest cluster", "count"),
        ("threshold", "Jaccard threshold", "float"),
    ),
    "filter threshold": (
        ("rows_in", "rows in", "count"),
        ("rows_out", "rows kept", "count"),
        ("column", "column", "text"),
        ("threshold", "threshold", "float"),
    ),
    "": (
        ("report.rows_in", "rows in", "count"),
        ("report.rows_out", "rows out", "count"),
    ),
}


def lookup(stats: dict[str, Any], path: str) -> Any:
    """The value at a dotted path, or None."""
    value: Any = stats
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def show(value: Any, how: str = "auto") -> str:
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if how == "%":
        return f"{100 * value:.2f}%"
    if how == "signed%":
        return f"{100 * value:+.2f}%"
    if how == "count" or isinstance(value, int):
        return f"{int(value):,}" if float(value).is_integer() else f"{value:,.1f}"
    return f"{value:.4g}"


def key_numbers(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, shown value) of the run's key numbers that its stats hold."""
    kind = str(stats.get("kind", ""))
    spec = KEY_NUMBERS.get(kind) or next(v for k, v in KEY_NUMBERS.items() if kind.startswith(k))
    rows = [
        (label, show(lookup(stats, path), how))
        for path, label, how in spec
        if lookup(stats, path) is not None
    ]
    drops = lookup(stats, "report.drops") or {}
    rows += [
        (f"dropped: {reason}", show(n, "count")) for reason, n in sorted(drops.items(), key=lambda kv: -kv[1])
    ]
    return rows
