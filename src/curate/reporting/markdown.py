"""A run's short Markdown summary, for a CI job's page: key numbers, failed checks, the report."""

from __future__ import annotations

from typing import Any

from curate.checks import show_value as check_value
from curate.reporting.facts import key_numbers


def _cell(text: str) -> str:
    return str(text).replace("|", "¦").replace("\n", " ")


def summary_markdown(
    stats: dict[str, Any], checks: list[dict[str, Any]] | None = None, report: str | None = None
) -> str:
    kind = stats.get("kind", "run")
    failed = [c for c in checks or [] if not c["passed"]]
    verdict = ""
    if checks:
        verdict = (
            f" — **{len(failed)} of {len(checks)} checks failed**"
            if failed
            else f" — all {len(checks)} checks passed"
        )
    lines = [f"### curate {kind}{verdict}", "", "| | |", "| --- | ---: |"]
    lines += [f"| {_cell(label)} | {_cell(value)} |" for label, value in key_numbers(stats)]
    if checks:
        lines += ["", "| | check | values read |", "| --- | --- | --- |"]
        for c in checks:
            values = ", ".join(f"`{k}` = {check_value(v)}" for k, v in c.get("values", {}).items())
            mark = "pass" if c["passed"] else "**FAIL**"
            lines.append(f"| {mark} | `{_cell(c['expression'])}` | {_cell(values)} |")
    if report:
        lines += ["", f"Report: [{report}]({report})"]
    return "\n".join(lines) + "\n\n"
