"""Heuristic quality signals and the rule sets built on them (Gopher, C4, FineWeb).

`HeuristicSignals` adds one column per signal, computed by the compiled kernel in one pass per
document (definitions: src/native/heuristics.hpp and tests/reference_heuristics.py). The rule
filters read those columns (computing them if absent) and drop a document at its first failing
rule, counting drops per rule. Thresholds are the published ones: Gopher (Rae et al. 2021),
C4 as in DataTrove's C4 quality filter (document level: the line removals are not applied,
curate never rewrites text), and FineWeb's extra rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.errors import UsageError, did_you_mean
from curate.stages.base import Annotator, Filter, FilterResult, StageContext
from curate.stages.rules import RULE_SETS
from curate.types import TEXT

# signal -> output column; counts are int64, ratios float64
COLUMNS: dict[str, str] = {
    "words": "gopher_words",
    "mean_word_length": "gopher_mean_word_length",
    "symbol_word_ratio": "gopher_symbol_word_ratio",
    "bullet_lines_ratio": "gopher_bullet_lines_ratio",
    "ellipsis_lines_ratio": "gopher_ellipsis_lines_ratio",
    "alpha_words_ratio": "gopher_alpha_words_ratio",
    "stop_words": "gopher_stop_words",
    "dup_line_frac": "gopher_dup_line_frac",
    "dup_line_char_frac": "gopher_dup_line_char_frac",
    "dup_para_frac": "gopher_dup_para_frac",
    "dup_para_char_frac": "gopher_dup_para_char_frac",
    **{f"top_{n}gram_char_frac": f"gopher_top_{n}gram_char_frac" for n in (2, 3, 4)},
    **{f"dup_{n}gram_char_frac": f"gopher_dup_{n}gram_char_frac" for n in range(5, 11)},
    "lines": "c4_lines",
    "sentences": "c4_sentences",
    "has_lorem_ipsum": "c4_has_lorem_ipsum",
    "has_curly_bracket": "c4_has_curly_bracket",
    "javascript_lines": "c4_javascript_lines",
    "policy_lines": "c4_policy_lines",
    "terminal_punct_lines_ratio": "fineweb_line_punct_ratio",
    "short_lines_ratio": "fineweb_short_line_ratio",
    "dup_line_char_frac@fw": "fineweb_char_dup_ratio",
    "newline_word_ratio": "fineweb_list_ratio",
}
COUNTS = {
    "words",
    "stop_words",
    "lines",
    "sentences",
    "has_lorem_ipsum",
    "has_curly_bracket",
    "javascript_lines",
    "policy_lines",
}


def _type(signal: str) -> pa.DataType:
    return pa.int64() if signal in COUNTS else pa.float64()


@dataclass(frozen=True, kw_only=True)
class HeuristicSignals(Annotator):
    """Annotator: every Gopher, C4 and FineWeb signal as a column (null for null/empty text)."""

    name: ClassVar[str] = "heuristics"
    threads: int = 1

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {col: _type(sig.split("@")[0]) for sig, col in COLUMNS.items()}

    def setup(self, ctx: StageContext) -> None:
        object.__setattr__(self, "threads", max(1, ctx.threads))

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        texts = batch.column(TEXT)
        m = native.heuristic_signals(texts, threads=self.threads)
        empty = pc.fill_null(pc.equal(pc.binary_length(texts), 0), True).to_numpy(zero_copy_only=False)
        index = {name: j for j, name in enumerate(native.HEURISTIC_SIGNALS)}
        out = {}
        for sig, col in COLUMNS.items():
            base = sig.split("@")[0]
            values = m[:, index[base]]
            typ = _type(base)
            out[col] = pa.array(
                values.astype(np.int64) if typ == pa.int64() else values, type=typ, mask=empty
            )
        return out


NULL_TEXT = "null or empty text"


@dataclass(frozen=True, kw_only=True)
class RuleFilter(Filter):
    """Filter: drop documents failing any rule of a set; each drop is counted under its first
    failing rule. Signals are computed when their columns are absent."""

    name: ClassVar[str] = "rules"
    rule_set: str
    threads: int = 1

    def __post_init__(self) -> None:
        if self.rule_set not in RULE_SETS:
            raise UsageError(
                f"unknown rule set {self.rule_set!r}{did_you_mean(self.rule_set, RULE_SETS)}; allowed: {', '.join(RULE_SETS)}"
            )

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def reasons(self, batch: pa.RecordBatch) -> np.ndarray:
        """Per row: '' when kept, else the first failing rule's name."""
        needed = {r.column for r in RULE_SETS[self.rule_set]}
        cols = {c: batch.column(c) for c in needed if c in batch.schema.names}
        if len(cols) < len(needed):
            cols = {**HeuristicSignals(threads=self.threads).annotate(batch), **cols}
        reason = np.full(batch.num_rows, "", dtype=object)
        texts = batch.column(TEXT)
        empty = pc.fill_null(pc.equal(pc.binary_length(texts), 0), True).to_numpy(zero_copy_only=False)
        reason[empty] = NULL_TEXT
        for rule in RULE_SETS[self.rule_set]:
            values = np.asarray(
                pc.fill_null(pc.cast(cols[rule.column], pa.float64()), np.nan).to_numpy(zero_copy_only=False)
            )
            failed = ~rule.passes(values) & (reason == "")
            reason[failed] = rule.name
        return reason

    def keep(self, batch: pa.RecordBatch) -> FilterResult:
        reason = self.reasons(batch)
        names, counts = np.unique(reason[reason != ""], return_counts=True)
        return FilterResult(
            keep=reason == "", drops=dict(zip(names.tolist(), counts.tolist(), strict=True)), reasons=reason
        )
