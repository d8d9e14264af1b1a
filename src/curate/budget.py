"""Selection budgets: `10B`, `500M`, `25K` tokens; `docs:1M`; `bytes:40G`; `30%` of pool tokens."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from curate.errors import UsageError

Unit = Literal["tokens", "docs", "bytes", "fraction"]

_SUFFIX = {"": 1, "K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}
_NUMBER = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE]([+-]?[0-9]+))?\s*([A-Za-z]?)\s*$")
_HINT = "budgets look like 10B, 500M, 25K or 1000 (tokens), docs:1M, bytes:40G, or 30% (of pool tokens)"


@dataclass(frozen=True, kw_only=True)
class Budget:
    """What to stop at: an amount of one unit. Fractions are resolved against the pool."""

    unit: Unit
    amount: float

    def resolve(self, pool_tokens: int) -> Budget:
        """A fraction becomes a token budget once the pool's token count is known."""
        if self.unit != "fraction":
            return self
        return Budget(unit="tokens", amount=math.ceil(self.amount * pool_tokens))

    def __str__(self) -> str:
        if self.unit == "fraction":
            return f"{self.amount * 100:g}% of pool tokens"
        return f"{human_count(self.amount)} {self.unit}"


def _parse_amount(text: str, original: str) -> float:
    m = _NUMBER.match(text)
    if not m:
        raise UsageError(f"cannot parse budget {original!r}", hint=_HINT)
    value = float(m.group(1)) * (10 ** int(m.group(2)) if m.group(2) else 1)
    suffix = m.group(3).upper()
    if suffix not in _SUFFIX:
        raise UsageError(
            f"unknown budget unit {m.group(3)!r} in {original!r}; allowed suffixes: K, M, B (or G), T",
            hint=_HINT,
        )
    return value * _SUFFIX[suffix]


def parse_budget(text: str) -> Budget:
    """Parse a budget string; raises UsageError naming what was wrong."""
    original = text
    s = text.strip()
    if not s:
        raise UsageError("empty budget", hint=_HINT)
    if s.endswith("%"):
        pct = _parse_amount(s[:-1], original)
        if not 0 < pct <= 100:
            raise UsageError(f"a percentage budget must be in (0, 100], got {original!r}", hint=_HINT)
        return Budget(unit="fraction", amount=pct / 100)
    unit: Unit = "tokens"
    if ":" in s:
        prefix, s = s.split(":", 1)
        prefix = prefix.strip().lower()
        allowed = {"tokens": "tokens", "docs": "docs", "bytes": "bytes"}
        if prefix not in allowed:
            raise UsageError(
                f"unknown budget unit {prefix!r} in {original!r}; allowed: tokens:, docs:, bytes:", hint=_HINT
            )
        unit = allowed[prefix]  # type: ignore[assignment]
    amount = _parse_amount(s, original)
    if amount <= 0:
        raise UsageError(f"a budget must be positive, got {original!r}", hint=_HINT)
    if unit == "docs" and amount != int(amount):
        raise UsageError(f"a document budget must be a whole number, got {original!r}", hint=_HINT)
    return Budget(unit=unit, amount=amount)


def human_count(x: float) -> str:
    """1234567 -> '1.23M'."""
    for div, suf in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suf}"
    return f"{x:.0f}" if float(x).is_integer() else f"{x:.3g}"
