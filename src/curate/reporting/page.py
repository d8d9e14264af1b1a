"""A run's report as one self-contained HTML file: inline CSS and SVG, no script, no network.

Everything from the data (document text, column names, paths, the command) is escaped, so a
document holding `<script>` or `</textarea>` stays text. Sections appear when the stats hold
what they show: the same writer serves every job kind, and `curate report` rebuilds the same
page from a finished run's manifest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from html import escape
from typing import Any

from curate.checks import show_value as check_value
from curate.reporting import svg
from curate.reporting.facts import key_numbers, lookup, show

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:980px;
color:#222;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;border-bottom:1px solid #eee;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1a7f37;font-weight:600}.fail{color:#cf222e;font-weight:700}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.badge.pass{background:#1a7f37;color:#fff}.badge.fail{background:#cf222e;color:#fff}
pre{white-space:pre-wrap;word-break:break-word;background:#f6f8fa;padding:8px;border-radius:4px;
max-height:16em;overflow:auto;font-size:12px}
details{margin:.4em 0}summary{cursor:pointer}
.chart{display:block;margin:.8em 0;font-size:11px;max-width:100%;height:auto}
.chart .title{font-size:13px;font-weight:600}.chart .axis{stroke:#888}
.chart .mark{stroke:#cf222e;stroke-dasharray:4 3}.chart .mark-label{fill:#cf222e}
.muted{color:#666}
"""


def _table(rows: Sequence[tuple[str, ...]], head: tuple[str, ...] = ()) -> str:
    out = ["<table>"]
    if head:
        out.append("<tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>")
    for row in rows:
        cells = "".join(
            f'<td class="n">{escape(c)}</td>' if i else f"<td>{escape(c)}</td>" for i, c in enumerate(row)
        )
        out.append(f"<tr>{cells}</tr>")
    return "".join(out) + "</table>"


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{escape(title)}</h2>{body}</section>'


def _checks(checks: list[dict[str, Any]]) -> str:
    rows = []
    for c in checks:
        verdict = '<span class="pass">pass</span>' if c["passed"] else '<span class="fail">FAILED</span>'
        values = ", ".join(f"{k} = {check_value(v)}" for k, v in c.get("values", {}).items())
        rows.append(
            f"<tr><td>{verdict}</td><td><code>{escape(c['expression'])}</code></td><td>{escape(values)}</td></tr>"
        )
    return "<table><tr><th></th><th>check</th><th>values read</th></tr>" + "".join(rows) + "</table>"


def _plots(s: dict[str, Any]) -> list[str]:
    out = []
    dist = s.get("distribution") or {}
    score = dist.get("score")
    if score:
        marks: dict[str, float | None] = {}
        if s.get("kind") == "filter threshold":
            marks = {"keep from": s.get("threshold") if s.get("threshold") is not None else s.get("min")}
        elif s.get("mode") == "top-k":
            marks = {"cut": s.get("key_threshold")}
        label = s.get("by") or s.get("column") or "dsir_log_weight"
        out.append(
            svg.histogram(
                f"{label}: pool vs selection",
                score["edges"],
                {"pool": score["pool"], "selected": score["selected"]},
                xlabel=str(label),
                marks=marks,
            )
        )
    rank = dist.get("rank")
    if rank and rank.get("docs"):
        budget = lookup(s, "exact_correction.corrected_budget") or lookup(s, "budget_resolved.amount")
        unit = lookup(s, "budget_resolved.unit") or "cost"
        out.append(
            svg.line(
                "cumulative budget against rank (best first)",
                rank["docs"],
                {f"cumulative {unit}": rank["cost"] if unit != "docs" else rank["docs"]},
                xlabel="documents taken, best key first",
                ylabel=str(unit),
                hline=("budget", float(budget)) if budget else None,
            )
        )
    out += _group_plots(s)
    drops = dict(lookup(s, "report.drops") or s.get("drops") or {})
    for key, label in (
        ("duplicates_dropped", "exact duplicates"),
        ("near_duplicates_dropped", "near duplicates"),
    ):
        if s.get(key) is not None:
            drops[label] = s[key]
    if lookup(s, "prefilter.dedup_dropped"):
        drops["prefilter: duplicates"] = lookup(s, "prefilter.dedup_dropped")
    if drops:
        ranked = sorted(drops.items(), key=lambda kv: -kv[1])
        out.append(
            svg.bars("rows dropped per rule", [k for k, _ in ranked], {"rows": [v for _, v in ranked]})
        )
    out += _cluster_plots(s.get("profile") or lookup(s, "diversity.profile"))
    per_task = s.get("per_task")
    if per_task:  # BIDS against LESS's top-k at the same budget
        tasks = list(per_task)
        out.append(
            svg.bars(
                "share of the selection by strongest task: BIDS vs LESS top-k",
                tasks,
                {
                    "BIDS": [per_task[t]["bids_share"] for t in tasks],
                    "LESS top-k": [per_task[t]["less_top_k_share"] for t in tasks],
                },
                percent=True,
            )
        )
        out.append(
            svg.bars(
                "mean normalised influence per task",
                tasks,
                {
                    "BIDS": [per_task[t]["bids_mean_influence"] for t in tasks],
                    "LESS top-k": [per_task[t]["less_top_k_mean_influence"] for t in tasks],
                },
            )
        )
    if s.get("kl_target_raw") is not None:
        out.append(
            svg.bars(
                f"KL(target || ·) in nats: reduction {s['kl_reduction']:.4f}",
                ["pool (raw)", "selection"],
                {"KL": [s["kl_target_raw"], s["kl_target_selected"]]},
            )
        )
    return out


def _group_plots(s: dict[str, Any]) -> list[str]:
    groups = s.get("groups")
    if isinstance(groups, list) and groups:  # select: rows per group value
        labels = [str(g["group"]) for g in groups]
        series = {
            "pool": [g["pool_share"] for g in groups],
            "selected": [g["selected_share"] for g in groups],
        }
    elif isinstance(groups, dict) and groups.get("share"):  # diversify
        labels = list(groups["share"])
        series = {
            "pool": [groups["share"][g]["pool"] for g in labels],
            "selected": [groups["share"][g]["selected"] for g in labels],
        }
    else:
        return []
    by = s.get("group_by") or "group"
    return [
        svg.bars(f"share by {by} (tokens or budget units), before and after", labels, series, percent=True)
    ]


def _cluster_plots(profile: dict[str, Any] | None) -> list[str]:
    if not profile:
        return []
    out = []
    hist = profile.get("size_log2_histogram") or []
    if hist:
        labels = [f"{2**i:,}–{2 ** (i + 1) - 1:,} docs" for i in range(len(hist))]
        out.append(svg.bars("clusters by size", labels, {"clusters": hist}))
    lf = profile.get("largest_first") or {}
    if lf.get("cluster"):
        xs = list(range(1, len(lf["cluster"]) + 1))
        out.append(
            svg.line(
                "budget per cluster, clusters largest first",
                xs,
                {
                    "pool share": lf["pool_share"],
                    "allocated share": lf["allocated_share"],
                    "selected share": lf["selected_share"],
                },
                xlabel="cluster rank by pool size (sampled)",
                ylabel="share",
            )
        )
    return out


def _exact_tokens(s: dict[str, Any]) -> str:
    if s.get("selected_tokens") is None:
        return ""
    rows = [
        ("budget", str(s.get("budget"))),
        ("selected tokens (reported counter)", show(s.get("selected_tokens"), "count")),
        ("selected tokens (selection's estimate)", show(s.get("selected_tokens_estimate"), "count")),
        ("vs budget", show(s.get("budget_error"), "signed%")),
        ("selection counter", str(s.get("token_counter"))),
        ("reported counter", str(s.get("reported_token_counter"))),
    ]
    rows += [(f"exact correction: {k}", show(v)) for k, v in (s.get("exact_correction") or {}).items()]
    return _section("exact-tokens", "Exact-token check", _table(rows))


def _samples(samples: dict[str, Any] | None) -> str:
    if not samples:
        return ""

    def docs(items: list[dict[str, Any]]) -> str:
        out = []
        for d in items:
            cut = (
                f", first {len(d['text']):,} of {d['chars']:,} characters"
                if d["chars"] > len(d["text"])
                else ""
            )
            head = f"id {d['id']}" if d.get("id") else "document"
            out.append(
                f"<details><summary>{escape(head)}{escape(cut)}</summary><pre>{escape(d['text'])}</pre></details>"
            )
        return "".join(out) or '<p class="muted">none</p>'

    parts = [f"<h3>kept ({len(samples.get('kept', []))} shown)</h3>" + docs(samples.get("kept", []))]
    for reason, items in samples.get("dropped", {}).items():
        parts.append(f"<h3>dropped: {escape(reason)} ({len(items)} shown)</h3>" + docs(items))
    return _section("samples", "Sample documents", "".join(parts))


def _run(s: dict[str, Any], plan: dict[str, Any] | None, command: str | None) -> str:
    rows = [
        ("command", command or "–"),
        ("kind", str(s.get("kind"))),
        ("curate", str(s.get("curate_version"))),
        ("stats schema", str(s.get("schema"))),
        ("kernel", str((plan or {}).get("kernel_version", "–"))),
        ("seed", str(s.get("seed", lookup(plan or {}, "config.seed")))),
        ("workers", str(s.get("workers"))),
        ("peak memory (MB)", ", ".join(f"{k} {v:,.0f}" for k, v in (s.get("peak_rss_mb") or {}).items())),
        ("resumed", ", ".join(s.get("resumed") or []) or "no"),
    ]
    timings = [
        (name, f"{t['seconds']:.2f}", f"{t['text_mb']:.1f}", f"{t['mb_per_s']:.1f}")
        for name, t in (s.get("timings") or {}).items()
    ]
    body = _table(rows)
    if timings:
        body += "<h3>passes</h3>" + _table(timings, ("pass", "seconds", "text MB", "MB/s"))
    if plan:
        body += (
            "<details><summary>resolved plan</summary><pre>"
            + escape(json.dumps(plan, indent=1))
            + "</pre></details>"
        )
    body += (
        "<details><summary>stats JSON</summary><pre>"
        + escape(json.dumps(s, indent=1, sort_keys=True))
        + "</pre></details>"
    )
    return _section("run", "Run", body)


def render_report(
    stats: dict[str, Any],
    *,
    plan: dict[str, Any] | None = None,
    samples: dict[str, Any] | None = None,
    checks: list[dict[str, Any]] | None = None,
    command: str | None = None,
) -> str:
    """The report page for a run's stats (and, when known, its plan, samples, checks, command)."""
    # Key order as the manifest keeps it, so that `curate report` rebuilds the same bytes.
    stats, plan, samples = (json.loads(json.dumps(x, sort_keys=True)) for x in (stats, plan, samples))
    kind = str(stats.get("kind", "run"))
    failed = sum(not c["passed"] for c in checks or [])
    badge = ""
    if checks:
        badge = (
            f'<span class="badge fail">{failed} of {len(checks)} checks FAILED</span>'
            if failed
            else f'<span class="badge pass">all {len(checks)} checks passed</span>'
        )
    parts = [
        f"<h1>curate {escape(kind)}</h1>",
        f'<p class="muted">{escape(command or "")}</p>{badge}',
        _section("summary", "Summary", _table(key_numbers(stats))),
    ]
    if checks:
        parts.append(_section("checks", "Checks", _checks(checks)))
    plots = _plots(stats)
    if plots:
        parts.append(_section("plots", "Plots", "".join(plots)))
    parts += [_exact_tokens(stats), _samples(samples), _run(stats, plan, command)]
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>curate {escape(kind)} report</title>"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
        f"<style>{CSS}</style></head><body>" + "".join(p for p in parts if p) + "</body></html>\n"
    )
