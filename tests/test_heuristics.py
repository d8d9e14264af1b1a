"""Quality signals: the kernel agrees with the reference; rule sets behave on real text."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate import native
from tests import reference_heuristics as ref

PIECES = st.sampled_from(
    [
        "the",
        "The",
        "cat",
        "of",
        "and",
        "with",
        "A",
        "x",
        "#",
        "...",
        "…",
        "{",
        "lorem",
        "ipsum",
        "Lorem Ipsum",
        "javascript",
        "privacy policy",
        "é",
        "中文",
        "•",
        "-",
        "*",
        ".",
        "!",
        "?",
        "'",
        "”",
        " ",
        "  ",
        "\n",
        "\n\n",
        "\n \n",
        "\t",
        "\r\n",
        "cat.",
        "mat!",
        "word",
        "1234",
    ]
)
DOCS = st.lists(PIECES, max_size=60).map("".join)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(DOCS, min_size=1, max_size=6))
def test_signals_match_reference(docs: list[str]) -> None:
    got = native.heuristic_signals(pa.array(docs), threads=2)
    for i, d in enumerate(docs):
        expected = ref.signals(d.encode())
        for j, name in enumerate(native.HEURISTIC_SIGNALS):
            assert got[i, j] == pytest.approx(expected[name], abs=1e-12), (name, d)


def test_repetitive_text_scores_as_repetitive(python_source_texts: list[str]) -> None:
    prose = "The parser reads each line of the input and builds a tree of nodes for the compiler.\n" * 1
    spam = "Buy cheap watches now. " * 60
    real = python_source_texts[5]
    m = native.heuristic_signals(pa.array([prose, spam, real]))
    col = {name: m[:, j] for j, name in enumerate(native.HEURISTIC_SIGNALS)}
    assert col["top_2gram_char_frac"][1] > 0.2 > col["top_2gram_char_frac"][0]
    assert col["dup_10gram_char_frac"][1] > 0.9
    assert np.all(np.isfinite(m))


def test_empty_and_null_texts_are_zero() -> None:
    m = native.heuristic_signals(pa.array(["", None, "   \n  "]))
    chars = native.HEURISTIC_SIGNALS.index("chars")
    assert np.all(m[:2] == 0)
    assert m[2, chars] == 6 and np.all(np.delete(m[2], chars) == 0)
