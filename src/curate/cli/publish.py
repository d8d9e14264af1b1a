"""What a finished command publishes about itself: the checks' verdicts, the HTML report, the
Markdown summary (and GitHub's job summary), and the command line in the output's manifest,
so that `curate report OUT` can rebuild the same page later."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any

from curate.cli import render

# Set by `curate run` around each recipe step: the step's own command line.
STEP_COMMAND: list[str] | None = None


def command_line() -> str:
    argv = STEP_COMMAND if STEP_COMMAND is not None else ["curate", *sys.argv[1:]]
    return shlex.join(argv)


def verdicts(stats: dict[str, Any], checks: list[str]) -> list[Any]:
    """Judge the checks and print each verdict with the values it read (CheckResults)."""
    from curate.checks import run_checks

    results = run_checks(checks, stats)
    for r in results:
        (render.info if r.passed else render.error)(
            f"check {'passed' if r.passed else 'FAILED'}: {r.describe()}"
        )
    failed = sum(not r.passed for r in results)
    if failed:
        render.error(f"{failed} of {len(results)} check(s) failed; the outputs are written and kept")
    return results


def as_dicts(results: list[Any]) -> list[dict[str, Any]]:
    return [{"expression": r.expression, "passed": r.passed, "values": _plain(r.values)} for r in results]


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, str | int | float | bool) or v is None else str(v) for k, v in values.items()
    }


def _manifest(output: str | None) -> Path | None:
    from curate.io.outputs import MANIFEST

    if output is None or output == "-":
        return None
    path = Path(output) / MANIFEST
    return path if path.exists() else None


def publish(
    result: Any,
    checks: list[str] | None,
    report: Path | None = None,
    summary_md: Path | None = None,
) -> int:
    """Judge, record and write what the run's options ask for; the number of failed checks."""
    from curate.io.outputs import annotate_manifest, save_bytes
    from curate.io.stores import location

    judged = as_dicts(verdicts(result.summary, checks)) if checks else []
    command = command_line()
    manifest = _manifest(result.local_output or result.output)
    if manifest is not None:
        annotate_manifest(manifest.parent, command=command, checks=judged)
        if result.local_output and result.local_output != result.output:  # staged for a store
            from curate.engine.staging import publish_folder
            from curate.io.outputs import MANIFEST

            publish_folder(manifest.parent, str(result.output), only=(MANIFEST,))
    if report is not None:
        import json

        from curate.reporting.page import render_report

        plan = json.loads(manifest.read_text()).get("plan") if manifest is not None else None
        page = render_report(
            result.summary, plan=plan, samples=result.samples, checks=judged, command=command
        )
        save_bytes(report, page.encode())
        render.info(f"report written to {location(report)}")
    github = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_md is not None or github:
        from curate.reporting.markdown import summary_markdown

        link = location(report) if report is not None else None
        text = summary_markdown(result.summary, judged, link)
        if summary_md is not None:
            save_bytes(summary_md, text.encode())
            render.info(f"summary written to {location(summary_md)}")
        if github:  # a GitHub Actions job page shows this file
            with open(github, "a", encoding="utf-8") as fh:
                fh.write(text)
    return sum(not c["passed"] for c in judged)
