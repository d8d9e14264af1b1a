"""Small inline SVG charts for the HTML report: bars, overlaid histograms and lines.

Hand-written rather than matplotlib: the report must be one self-contained file that opens
anywhere, the charts are four simple kinds, and SVG text is exact, small and deterministic
(the same run gives the same bytes), with no 40 MB plotting dependency at start-up. Every
label is escaped here; numbers are formatted by `fmt`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

WIDTH, HEIGHT = 640, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 44
COLORS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52", "#8172b3")


def fmt(x: float) -> str:
    """A number for a label: 12.3K, 4.5M, 0.123, 1,234."""
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return str(x)
    ax = abs(x)
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if ax >= max(size, 1e4):
            return f"{x / size:.3g}{suffix}"
    if float(x).is_integer() or ax >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}"


def _frame(title: str, body: list[str], height: int = HEIGHT) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="chart">'
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle" class="title">{escape(title)}</text>'
        + "".join(body)
        + "</svg>"
    )


def _legend(names: Sequence[str], y: float = 16) -> list[str]:
    out = []
    x = WIDTH - RIGHT - 110 * len(names)
    for i, name in enumerate(names):
        out.append(
            f'<rect x="{x + 110 * i}" y="{y + 8}" width="10" height="10" fill="{COLORS[i % len(COLORS)]}"/>'
            f'<text x="{x + 110 * i + 14}" y="{y + 17}" class="legend">{escape(name)}</text>'
        )
    return out


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> list[str]:
    """Axes with 5 ticks each; data coordinates map into the plot box."""
    out = [
        f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" class="axis"/>',
        f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" class="axis"/>',
    ]
    for i in range(5):
        fx, fy = i / 4, i / 4
        px = LEFT + fx * (WIDTH - LEFT - RIGHT)
        py = HEIGHT - BOTTOM - fy * (HEIGHT - TOP - BOTTOM)
        out.append(
            f'<text x="{px:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle">{fmt(x0 + fx * (x1 - x0))}</text>'
        )
        out.append(
            f'<text x="{LEFT - 4}" y="{py + 4:.1f}" text-anchor="end">{fmt(y0 + fy * (y1 - y0))}</text>'
        )
    out.append(
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(xlabel)}</text>'
    )
    out.append(
        f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" '
        f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(ylabel)}</text>'
    )
    return out


class _Scale:
    def __init__(self, x0: float, x1: float, y0: float, y1: float) -> None:
        self.x0, self.x1 = x0, x1 if x1 > x0 else x0 + 1
        self.y0, self.y1 = y0, y1 if y1 > y0 else y0 + 1

    def x(self, v: float) -> float:
        return LEFT + (v - self.x0) / (self.x1 - self.x0) * (WIDTH - LEFT - RIGHT)

    def y(self, v: float) -> float:
        return HEIGHT - BOTTOM - (v - self.y0) / (self.y1 - self.y0) * (HEIGHT - TOP - BOTTOM)


def histogram(
    title: str,
    edges: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    marks: Mapping[str, float | None] | None = None,
) -> str:
    """Each series as a share of its own total per bin (so a small selection and a large pool
    compare), drawn as overlaid steps; `marks` are labelled vertical lines (a cut)."""
    shares = {}
    for name, counts in series.items():
        total = sum(counts) or 1
        shares[name] = [c / total for c in counts]
    top = max((max(v) for v in shares.values() if v), default=1.0) or 1.0
    s = _Scale(edges[0], edges[-1], 0, top)
    body = _axes(edges[0], edges[-1], 0, top, xlabel, "share of documents")
    for i, (name, vals) in enumerate(shares.items()):
        pts = [f"{s.x(edges[0]):.1f},{s.y(0):.1f}"]
        for j, v in enumerate(vals):
            pts += [f"{s.x(edges[j]):.1f},{s.y(v):.1f}", f"{s.x(edges[j + 1]):.1f},{s.y(v):.1f}"]
        pts.append(f"{s.x(edges[-1]):.1f},{s.y(0):.1f}")
        color = COLORS[i % len(COLORS)]
        body.append(
            f'<polygon points="{" ".join(pts)}" fill="{color}" fill-opacity="0.35" stroke="{color}">'
            f"<title>{escape(name)}</title></polygon>"
        )
    for label, at in (marks or {}).items():
        if at is not None and math.isfinite(at) and edges[0] <= at <= edges[-1]:
            x = s.x(at)
            body.append(f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{HEIGHT - BOTTOM}" class="mark"/>')
            body.append(
                f'<text x="{x + 3:.1f}" y="{TOP + 10}" class="mark-label">{escape(label)} {fmt(at)}</text>'
            )
    return _frame(title, body + _legend(list(shares)))


def line(
    title: str,
    xs: Sequence[float],
    series: Mapping[str, Sequence[float]],
    *,
    xlabel: str,
    ylabel: str,
    hline: tuple[str, float] | None = None,
) -> str:
    """Lines over shared x values; `hline` is a labelled horizontal line (a budget)."""
    ys = [v for vals in series.values() for v in vals]
    top = max([*ys, hline[1] if hline else 0.0, 1.0])
    s = _Scale(min(xs, default=0.0), max(xs, default=1.0), 0, top * 1.05)
    body = _axes(s.x0, s.x1, 0, top * 1.05, xlabel, ylabel)
    for i, (name, vals) in enumerate(series.items()):
        pts = " ".join(f"{s.x(x):.1f},{s.y(y):.1f}" for x, y in zip(xs, vals, strict=True))
        body.append(
            f'<polyline points="{pts}" fill="none" stroke="{COLORS[i % len(COLORS)]}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
        )
    if hline is not None:
        y = s.y(hline[1])
        body.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}" class="mark"/>')
        body.append(
            f'<text x="{LEFT + 4}" y="{y - 4:.1f}" class="mark-label">{escape(hline[0])} {fmt(hline[1])}</text>'
        )
    return _frame(title, body + _legend(list(series)))


def bars(
    title: str, labels: Sequence[str], series: Mapping[str, Sequence[float]], *, percent: bool = False
) -> str:
    """Horizontal grouped bars, one row per label (long labels are cut, full text on hover)."""
    labels = list(labels)[:40]
    n = max(len(series), 1)
    row = 8 + 12 * n
    height = TOP + 20 + row * max(len(labels), 1) + 24
    top = max((v for vals in series.values() for v in list(vals)[: len(labels)]), default=1.0) or 1.0
    left, width = 200, WIDTH - 200 - RIGHT - 60
    body = []
    for j, label in enumerate(labels):
        y0 = TOP + 20 + j * row
        short = label if len(label) <= 30 else label[:29] + "…"
        body.append(
            f'<text x="{left - 6}" y="{y0 + row / 2 + 3:.1f}" text-anchor="end"><title>{escape(label)}</title>'
            f"{escape(short)}</text>"
        )
        for i, vals in enumerate(series.values()):
            v = float(list(vals)[j]) if j < len(vals) else 0.0
            w = max(v / top * width, 0.0)
            y = y0 + 4 + 12 * i
            body.append(
                f'<rect x="{left}" y="{y}" width="{w:.1f}" height="10" fill="{COLORS[i % len(COLORS)]}"/>'
            )
            text = f"{100 * v:.1f}%" if percent else fmt(v)
            body.append(f'<text x="{left + w + 4:.1f}" y="{y + 9}" class="value">{text}</text>')
    return _frame(title, body + (_legend(list(series)) if len(series) > 1 else []), height=height)
