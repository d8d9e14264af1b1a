"""What moved between two runs' stats: every leaf by its path, numbers with their change.

Lists of records keyed by a name (`groups[python_docs].pool_share`) are matched by that name,
not position, so a reordering is not a change; long lists of numbers (histograms) compare as
one value. Fields that differ on every run (timings, memory, workers) are left out unless asked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

VOLATILE = ("timings", "peak_rss_mb", "workers", "executor", "resumed", "signature_seconds", "report.seconds")
RECORD_KEYS = ("group", "cluster", "name", "shard")
LONG_LIST = 10


@dataclass
class Change:
    path: str
    before: Any
    after: Any

    @property
    def kind(self) -> str:
        if self.before is _MISSING:
            return "added"
        if self.after is _MISSING:
            return "removed"
        return "changed"

    @property
    def delta(self) -> float | None:
        a, b = self.before, self.after
        if _number(a) and _number(b):
            return float(b) - float(a)
        return None

    @property
    def relative(self) -> float | None:
        d = self.delta
        if d is None or not self.before:
            return None
        return d / abs(float(self.before))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "kind": self.kind}
        if self.before is not _MISSING:
            out["before"] = self.before
        if self.after is not _MISSING:
            out["after"] = self.after
        if self.delta is not None:
            out["delta"] = self.delta
        return out


class _Missing:
    def __repr__(self) -> str:
        return "–"


_MISSING: Any = _Missing()


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of a stats tree."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(value, list) and value and all(isinstance(x, dict) for x in value):
        key = next((k for k in RECORD_KEYS if all(k in x for x in value)), None)
        for i, x in enumerate(value):
            name = x[key] if key else i
            rest = {k: v for k, v in x.items() if k != key}
            out.update(flatten(rest, f"{prefix}[{name}]"))
    elif isinstance(value, list) and len(value) > LONG_LIST:
        out[prefix] = tuple(value)  # one value: equal or not
    elif isinstance(value, list):
        for i, x in enumerate(value):
            out.update(flatten(x, f"{prefix}[{i}]"))
    else:
        out[prefix] = value
    return out


def _volatile(path: str) -> bool:
    return any(path == v or path.startswith((f"{v}.", f"{v}[")) for v in VOLATILE)


def diff(
    a: dict[str, Any], b: dict[str, Any], *, everything: bool = False, tolerance: float = 0.0
) -> list[Change]:
    """The leaves that differ (numbers by more than `tolerance`, relative), in path order."""
    fa, fb = flatten(a), flatten(b)
    changes = []
    for path in sorted(set(fa) | set(fb)):
        if not everything and _volatile(path):
            continue
        before, after = fa.get(path, _MISSING), fb.get(path, _MISSING)
        if before == after or (
            isinstance(before, float)
            and isinstance(after, float)
            and math.isnan(before)
            and math.isnan(after)
        ):
            continue
        if _number(before) and _number(after) and tolerance:
            scale = max(abs(float(before)), abs(float(after)), 1e-300)
            if abs(float(after) - float(before)) / scale <= tolerance:
                continue
        changes.append(Change(path, before, after))
    return changes


def show_value(v: Any) -> str:
    if v is _MISSING:
        return "–"
    if isinstance(v, tuple):
        return f"[{len(v)} values]"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def render_diff(changes: list[Change]) -> str:
    """A plain-text table: path, before, after, change."""
    if not changes:
        return "no differences\n"
    rows = [("path", "before", "after", "change")]
    for c in changes:
        rel = c.relative
        delta = c.delta
        if delta is not None:
            change = f"{delta:+.6g}" + (f" ({100 * rel:+.2f}%)" if rel is not None else "")
        else:
            change = c.kind
        rows.append((c.path, show_value(c.before), show_value(c.after), change))
    widths = [min(max(len(r[i]) for r in rows), 60) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines) + f"\n{len(changes)} field(s) differ\n"
