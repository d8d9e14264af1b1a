"""Everything the CLI shows on stderr. The only module that imports rich, and only when it
first prints: a command pays for rich when it has something to show, not at start-up."""

from __future__ import annotations

import sys
from functools import cache
from typing import Any

from curate.budget import human_count


@cache
def _consoles() -> tuple[Any, Any]:
    from rich.console import Console

    return Console(stderr=True, highlight=False), Console(highlight=False)


def _err() -> Any:
    return _consoles()[0]


def _out() -> Any:
    return _consoles()[1]


def _escape(text: str) -> str:
    from rich.markup import escape

    return str(escape(text))


def _table(**kw: Any) -> Any:
    from rich.table import Table

    return Table(**kw)


def error(message: str, hint: str | None = None) -> None:
    _err().print(f"[bold red]error:[/] {_escape(message)}", soft_wrap=True)
    if hint:
        _err().print(f"[yellow]hint:[/] {_escape(hint)}", soft_wrap=True)


def info(message: str) -> None:
    _err().print(_escape(message), soft_wrap=True)


class RichProgress:
    """Implements curate.progress.Progress with rich bars on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled and sys.stderr.isatty()
        self._bars: Any = None
        self._tasks: dict[str, Any] = {}

    def _ensure(self) -> Any:
        if self._bars is None:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

            self._bars = Progress(
                TextColumn("[bold]{task.description:<11}"),
                BarColumn(),
                TextColumn("{task.fields[done]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=_err(),
                transient=False,
            )
            self._bars.start()
        return self._bars

    def start(self, phase: str, total: int, unit: str = "B") -> None:
        if not self.enabled:
            return
        bars = self._ensure()
        self._tasks[phase] = bars.add_task(phase, total=max(total, 1), done="", unit=unit)

    def advance(self, phase: str, amount: int) -> None:
        if not self.enabled or phase not in self._tasks:
            return
        assert self._bars is not None
        task = self._tasks[phase]
        self._bars.advance(task, amount)
        t = self._bars.tasks[task]
        unit = t.fields.get("unit", "B")
        done = (
            f"{human_count(t.completed)}B"
            if unit == "B"
            else f"{int(t.completed)}/{int(t.total or 0)} {unit}"
        )
        self._bars.update(task, done=done)

    def end(self, phase: str) -> None:
        if not self.enabled or phase not in self._tasks:
            return
        assert self._bars is not None
        t = self._tasks[phase]
        self._bars.update(t, completed=self._bars.tasks[t].total)

    def log(self, message: str) -> None:
        info(message)

    def close(self) -> None:
        if self._bars is not None:
            self._bars.stop()
            self._bars = None


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:+.2f}%"


def select_report(s: dict[str, Any]) -> None:
    """The report at the end of `curate select`."""
    t = _table(title="curate select", show_header=False, title_justify="left", box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column()
    unit = s["budget_resolved"]["unit"]
    t.add_row("budget", f"{s['budget']} ({s['mode']}, policy {s['policy']}, seed {s['seed']})")
    t.add_row(
        "selected",
        f"{s['selected_docs']:,} docs, {human_count(s['selected_tokens'])} tokens, "
        f"{human_count(s['selected_bytes'])}B  ({s['doc_share'] * 100:.2f}% of docs, {s['token_share'] * 100:.2f}% of tokens)",
    )
    t.add_row("token counter", f"selection: {s['token_counter']}")
    if s["reported_token_counter"] != s["token_counter"]:
        corr = s.get("exact_correction") or {}
        note = ""
        if "corrected_budget" in corr:
            where = (
                "selected"
                if corr.get("exact_sample_band", 1) == 1
                else f"top-{corr['exact_sample_band']:g}x-budget"
            )
            note = (
                f"; estimate corrected on {corr['exact_sample_docs']:,} {where} docs counted exactly "
                f"(exact/estimate {corr['exact_over_estimate']:.3f})"
            )
        t.add_row("", f"reported: {s['reported_token_counter']}{note}")
    if "diversity" in s:
        d = s["diversity"]
        t.add_row(
            "diversity",
            f"k={d['k']} ({d['allocation']}): {d.get('clusters_covered', 0):,} of {d.get('clusters_nonempty', 0):,} "
            f"clusters covered; largest cluster {d.get('budget_share_per_cluster', {}).get('max', 0) * 100:.1f}% "
            f"of the selection; k-means {d.get('kmeans', {}).get('passes', '?')} passes",
        )
        if "target_clusters" in d:
            t.add_row(
                "",
                f"target: in {d['target_clusters']:,} clusters, {d['target_clusters_covered']:,} of them covered "
                f"({d['target_docs_in_covered_clusters'] * 100:.1f}% of its documents)",
            )
    t.add_row(f"vs budget ({unit})", _pct(s["budget_error"]))
    t.add_row(
        "pool",
        f"{s['pool_docs']:,} docs, {human_count(s['pool_tokens'])} tokens in {s['shards']} shards; "
        f"{s['selectable_docs']:,} selectable",
    )
    skipped = []
    if s["null_text"]:
        skipped.append(f"{s['null_text']:,} null")
    if s["empty_text"]:
        skipped.append(f"{s['empty_text']:,} empty")
    if s["too_short"]:
        skipped.append(f"{s['too_short']:,} under {s['min_words']} words")
    t.add_row("not selectable", ", ".join(skipped) or "none")
    t.add_row(
        "KL reduction",
        f"{s['kl_reduction']:.4f} nats  (KL(target||raw) {s['kl_target_raw']:.4f} -> "
        f"KL(target||selected) {s['kl_target_selected']:.4f})",
    )
    t.add_row(
        "log-weights",
        f"length treatment {s['length_norm']}; hash {s['hash']['buckets']} buckets, order {s['hash']['order']}",
    )
    pre = s.get("prefilter") or {}
    if pre.get("dedup"):
        t.add_row("dedup", f"{pre['dedup']}: {pre['dedup_dropped']:,} duplicates not selectable")
    if pre.get("quality_model"):
        t.add_row(
            "quality",
            f"top {pre['quality_keep'] * 100:g}% by fastText (p >= {pre['quality_threshold']:.4g}): "
            f"{pre['quality_dropped']:,} documents not selectable",
        )
    if s.get("peak_rss_mb"):
        t.add_row(
            "peak memory",
            f"driver {s['peak_rss_mb']['driver']:.0f} MB, largest worker {s['peak_rss_mb']['workers']:.0f} MB",
        )
    if s.get("resumed"):
        t.add_row("resumed", ", ".join(s["resumed"]))
    _err().print(t)
    if s.get("groups"):
        g = _table(title=f"share by {s['group_by']} (tokens)", title_justify="left")
        for col in ("group", "pool docs", "pool share", "selected docs", "selected share"):
            g.add_column(col, justify="right" if col != "group" else "left")
        for row in s["groups"]:
            g.add_row(
                _escape(row["group"]),
                f"{row['pool_docs']:,}",
                f"{row['pool_share'] * 100:.1f}%",
                f"{row['selected_docs']:,}",
                f"{row['selected_share'] * 100:.1f}%",
            )
        _err().print(g)
    timings_table(s.get("timings", {}))


def timings_table(timings: dict[str, dict[str, float]]) -> None:
    if not timings:
        return
    p = _table(title="passes", title_justify="left")
    for col in ("pass", "seconds", "text MB", "MB/s", "MB/s/worker"):
        p.add_column(col, justify="right" if col != "pass" else "left")
    for name, v in timings.items():
        p.add_row(
            name,
            f"{v['seconds']:.2f}",
            f"{v['text_mb']:.1f}",
            f"{v['mb_per_s']:.1f}",
            f"{v['mb_per_s_per_worker']:.1f}",
        )
    _err().print(p)


def stage_table(title: str, report: dict[str, Any], seconds: float) -> None:
    t = _table(title=title, title_justify="left")
    for col in ("rows in", "rows out", "null text", "empty text", "text MB", "seconds", "MB/s"):
        t.add_column(col, justify="right")
    mb = report["text_bytes"] / 1e6
    t.add_row(
        f"{report['rows_in']:,}",
        f"{report['rows_out']:,}",
        f"{report['null_text']:,}",
        f"{report['empty_text']:,}",
        f"{mb:.1f}",
        f"{seconds:.2f}",
        f"{mb / seconds if seconds > 0 else 0:.1f}",
    )
    _err().print(t)
    for reason, n in sorted(report.get("drops", {}).items()):
        info(f"  dropped {n:,} rows: {reason}")
    for col, n in sorted(report.get("nulls", {}).items()):
        info(f"  {n:,} rows have a null {col} (null/empty text or too short to score)")


def kv_table(title: str, rows: list[tuple[str, str]]) -> None:
    t = _table(title=title, show_header=False, title_justify="left", box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, v)
    _err().print(t)


def inspect_report(info: dict[str, Any]) -> None:
    """`curate inspect` prints to stdout: the summary is what the user asked for."""
    rows = [
        ("path", info["path"]),
        ("shards", f"{info['shards']} ({human_count(info['bytes_on_disk'])}B on disk)"),
        ("rows", f"{info['rows']:,}"),
    ]
    if info["text_bytes"] is not None:
        rows.append(("text", f"{human_count(info['text_bytes'])}B, {info['null_text']:,} null"))
    if info["tokens"] is not None:
        rows.append(("tokens", f"{human_count(info['tokens'])} ({info['token_counter']})"))
    m = info.get("manifest")
    if m:
        rows.append(
            ("curate run", "complete" if m["complete"] else "incomplete (rerun the command to resume)")
        )
    t = _table(title="curate inspect", show_header=False, title_justify="left", box=None)
    t.add_column(style="bold")
    t.add_column()
    for k, v in rows:
        t.add_row(k, _escape(str(v)))
    _out().print(t)
    sch = _table(title="schema", title_justify="left")
    sch.add_column("column")
    sch.add_column("type")
    for name, typ in info["schema"]:
        sch.add_row(_escape(name), _escape(typ))
    _out().print(sch)
    for i, r in enumerate(info["sample"]):
        _out().print(f"[bold]row {i}[/]")
        for k, v in r.items():
            _out().print(f"  [cyan]{_escape(str(k))}[/]: {_escape(repr(v))}", soft_wrap=True)


def diversify_report(s: dict[str, Any], seconds: float) -> None:
    """The report at the end of `curate diversify`."""
    unit = s["unit"]
    share = s["budget_share_per_cluster"]
    rows = [
        ("budget", f"{s['budget']} ({s['allocation']} allocation, seed {s['seed']})"),
        (
            "selected",
            f"{s['selected_docs']:,} of {s['selectable_docs']:,} docs, {human_count(s['selected_cost'])} {unit} "
            f"({_pct(s['budget_error'])} vs budget; counter: {s['token_counter']})",
        ),
        (
            "clusters",
            f"{s['clusters_covered']:,} of {s['clusters_nonempty']:,} covered "
            f"({s['clusters_covered_per_budget_percent']:.1f} per 1% of the pool)",
        ),
        (
            "budget per cluster",
            f"largest {share['max'] * 100:.2f}%, median of covered {share['median_of_covered'] * 100:.3f}%",
        ),
        ("inside clusters", f"by {s['quality']} / {s['temperature']:g}" if s["quality"] else "uniform"),
        ("seconds", f"{seconds:.2f}"),
    ]
    if "refinement" in s:
        r = s["refinement"]
        draws = ", ".join(f"{d['cluster']}: {d['draws']}" for d in r["weights_top10"][:5])
        rows.append(
            (
                "refinement",
                f"{r['previous_docs']:,} previous + {r['new_docs']:,} new docs; {r['clusters_scored']} clusters "
                f"scored, {r['clusters_given_the_prior']} given the mean score; most draws {draws}",
            )
        )
    if "groups" in s:
        g = s["groups"]
        rows.append(("groups", f"{g['groups_selected']:,} of {g['groups_in_pool']:,} in the selection"))
        for name, v in list(g["share"].items())[:8]:
            rows.append(
                (f"  {name}", f"{v['pool'] * 100:.1f}% of pool -> {v['selected'] * 100:.1f}% of selection")
            )
    kv_table("curate diversify", rows)
