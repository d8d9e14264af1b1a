"""Bad input gets a clear `error:`/`hint:` on stderr and exit 1, never a traceback, and loses nothing."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.engine.job import JobResult
from curate.engine.run import run_job
from curate.jobs.select import SelectConfig, select_job


def select(config: SelectConfig, **kw) -> JobResult:  # type: ignore[no-untyped-def]
    return run_job(select_job(config), **kw)


def curate(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "curate.cli.app", *args, "--no-progress"]
        if args and args[0] not in ("inspect",)
        else [sys.executable, "-m", "curate.cli.app", *args],
        capture_output=True,
        text=True,
        input=None if stdin is None else stdin.decode(),
    )


def assert_user_error(res: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr
    assert res.stderr.startswith("error: "), res.stderr
    for n in needles:
        assert n in res.stderr, res.stderr


@pytest.fixture()
def target(corpus) -> str:  # type: ignore[no-untyped-def]
    return str(corpus.target)


def test_missing_text_column_names_columns_present(tmp_path: Path, target: str) -> None:
    pq.write_table(pa.table({"content": ["a"], "url": ["u"]}), tmp_path / "p.parquet")
    res = curate(
        "select", str(tmp_path / "p.parquet"), str(tmp_path / "out"), "--target", target, "--budget", "1K"
    )
    assert_user_error(res, "no text column 'text'", "columns present: content, url", "--text-column")


def test_text_column_option_renames(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    t = pq.read_table(corpus.pool).rename_columns(["id", "content", "domain", "source"])
    pq.write_table(t, tmp_path / "p.parquet")
    res = curate(
        "select",
        str(tmp_path / "p.parquet"),
        str(tmp_path / "out"),
        "--target",
        str(corpus.target),
        "--budget",
        "docs:10",
        "--text-column",
        "content",
    )
    assert_user_error(res, "target.parquet: no text column 'content'", "--target-text-column")
    res = curate(
        "select",
        str(tmp_path / "p.parquet"),
        str(tmp_path / "out"),
        "--target",
        str(corpus.target),
        "--budget",
        "docs:10",
        "--text-column",
        "content",
        "--target-text-column",
        "text",
    )
    assert res.returncode == 0, res.stderr
    assert "text" in pq.read_schema(tmp_path / "out" / "p.parquet").names


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("junk.parquet", b"this is not parquet at all", "not a readable Parquet file"),
        ("bad.jsonl", b'{"text": "fine"}\n{"text": "bad \xff bytes"}\n', "line 2: invalid UTF-8"),
        ("broken.jsonl", b'{"text": "fine"}\n{"text": "unterminated}\n', "line 2: invalid JSON"),
        ("trunc.jsonl.gz", gzip.compress(b'{"text": "x"}\n' * 1000)[:60], "cannot read compressed JSONL"),
    ],
)
def test_unreadable_inputs_name_the_file(
    tmp_path: Path, target: str, name: str, content: bytes, needle: str
) -> None:
    (tmp_path / name).write_bytes(content)
    res = curate("select", str(tmp_path / name), str(tmp_path / "out"), "--target", target, "--budget", "1K")
    assert_user_error(res, name, needle)


def test_truncated_parquet_names_the_path(tmp_path: Path, corpus, target: str) -> None:  # type: ignore[no-untyped-def]
    data = (corpus.pool / "part-00000.parquet").read_bytes()
    (tmp_path / "cut.parquet").write_bytes(data[: len(data) // 2])
    res = curate(
        "select", str(tmp_path / "cut.parquet"), str(tmp_path / "out"), "--target", target, "--budget", "1K"
    )
    assert_user_error(res, "cut.parquet", "truncated")


def test_invalid_utf8_in_parquet_names_row(tmp_path: Path, target: str) -> None:
    arr = pa.array([b"good text", b"bad \xff"], pa.binary()).view(pa.string())
    pq.write_table(pa.table({"text": arr}), tmp_path / "p.parquet")
    res = curate(
        "select", str(tmp_path / "p.parquet"), str(tmp_path / "out"), "--target", target, "--budget", "1K"
    )
    assert_user_error(res, "p.parquet: row group 0, row 1", "not valid UTF-8")


def test_budget_errors(tmp_path: Path, corpus, target: str) -> None:  # type: ignore[no-untyped-def]
    res = curate("select", str(corpus.pool), str(tmp_path / "a"), "--target", target, "--budget", "10X")
    assert_user_error(res, "unknown budget unit 'X'")
    res = curate("select", str(corpus.pool), str(tmp_path / "b"), "--target", target, "--budget", "10T")
    assert_user_error(res, "larger than the selectable pool")


def test_output_folder_rules(tmp_path: Path, corpus, target: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    assert (
        curate("select", str(corpus.pool), str(out), "--target", target, "--budget", "docs:5").returncode == 0
    )
    res = curate("select", str(corpus.pool), str(out), "--target", target, "--budget", "docs:6")
    assert_user_error(res, "already holds a different run", "--overwrite")
    res = curate(
        "select", str(corpus.pool), str(out), "--target", target, "--budget", "docs:6", "--overwrite"
    )
    assert res.returncode == 0, res.stderr
    assert len(pq.read_table(out)) == 6
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    res = curate("select", str(corpus.pool), str(stranger), "--target", target, "--budget", "docs:5")
    assert_user_error(res, "files that curate did not write")
    assert (stranger / "notes.txt").read_text() == "mine"
    (tmp_path / "afile").write_text("x")
    res = curate(
        "select", str(corpus.pool), str(tmp_path / "afile" / "sub"), "--target", target, "--budget", "docs:5"
    )
    assert_user_error(res, "not writable")


def test_null_empty_and_short_text_are_counted_not_selected(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    t = pq.read_table(corpus.pool).slice(0, 200)
    extra = pa.table(
        {
            "id": ["n1", "n2", "e1", "s1"],
            "text": [None, None, "", "too short"],
            "domain": ["x"] * 4,
            "source": ["x"] * 4,
        }
    )
    pq.write_table(pa.concat_tables([t, extra]), tmp_path / "p.parquet")
    (tmp_path / "empty").mkdir()
    res = select(
        SelectConfig(
            pool=str(tmp_path / "p.parquet"),
            output=str(tmp_path / "out"),
            target=str(corpus.target),
            budget="100%",
        ),
        workers=1,
    )
    s = res.summary
    assert s["null_text"] == 2 and s["empty_text"] == 1 and s["too_short"] >= 1
    ids = set(pq.read_table(tmp_path / "out", columns=["id"]).column("id").to_pylist())
    assert not ids & {"n1", "n2", "e1", "s1"}
    assert s["selectable_docs"] == len(ids)


def test_zero_row_shard_and_huge_document(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool = tmp_path / "pool"
    pool.mkdir()
    base = pq.read_table(corpus.pool)
    pq.write_table(base.slice(0, 0), pool / "a-empty.parquet")
    pq.write_table(base.slice(0, 300), pool / "b.parquet")
    huge_text = "\n\n".join(base.column("text").to_pylist()) * 1
    reps = 50_000_000 // len(huge_text.encode()) + 1
    huge = pa.table(
        {"id": ["huge"], "text": [(huge_text + "\n\n") * reps], "domain": ["huge"], "source": ["huge"]}
    )
    assert len(huge.column("text")[0].as_py().encode()) >= 50_000_000
    pq.write_table(huge, pool / "c-huge.parquet")
    res = select(
        SelectConfig(
            pool=str(pool), output=str(tmp_path / "out"), target=str(corpus.target), budget="docs:20"
        ),
        workers=2,
    )
    assert res.summary["pool_docs"] == 301
    assert res.summary["selected_docs"] == 20
    assert not (tmp_path / "out" / "a-empty.parquet").exists()


def test_score_column_errors_name_columns(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    res = curate("resample", str(corpus.pool), str(tmp_path / "out"), "--by", "nope", "--budget", "docs:3")
    assert_user_error(res, "needs column(s) nope", "columns present: id, text, domain, source")


def test_recipe_errors_point_at_the_key(tmp_path: Path) -> None:
    r = tmp_path / "r.toml"
    r.write_text('[select]\npool = "p"\noutput = "o"\ntarget = "t"\nbudgett = "1K"\n')
    res = curate("run", str(r))
    assert_user_error(res, "[select]: unknown key 'budgett' (did you mean 'budget'?)")
    r.write_text('[select]\npool = "p"\noutput = "o"\ntarget = "t"\nbudget = "5K"\nseed = "abc"\n')
    assert_user_error(curate("run", str(r)), "[select].seed: ", "'--seed'")
    r.write_text('[select]\npool = "p"\noutput = "o"\nbudget = "5K"\n')
    assert_user_error(curate("run", str(r)), "[select]: select needs key 'target'")
    r.write_text('[select]\npool = "p"\noutput = "o"\ntarget = "t"\nbudget = "5K"\ntop_k = "yes"\n')
    assert_user_error(curate("run", str(r)), "[select].top_k: expected true or false")
    r.write_text('[[step]]\nrun = "resampel"\n')
    assert_user_error(curate("run", str(r)), "unknown step 'resampel' (did you mean 'resample'?)")


def test_bad_model_file(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "m.npz").write_bytes(b"not a model")
    res = curate(
        "score", "importance", "--model", str(tmp_path / "m.npz"), str(corpus.pool), str(tmp_path / "out")
    )
    assert_user_error(res, "m.npz: not a curate importance model")


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "curate.cli.app", "select", "x"], capture_output=True, text=True
    )
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    res = curate("select", "x", "y", "--target", "t", "--budget", "1K", "--policy", "uder")
    assert_user_error(res, "did you mean 'under'")
