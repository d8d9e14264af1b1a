"""Checks over a run's stats (curate.checks): the expression language, `curate check`, `--check`
on a command and `checks = [...]` in a recipe; a failed check exits 3 and keeps the outputs."""

from __future__ import annotations

import json
import operator
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.checks import FAILED_CHECK_EXIT, all_names, evaluate
from curate.errors import UsageError

STATS = {
    "kl_reduction": 0.25,
    "budget_error": -0.004,
    "rows_out": 1_500_000,
    "verify": "exact",
    "peak_rss_mb": {"driver": 255.0, "workers": 170.0},
    "groups": [{"group": "code", "selected_share": 0.31}, {"group": "wiki", "selected_share": 0.69}],
    "diversity": {"clusters_covered": 48, "kmeans": {"passes": 7}},
    "nan_value": float("nan"),
}


@pytest.mark.parametrize(
    "expression, passed",
    [
        ("kl_reduction >= 0.2", True),
        ("kl_reduction > 0.25", False),
        ("abs(budget_error) <= 1%", True),
        ("abs(budget_error) <= 0.1%", False),
        ("rows_out >= 1M and rows_out < 1.5M", False),
        ("rows_out >= 1.5M or kl_reduction > 1", True),
        ("not kl_reduction < 0", True),
        ("-budget_error > 0", True),
        ('verify == "exact"', True),
        ("verify != 'exact'", False),
        ('peak_rss_mb["driver"] <= 256', True),
        ("peak_rss_mb.workers < 100", False),
        ("groups[0].selected_share <= 30%", False),
        ("groups[-1].group == 'wiki'", True),
        ("diversity.kmeans.passes >= 2 and (diversity.clusters_covered > 40 or false)", True),
        ("2K > 1999 and 3B == 3000M and 1T >= 1e12", True),
        ("rows_out * 2 - 1M == 2M and kl_reduction / 0.5 == 50%", True),
        ("-budget_error * 1000 < 5", True),
    ],
)
def test_expressions(expression: str, passed: bool) -> None:
    result = evaluate(expression, STATS)
    assert result.passed is passed
    assert all(name in expression.replace("'", '"') or "[" in name for name in result.values)


def test_a_failed_check_shows_the_values_it_read() -> None:
    r = evaluate("kl_reduction >= 0.3 and rows_out >= 1M", STATS)
    assert not r.passed and r.values == {"kl_reduction": 0.25, "rows_out": 1_500_000}
    assert "kl_reduction = 0.25" in r.describe()


@pytest.mark.parametrize(
    "expression, message",
    [
        ("kl_reductoin >= 0.2", "close: kl_reduction"),
        ("diversity.clusters_coverd > 1", "diversity.clusters_covered"),
        ("peak_rss_mb >= 1", "not a single value"),
        ("kl_reduction", "not a test"),
        ("kl_reduction >= ", "ends early"),
        ("kl_reduction >= 0.2 )", "unexpected"),
        ("kl_reduction >= 0.2; import os", "cannot read"),
        ("__import__('os') == 1", "no '__import__'"),
        ("verify > 1", "cannot compare"),
        ("nan_value > 1", "NaN"),
        ("kl_reduction / 0 > 1", "division by zero"),
        ("verify * 2 > 1", "cannot compute"),
        ("groups[5].group == 'x'", "no 'groups[5]'"),
    ],
)
def test_bad_checks_are_clear_errors(expression: str, message: str) -> None:
    with pytest.raises(UsageError) as exc:
        evaluate(expression, STATS)
    assert message in exc.value.message


def test_every_listed_name_can_be_checked() -> None:
    stats = {k: v for k, v in STATS.items() if k != "nan_value"}
    for name in all_names(stats):
        value = evaluate(f"{name} == {name}", stats)
        assert value.passed, name


OPS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@given(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.floats(0, 1e6, allow_nan=False),
    st.sampled_from(sorted(OPS)),
    st.sampled_from(["", "K", "M", "%"]),
)
def test_comparisons_agree_with_python(x: float, y: float, op: str, suffix: str) -> None:
    scale = {"": 1.0, "K": 1e3, "M": 1e6, "%": 0.01}[suffix]
    literal = f"{y!r}" if "e" not in f"{y!r}" else f"{y:.6f}"
    bound = float(literal) * scale
    assert evaluate(f"x {op} {literal}{suffix}", {"x": x}).passed is OPS[op](x, bound)
    assert evaluate(f"abs(x) {op} {literal}{suffix}", {"x": x}).passed is OPS[op](abs(x), bound)


# ------------------------------------------------------------------------------------ commands
def curate(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "curate.cli.app", *args], capture_output=True, text=True, cwd=cwd
    )


def test_curate_check_exits_3_on_a_failed_check(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({k: v for k, v in STATS.items() if k != "nan_value"}))
    ok = curate("check", str(stats), "--check", "kl_reduction >= 0.2", "--check", "rows_out >= 1M")
    assert ok.returncode == 0, ok.stderr
    assert ok.stderr.count("check passed") == 2
    bad = curate("check", str(stats), "--check", "kl_reduction >= 0.3")
    assert bad.returncode == FAILED_CHECK_EXIT and "check FAILED: kl_reduction >= 0.3" in bad.stderr
    assert "kl_reduction = 0.25" in bad.stderr
    unknown = curate("check", str(stats), "--check", "kl_reductoin >= 0.3")
    assert (
        unknown.returncode == 1 and unknown.stderr.startswith("error: ") and "kl_reduction" in unknown.stderr
    )
    names = curate("check", str(stats), "--names")
    assert names.returncode == 0 and "peak_rss_mb.driver" in names.stdout.split()
    (tmp_path / "bad.json").write_text("{not json")
    broken = curate("check", str(tmp_path / "bad.json"), "--check", "x > 1")
    assert broken.returncode == 1 and "bad.json" in broken.stderr and "Traceback" not in broken.stderr
    missing = curate("check", str(tmp_path / "nope.json"), "--check", "x > 1")
    assert missing.returncode == 1 and "nope.json" in missing.stderr


def test_checks_are_appended_to_the_github_step_summary(tmp_path: Path) -> None:
    stats = tmp_path / "stats.json"
    stats.write_text(json.dumps({"kl_reduction": 0.25, "rows_out": 10}))
    summary = tmp_path / "summary.md"
    summary.write_text("# earlier step\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    res = subprocess.run(
        [sys.executable, "-m", "curate.cli.app", "check", str(stats), "--check", "kl_reduction >= 0.3", "--check", "rows_out >= 1"],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    assert res.returncode == FAILED_CHECK_EXIT
    text = summary.read_text()
    assert text.startswith("# earlier step\n") and "1 passed, 1 failed" in text
    assert "| **FAIL** | `kl_reduction >= 0.3` | `kl_reduction` = 0.25 |" in text


def test_select_check_fails_the_run_but_keeps_the_outputs(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    base = ["select", str(corpus.pool), "--target", str(corpus.target), "--budget", "2%", "--no-progress"]
    ok = curate(
        *base[:2],
        str(tmp_path / "a"),
        *base[2:],
        "--check",
        "kl_reduction > -100",
        "--check",
        "selected_docs >= 1",
    )
    assert ok.returncode == 0, ok.stderr
    bad = curate(*base[:2], str(tmp_path / "b"), *base[2:], "--check", "selected_docs >= 1T")
    assert bad.returncode == FAILED_CHECK_EXIT, bad.stderr
    assert "check FAILED: selected_docs >= 1T" in bad.stderr
    assert pq.read_table(tmp_path / "b").num_rows > 0  # the output is written, only judged


def test_recipe_checks_stop_the_recipe_with_exit_3(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        f"""
[[step]]
run = "dedup exact"
input = "{corpus.pool}"
output = "dedup"
checks = ["rows_out >= 1", "duplicates_dropped >= 1M"]

[[step]]
run = "select"
pool = "dedup"
output = "selected"
target = "{corpus.target}"
budget = "2%"
"""
    )
    res = curate("run", str(recipe), "--no-progress")
    assert res.returncode == FAILED_CHECK_EXIT, res.stderr
    assert (
        "check passed: rows_out >= 1" in res.stderr and "check FAILED: duplicates_dropped >= 1M" in res.stderr
    )
    assert (tmp_path / "dedup").exists() and not (tmp_path / "selected").exists()
    recipe.write_text(recipe.read_text().replace('"duplicates_dropped >= 1M"', '"duplicates_dropped >= 0"'))
    res = curate("run", str(recipe), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert pq.read_table(tmp_path / "selected").num_rows > 0


def test_recipe_checks_are_read_before_any_step_runs(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    recipe = tmp_path / "r.toml"
    for checks, message in (
        ('"rows_out"', "compares nothing"),
        ("[1, 2]", "list of check strings"),
        ('["a ; b > 1"]', "cannot read"),
    ):
        recipe.write_text(
            f'[[step]]\nrun = "dedup exact"\ninput = "{corpus.pool}"\noutput = "o"\nchecks = {checks}\n'
        )
        res = curate("run", str(recipe), "--no-progress")
        assert res.returncode == 1 and message in res.stderr, res.stderr
        assert not (tmp_path / "o").exists()


def test_filter_commands_take_checks_too(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    base = ["filter", "gopher", str(corpus.pool)]
    ok = curate(*base, str(tmp_path / "a"), "--no-progress", "--check", "report.rows_out <= report.rows_in")
    assert ok.returncode == 0, ok.stderr
    bad = curate(*base, str(tmp_path / "b"), "--no-progress", "--check", "report.rows_out > report.rows_in")
    assert bad.returncode == FAILED_CHECK_EXIT and "check FAILED" in bad.stderr
    assert pq.read_table(tmp_path / "b").num_rows > 0
    import pyarrow as pa

    scored = tmp_path / "scored.parquet"
    pq.write_table(
        pa.table({"text": [f"document {i}" for i in range(100)], "score": list(range(100))}), scored
    )
    top = ["filter", "threshold", str(scored), "--column", "score", "--keep-top", "50%", "--no-progress"]
    res = curate(
        *top[:2], str(scored), str(tmp_path / "t1"), *top[3:], "--check", "rows_out == 50% * rows_in"
    )
    assert res.returncode == 0, res.stderr
    res = curate(*top[:2], str(scored), str(tmp_path / "t2"), *top[3:], "--check", "rows_out > 50")
    assert res.returncode == FAILED_CHECK_EXIT and "rows_out = 50" in res.stderr
