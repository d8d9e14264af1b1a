"""The published rule sets over heuristic signals (Gopher, C4, FineWeb), as data: a rule keeps a
document when its signal column compares true to a threshold. Kept free of numpy and pyarrow so
that `curate --help` can list them without loading either (`curate.stages.heuristics` runs them).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Rule:
    name: str
    column: str
    op: str  # ">=", "<=", "==", ">"
    value: float

    def passes(self, values: Any) -> Any:
        fn: Callable[[Any, float], Any] = {
            ">=": operator.ge,
            "<=": operator.le,
            "==": operator.eq,
            ">": operator.gt,
        }[self.op]
        return fn(values, self.value)

    def describe(self) -> str:
        return f"{self.column} {self.op} {self.value:g}"


GOPHER_QUALITY = (
    Rule("gopher: fewer than 50 words", "gopher_words", ">=", 50),
    Rule("gopher: more than 100,000 words", "gopher_words", "<=", 100_000),
    Rule("gopher: mean word length under 3", "gopher_mean_word_length", ">=", 3),
    Rule("gopher: mean word length over 10", "gopher_mean_word_length", "<=", 10),
    Rule("gopher: symbol-to-word ratio over 0.1", "gopher_symbol_word_ratio", "<=", 0.1),
    Rule("gopher: over 90% of lines are bullets", "gopher_bullet_lines_ratio", "<=", 0.9),
    Rule("gopher: over 30% of lines end with an ellipsis", "gopher_ellipsis_lines_ratio", "<=", 0.3),
    Rule("gopher: under 80% of words have a letter", "gopher_alpha_words_ratio", ">=", 0.8),
    Rule("gopher: fewer than 2 stop words", "gopher_stop_words", ">=", 2),
)
GOPHER_REPETITION = (
    Rule("gopher: duplicate lines over 30%", "gopher_dup_line_frac", "<=", 0.3),
    Rule("gopher: duplicate paragraphs over 30%", "gopher_dup_para_frac", "<=", 0.3),
    Rule("gopher: duplicate-line characters over 20%", "gopher_dup_line_char_frac", "<=", 0.2),
    Rule("gopher: duplicate-paragraph characters over 20%", "gopher_dup_para_char_frac", "<=", 0.2),
    Rule("gopher: top 2-gram characters over 20%", "gopher_top_2gram_char_frac", "<=", 0.20),
    Rule("gopher: top 3-gram characters over 18%", "gopher_top_3gram_char_frac", "<=", 0.18),
    Rule("gopher: top 4-gram characters over 16%", "gopher_top_4gram_char_frac", "<=", 0.16),
    *(
        Rule(
            f"gopher: duplicate {n}-gram characters over {limit:.0%}",
            f"gopher_dup_{n}gram_char_frac",
            "<=",
            limit,
        )
        for n, limit in ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10))
    ),
)
C4 = (
    Rule("c4: contains 'lorem ipsum'", "c4_has_lorem_ipsum", "==", 0),
    Rule("c4: contains a curly bracket", "c4_has_curly_bracket", "==", 0),
    Rule("c4: no line ends in terminal punctuation", "fineweb_line_punct_ratio", ">", 0),
    Rule("c4: fewer than 5 sentences", "c4_sentences", ">=", 5),
)
FINEWEB = (
    Rule("fineweb: under 12% of lines end in punctuation", "fineweb_line_punct_ratio", ">=", 0.12),
    Rule("fineweb: over 67% of lines are short", "fineweb_short_line_ratio", "<=", 0.67),
    Rule("fineweb: duplicate-line characters over 1%", "fineweb_char_dup_ratio", "<=", 0.01),
    Rule("fineweb: over 0.3 newlines per word", "fineweb_list_ratio", "<=", 0.3),
)
RULE_SETS: dict[str, tuple[Rule, ...]] = {
    "gopher": GOPHER_QUALITY + GOPHER_REPETITION,
    "c4": C4,
    "fineweb": FINEWEB,
}
