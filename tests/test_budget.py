from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.budget import Budget, parse_budget
from curate.errors import UsageError


@pytest.mark.parametrize(
    ("text", "unit", "amount"),
    [
        ("10B", "tokens", 10e9),
        ("500M", "tokens", 500e6),
        ("25K", "tokens", 25e3),
        ("1000", "tokens", 1000),
        ("1.5b", "tokens", 1.5e9),
        ("docs:1M", "docs", 1e6),
        ("bytes:40G", "bytes", 40e9),
        ("tokens:2T", "tokens", 2e12),
        ("30%", "fraction", 0.3),
        ("100%", "fraction", 1.0),
        ("1e6", "tokens", 1e6),
    ],
)
def test_parse(text: str, unit: str, amount: float) -> None:
    b = parse_budget(text)
    assert b.unit == unit
    assert b.amount == pytest.approx(amount)


@pytest.mark.parametrize("text", ["", "10X", "docs:1.5", "rows:10", "0", "-5M", "150%", "0%", "abc", "docs:"])
def test_bad_budgets_name_the_problem(text: str) -> None:
    with pytest.raises(UsageError) as exc:
        parse_budget(text)
    assert exc.value.hint and "10B" in exc.value.hint


def test_unknown_unit_lists_allowed() -> None:
    with pytest.raises(UsageError, match=r"unknown budget unit 'X'.*K, M, B"):
        parse_budget("10X")


@given(st.integers(1, 10**15))
def test_integers_round_trip(n: int) -> None:
    assert parse_budget(str(n)) == Budget(unit="tokens", amount=float(n))


@given(st.sampled_from(["K", "M", "B", "T"]), st.integers(1, 999))
def test_suffixes_scale(suffix: str, n: int) -> None:
    scale = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[suffix]
    assert parse_budget(f"{n}{suffix}").amount == pytest.approx(n * scale)


def test_fraction_resolves_against_pool() -> None:
    assert parse_budget("25%").resolve(1000) == Budget(unit="tokens", amount=250)
