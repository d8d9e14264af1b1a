"""The CLI as users run it: stages chained through pipes, inspect, recipes, help."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

CURATE = [sys.executable, "-m", "curate.cli.app"]
ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, **kw) -> subprocess.CompletedProcess[bytes]:  # type: ignore[no-untyped-def]
    res = subprocess.run([*CURATE, *args], capture_output=True, **kw)
    assert res.returncode == 0, res.stderr.decode()
    return res


def test_help_teaches() -> None:
    out = run("--help").stdout.decode()
    for cmd in ("select", "resample", "featurize", "inspect", "run", "importance", "score"):
        assert cmd in out
    sel = run("select", "--help").stdout.decode()
    assert "--budget" in sel and "docs:1M" in sel and "--tokenizer" in sel


def test_stages_chain_through_pipes(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    model = tmp_path / "imp.npz"
    run(
        "importance",
        "fit",
        "--target",
        str(corpus.target),
        "--raw",
        str(corpus.pool),
        "-o",
        str(model),
        "--no-progress",
    )
    assert model.exists() and (tmp_path / "imp.npz.json").exists()
    score = subprocess.Popen(
        [*CURATE, "score", "importance", "--model", str(model), str(corpus.pool), "-", "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    res = subprocess.run(
        [
            *CURATE,
            "resample",
            "-",
            str(tmp_path / "sel"),
            "--by",
            "dsir_log_weight",
            "--budget",
            "docs:30",
            "--no-progress",
        ],
        stdin=score.stdout,
        capture_output=True,
    )
    assert score.stdout is not None and score.stderr is not None
    score.stdout.close()
    score_err = score.stderr.read()
    score.stderr.close()
    assert score.wait() == 0, score_err.decode()
    assert res.returncode == 0, res.stderr.decode()
    piped = pq.read_table(tmp_path / "sel")
    assert piped.num_rows == 30
    # the same stages through folders select the same documents (noise depends only on ids)
    run(
        "score",
        "importance",
        "--model",
        str(model),
        str(corpus.pool),
        str(tmp_path / "scored"),
        "--no-progress",
    )
    run(
        "resample",
        str(tmp_path / "scored"),
        str(tmp_path / "sel2"),
        "--by",
        "dsir_log_weight",
        "--budget",
        "docs:30",
        "--no-progress",
    )
    folder = pq.read_table(tmp_path / "sel2")
    assert sorted(piped.column("id").to_pylist()) == sorted(folder.column("id").to_pylist())
    # and `curate select` with the same seed agrees with the staged run
    run(
        "select",
        str(corpus.pool),
        str(tmp_path / "one"),
        "--target",
        str(corpus.target),
        "--budget",
        "docs:30",
        "--no-progress",
    )
    one = pq.read_table(tmp_path / "one")
    assert sorted(one.column("id").to_pylist()) == sorted(folder.column("id").to_pylist())


def test_resample_to_stdout_and_featurize_from_stdin(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    sel = subprocess.run(
        [*CURATE, "resample", str(corpus.pool), "-", "--by", "dsir_w", "--budget", "docs:5"],
        capture_output=True,
    )
    assert sel.returncode == 1 and b"needs column(s) dsir_w" in sel.stderr
    t = pq.read_table(corpus.pool).slice(0, 50)
    t = t.append_column("w", pa.array(list(range(50)), pa.float64()))
    pq.write_table(t, tmp_path / "w.parquet")
    out = run(
        "resample", str(tmp_path / "w.parquet"), "-", "--by", "w", "--budget", "docs:5", "--top-k"
    ).stdout
    top = pa.ipc.open_stream(out).read_all()
    assert sorted(top.column("w").to_pylist()) == [45.0, 46.0, 47.0, 48.0, 49.0]
    feats = run("featurize", "-", "-", "--buckets", "128", input=out).stdout
    ft = pa.ipc.open_stream(feats).read_all()
    assert ft.num_rows == 5 and ft.schema.field("ngram_buckets").type == pa.large_list(pa.uint32())
    assert all(max(b) < 128 for b in ft.column("ngram_buckets").to_pylist())


def test_jsonl_inputs_gz_and_zst(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    rows = pq.read_table(corpus.pool).slice(0, 120).to_pylist()
    lines = "".join(
        json.dumps({"doc_id": r["id"], "content": r["text"], "domain": r["domain"]}) + "\n" for r in rows
    )
    (tmp_path / "pool").mkdir()
    (tmp_path / "pool" / "a.jsonl").write_text("".join(lines.splitlines(keepends=True)[:40]))
    (tmp_path / "pool" / "b.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    (tmp_path / "pool" / "c.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(lines.encode()))
    run(
        "featurize",
        str(tmp_path / "pool"),
        str(tmp_path / "f"),
        "--text-column",
        "content",
        "--id-column",
        "doc_id",
        "--no-progress",
    )
    names = sorted(p.name for p in (tmp_path / "f").glob("*.parquet"))
    assert names == ["a.parquet", "b.parquet", "c.parquet"]
    b = pq.read_table(tmp_path / "f" / "b.parquet")
    assert b.num_rows == 120 and {"id", "text", "domain", "ngram_buckets"} <= set(b.column_names)


def test_inspect(corpus) -> None:  # type: ignore[no-untyped-def]
    out = run("inspect", str(corpus.pool), "--sample", "1", "--json").stdout
    info = json.loads(out)
    assert info["rows"] == pq.read_metadata(corpus.pool / "part-00000.parquet").num_rows * 0 + sum(
        pq.read_metadata(p).num_rows for p in corpus.pool.glob("*.parquet")
    )
    assert [c for c, _ in info["schema"]] == ["id", "text", "domain", "source"]
    assert len(info["sample"]) == 1
    human = run("inspect", str(corpus.pool), "--tokenizer", "cl100k").stdout.decode()
    assert "tokens" in human and "cl100k" in human


def test_recipes_run(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """Every recipe in recipes/ runs (with its demo-out paths pointed at a test corpus)."""
    demo = tmp_path / "demo-out"
    shutil.copytree(corpus.pool.parent, demo / "corpus")
    (tmp_path / "recipes").mkdir()
    for recipe in sorted((ROOT / "recipes").glob("*.toml")):
        shutil.copy(recipe, tmp_path / "recipes" / recipe.name)
        run("run", str(tmp_path / "recipes" / recipe.name), "--no-progress")
    stats = json.loads((demo / "recipe-stats.json").read_text())
    assert stats["selected_docs"] > 0
    # the recipe and the staged recipe agree with the CLI on the same plan
    run(
        "select",
        str(demo / "corpus" / "pool"),
        str(tmp_path / "cli"),
        "--target",
        str(demo / "corpus" / "target.parquet"),
        "--budget",
        "60K",
        "--group-by",
        "domain",
        "--no-progress",
    )

    def digest(folder: Path) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.parquet")}

    assert digest(demo / "recipe-selected") == digest(tmp_path / "cli")
    staged = pq.read_table(demo / "stages" / "selected", columns=["id"]).column("id").to_pylist()
    assert len(staged) > 0
    # pipeline.toml: dedup -> gopher -> fastText -> quality threshold -> select --diversity -> diversify
    final = pq.read_table(demo / "pipeline" / "final")
    selected = pq.read_table(demo / "pipeline" / "selected")
    quality = pq.read_table(demo / "pipeline" / "quality")
    assert 0 < final.num_rows < selected.num_rows < quality.num_rows
    assert set(final.column("id").to_pylist()) <= set(selected.column("id").to_pylist())
    assert {"fasttext_quality", "dsir_log_weight", "kmeans_cluster", "minhash_cluster"} <= set(
        final.column_names
    )
    assert json.loads((demo / "pipeline" / "final-stats.json").read_text())["selected_docs"] == final.num_rows
    # a rerun of the recipe resumes every step: nothing changes
    before = {p: digest(demo / "pipeline" / p) for p in ("deduped", "gopher", "scored", "selected", "final")}
    run("run", str(tmp_path / "recipes" / "pipeline.toml"), "--no-progress")
    assert before == {p: digest(demo / "pipeline" / p) for p in before}


def test_demo_runs(tmp_path: Path) -> None:
    """The README's `make demo` job: a real pool from this machine's text, selected, reported."""
    res = run("demo", str(tmp_path / "demo"), "--budget", "30K", "--no-progress")
    err = res.stderr.decode()
    assert "KL reduction" in err and "share by domain" in err and "python_docs" in err
    assert pq.read_table(tmp_path / "demo" / "selected").num_rows > 0


def test_cli_reference_is_current() -> None:
    """docs/cli.md is generated from --help (`make docs`); regenerate it when options change."""
    gen = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli_reference.py")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert gen.stdout == (ROOT / "docs" / "cli.md").read_text(), "docs/cli.md is stale: run `make docs`"
