"""Checks over a run's stats JSON, for CI data jobs: `kl_reduction >= 0.2`,
`abs(budget_error) <= 0.01`, `rows_out >= 1M and near_duplicates_dropped <= 5%`.

A small expression language, parsed here and never passed to `eval`:
- names: paths into the stats JSON, dotted (`diversity.clusters_covered`) or subscripted
  (`peak_rss_mb["driver"]`, `groups[0]`); an unknown name is an error listing the close ones;
- numbers, with the budget suffixes K, M, B, T (x 1e3 ... 1e12) or % (/ 100);
- arithmetic `+ - * /`, comparisons `< <= > >= == !=`, `and`, `or`, `not`, parentheses and
  `abs(...)`: `near_duplicates_dropped <= 30% * rows_in`;
- true and false; a string in quotes compares with a string value (`verify == "exact"`).

A failed check exits with FAILED_CHECK_EXIT (3), after the outputs are written: they are valid,
only judged.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from curate.errors import UsageError

FAILED_CHECK_EXIT = 3
SUFFIX = {"K": 1e3, "M": 1e6, "B": 1e9, "T": 1e12, "%": 0.01}
TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d*)?(?:[eE][-+]?\d+)?[KMBT%]?)
    | (?P<str>"[^"]*"|'[^']*')
    | (?P<op><=|>=|==|!=|<|>|\(|\)|\[|\]|\.|,|-|\+|\*|/)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    )""",
    re.VERBOSE,
)
COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}


@dataclass
class CheckResult:
    expression: str
    passed: bool
    values: dict[str, Any]  # each name the expression read, with its value

    def describe(self) -> str:
        shown = ", ".join(f"{k} = {show_value(v)}" for k, v in self.values.items())
        return f"{self.expression}  ({shown})" if shown else self.expression


def show_value(v: Any) -> str:
    """A value as checks print it (also in reports and summaries)."""
    return f"{v:.6g}" if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    text = text.rstrip()
    while pos < len(text):
        m = TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise UsageError(f"check {text!r}: cannot read {text[pos:].strip()[:20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str, stats: dict[str, Any]) -> None:
        self.text, self.stats, self.toks, self.i = text, stats, _tokens(text), 0
        self.values: dict[str, Any] = {}

    def peek(self) -> str | None:
        return self.toks[self.i][1] if self.i < len(self.toks) else None

    def take(self, want: str | None = None) -> tuple[str, str]:
        if self.i >= len(self.toks):
            raise UsageError(f"check {self.text!r}: ends early" + (f" (expected {want!r})" if want else ""))
        tok = self.toks[self.i]
        if want is not None and tok[1] != want:
            raise UsageError(f"check {self.text!r}: expected {want!r}, found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        value = self.disjunction()
        if self.i != len(self.toks):
            raise UsageError(f"check {self.text!r}: unexpected {self.toks[self.i][1]!r}")
        return value

    def disjunction(self) -> Any:
        value = self.conjunction()
        while self.peek() == "or":
            self.take()
            right = self.conjunction()  # every side is evaluated, so every name is checked
            value = bool(value) or bool(right)
        return value

    def conjunction(self) -> Any:
        value = self.negation()
        while self.peek() == "and":
            self.take()
            right = self.negation()
            value = bool(value) and bool(right)
        return value

    def negation(self) -> Any:
        if self.peek() == "not":
            self.take()
            return not self.negation()
        return self.comparison()

    def comparison(self) -> Any:
        left = self.sum()
        if self.peek() in COMPARE:
            op = self.take()[1]
            right = self.sum()
            try:
                return COMPARE[op](left, right)
            except TypeError:
                raise UsageError(
                    f"check {self.text!r}: cannot compare {show_value(left)} {op} {show_value(right)}"
                ) from None
        return left

    def sum(self) -> Any:
        value = self.product()
        while self.peek() in ("+", "-"):
            op = self.take()[1]
            value = self._arith(op, value, self.product())
        return value

    def product(self) -> Any:
        value = self.unary()
        while self.peek() in ("*", "/"):
            op = self.take()[1]
            value = self._arith(op, value, self.unary())
        return value

    def _arith(self, op: str, a: Any, b: Any) -> float:
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (a, b))
        if not numbers:
            raise UsageError(f"check {self.text!r}: cannot compute {show_value(a)} {op} {show_value(b)}")
        if op == "/" and b == 0:
            raise UsageError(f"check {self.text!r}: division by zero ({show_value(a)} / 0)")
        return float({"+": a + b, "-": a - b, "*": a * b}[op] if op != "/" else a / b)

    def unary(self) -> Any:
        if self.peek() == "-":
            self.take()
            value = self.unary()
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise UsageError(f"check {self.text!r}: cannot negate {show_value(value)}")
            return -value
        return self.atom()

    def atom(self) -> Any:
        kind, tok = self.take()
        if kind == "num":
            scale = SUFFIX.get(tok[-1], 1.0)
            return float(tok.rstrip("KMBT%")) * scale
        if kind == "str":
            return tok[1:-1]
        if tok == "(":
            value = self.disjunction()
            self.take(")")
            return value
        if kind != "name":
            raise UsageError(f"check {self.text!r}: unexpected {tok!r}")
        if tok in ("true", "false"):
            return tok == "true"
        if tok == "abs" and self.peek() == "(":
            self.take("(")
            value = self.disjunction()
            self.take(")")
            if not isinstance(value, int | float):
                raise UsageError(f"check {self.text!r}: abs() of {show_value(value)}")
            return abs(value)
        return self.path(tok)

    def path(self, first: str) -> Any:
        name, value = first, self._get(self.stats, first, first)
        while self.peek() in (".", "["):
            if self.take()[1] == ".":
                key: Any = self.take()[1]
                name += f".{key}"
            else:
                sign = -1 if self.peek() == "-" and self.take() else 1
                kind, raw = self.take()
                if kind == "num" and raw[-1].isdigit() and float(raw).is_integer():
                    key = sign * int(float(raw))
                    raw = str(key)
                elif kind == "str" and sign == 1:
                    key = raw[1:-1]
                else:
                    raise UsageError(f"check {self.text!r}: {name}[...] takes a quoted key or a whole number")
                self.take("]")
                name += f"[{raw}]"
            value = self._get(value, key, name)
        if isinstance(value, dict | list):
            raise UsageError(f"check {self.text!r}: {name} is not a single value", hint=_keys_hint(value))
        if isinstance(value, float) and math.isnan(value):
            raise UsageError(f"check {self.text!r}: {name} is NaN in these stats")
        self.values[name] = value
        return value

    def _get(self, container: Any, key: Any, name: str) -> Any:
        if isinstance(container, dict) and key in container:
            return container[key]
        if isinstance(container, list) and isinstance(key, int) and -len(container) <= key < len(container):
            return container[key]
        names = all_names(self.stats)
        close = _close(name, names)
        raise UsageError(
            f"check {self.text!r}: no {name!r} in the stats"
            + (f"; close: {', '.join(close)}" if close else ""),
            hint="the names are paths into the run's stats JSON (--stats-json); see docs/ci.md",
        )


def _keys_hint(value: dict[str, Any] | list[Any]) -> str:
    if isinstance(value, dict):
        return f"its keys: {', '.join(sorted(map(str, value))[:12])}"
    return f"a list of {len(value)}: index it, e.g. [0]"


def _close(name: str, names: list[str]) -> list[str]:
    import difflib

    return difflib.get_close_matches(name, names, n=4, cutoff=0.5)


def all_names(stats: Any, prefix: str = "") -> list[str]:
    """Every path to a single value in the stats, as a check would name it."""
    out: list[str] = []
    if isinstance(stats, dict):
        for k, v in stats.items():
            here = (
                f"{prefix}.{k}"
                if prefix and re.fullmatch(r"[A-Za-z_]\w*", str(k))
                else (f'{prefix}["{k}"]' if prefix else str(k))
            )
            out.extend(all_names(v, here) if isinstance(v, dict | list) else [here])
    elif isinstance(stats, list):
        for i, v in enumerate(stats[:50]):
            out.extend(all_names(v, f"{prefix}[{i}]") if isinstance(v, dict | list) else [f"{prefix}[{i}]"])
    return out


def check_syntax(expression: str, where: str) -> None:
    """Raise a RecipeError naming `where` when the check cannot be read (names are judged later,
    against the stats the run writes)."""
    from curate.errors import RecipeError

    try:
        _tokens(expression)
    except UsageError as exc:
        raise RecipeError(f"{where}: {exc.message}") from None
    if not any(op in expression for op in COMPARE) and not re.search(r"\b(true|false)\b", expression):
        raise RecipeError(f"{where}: {expression!r} compares nothing", hint="e.g. kl_reduction >= 0.2")


def evaluate(expression: str, stats: dict[str, Any]) -> CheckResult:
    """One check against a run's stats; errors (syntax, unknown names) are UsageErrors."""
    parser = _Parser(expression, stats)
    value = parser.parse()
    if not isinstance(value, bool):
        raise UsageError(
            f"check {expression!r} is a value ({show_value(value)}), not a test",
            hint="compare it: e.g. kl_reduction >= 0.2",
        )
    return CheckResult(expression=expression, passed=value, values=parser.values)


def markdown_table(results: list[CheckResult]) -> str:
    """The checks as a Markdown table (for a CI job's summary page)."""
    failed = sum(not r.passed for r in results)
    head = f"### curate checks: {len(results) - failed} passed, {failed} failed\n\n"
    rows = ["| | check | values |", "| --- | --- | --- |"]
    for r in results:
        values = ", ".join(f"`{k}` = {show_value(v)}" for k, v in r.values.items())
        rows.append(
            f"| {'pass' if r.passed else '**FAIL**'} | `{r.expression.replace('|', '¦')}` | {values} |"
        )
    return head + "\n".join(rows) + "\n\n"


def run_checks(expressions: list[str], stats: dict[str, Any]) -> list[CheckResult]:
    """Every check, evaluated (all names resolved before any result is reported)."""
    return [evaluate(e, stats) for e in expressions]
