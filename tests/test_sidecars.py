"""Score sidecars: a scoring command writes only the row key and its columns, and readers join
them back by shard and row order (the key checked), with the same results as full rows."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

CURATE = [sys.executable, "-m", "curate.cli.app"]


def run(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    quiet = [] if args[0] == "inspect" else ["--no-progress"]
    res = subprocess.run([*CURATE, *args, *quiet], capture_output=True, text=True)
    if ok:
        assert res.returncode == 0, res.stderr
    return res


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


@pytest.fixture(scope="module")
def scored(corpus, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    tmp = tmp_path_factory.mktemp("sidecars")
    run(
        "importance",
        "fit",
        "--target",
        str(corpus.target),
        "--raw",
        str(corpus.pool),
        "-o",
        str(tmp / "m.npz"),
    )
    full, side = tmp / "full", tmp / "side"
    run("score", "importance", "--model", str(tmp / "m.npz"), str(corpus.pool), str(full), "-w", "1")
    run(
        "score",
        "importance",
        "--model",
        str(tmp / "m.npz"),
        str(corpus.pool),
        str(side),
        "-w",
        "1",
        "--write-sidecar",
    )
    return {"pool": corpus.pool, "full": full, "side": side, "tmp": tmp}


def test_sidecar_holds_the_key_and_the_new_columns_only(scored: dict[str, Path]) -> None:
    shards = sorted(p.name for p in scored["pool"].glob("*.parquet"))
    assert sorted(p.name for p in scored["side"].glob("*.parquet")) == shards
    for name in shards:
        side = pq.read_table(scored["side"] / name)
        full = pq.read_table(scored["full"] / name)
        assert side.column_names == ["id", "dsir_log_weight", "n_tokens"]
        assert side.num_rows == full.num_rows
        assert side.column("id").equals(full.column("id"))
        assert side.column("dsir_log_weight").equals(full.column("dsir_log_weight"))
    assert sum(p.stat().st_size for p in scored["side"].glob("*.parquet")) < 0.2 * sum(
        p.stat().st_size for p in scored["full"].glob("*.parquet")
    )


def test_resample_and_threshold_on_a_sidecar_equal_the_full_rows(scored: dict[str, Path]) -> None:
    tmp, pool = scored["tmp"], str(scored["pool"])
    args = ["--by", "dsir_log_weight", "--budget", "20%", "-w", "1"]
    run("resample", str(scored["full"]), str(tmp / "r-full"), *args)
    run("resample", pool, str(tmp / "r-side"), *args, "--sidecar", str(scored["side"]))
    assert digest(tmp / "r-side") and digest(tmp / "r-side") == digest(tmp / "r-full")
    args = ["--column", "dsir_log_weight", "--keep-top", "30%", "-w", "1"]
    run("filter", "threshold", str(scored["full"]), str(tmp / "t-full"), *args)
    run("filter", "threshold", pool, str(tmp / "t-side"), *args, "--sidecar", str(scored["side"]))
    assert digest(tmp / "t-side") == digest(tmp / "t-full")
    info = run("inspect", pool, "--sidecar", str(scored["side"]), "--json").stdout
    assert '"dsir_log_weight"' in info


def test_a_sidecar_of_other_rows_is_refused_naming_the_row(scored: dict[str, Path], tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    shards = sorted(scored["pool"].glob("*.parquet"))
    for p in shards[:2]:
        (pool / p.name).write_bytes(p.read_bytes())
    bad = tmp_path / "bad"
    bad.mkdir()
    # shard 1's sidecar in place of shard 0's: every key differs
    (bad / shards[0].name).write_bytes((scored["side"] / shards[1].name).read_bytes())
    (bad / shards[1].name).write_bytes((scored["side"] / shards[1].name).read_bytes())
    res = run("resample", str(pool), str(tmp_path / "o1"), "--by", "dsir_log_weight", "--budget", "docs:3",
              "--sidecar", str(bad), ok=False)  # fmt: skip
    assert res.returncode == 1 and "row 0 belongs to another document" in res.stderr, res.stderr
    missing = tmp_path / "missing"
    missing.mkdir()
    (missing / shards[0].name).write_bytes((scored["side"] / shards[0].name).read_bytes())
    res = run("resample", str(pool), str(tmp_path / "o2"), "--by", "dsir_log_weight", "--budget", "docs:3",
              "--sidecar", str(missing), ok=False)  # fmt: skip
    assert res.returncode == 1 and f"no sidecar for {pool / shards[1].name}" in res.stderr, res.stderr
    short = tmp_path / "short"
    short.mkdir()
    for p in shards[:2]:
        pq.write_table(pq.read_table(scored["side"] / p.name).slice(0, 5), short / p.name)
    res = run("resample", str(pool), str(tmp_path / "o3"), "--by", "dsir_log_weight", "--budget", "docs:3",
              "--sidecar", str(short), ok=False)  # fmt: skip
    assert res.returncode == 1 and "the sidecar has 5 rows" in res.stderr, res.stderr


def test_without_an_id_the_key_is_the_text_hash(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool = tmp_path / "pool"
    pool.mkdir()
    t = pq.read_table(corpus.pool).drop_columns(["id"]).slice(0, 80)
    pq.write_table(t, pool / "a.parquet")
    run("score", "heuristics", str(pool), str(tmp_path / "h"), "--write-sidecar", "-w", "1")
    side = pq.read_table(tmp_path / "h" / "a.parquet")
    assert side.column_names[0] == "_row_key" and side.schema.field("_row_key").type == pa.uint64()
    assert "text" not in side.column_names and "gopher_words" in side.column_names
    run("filter", "gopher", str(pool), str(tmp_path / "g"), "--sidecar", str(tmp_path / "h"), "-w", "1")
    run("filter", "gopher", str(pool), str(tmp_path / "g2"), "-w", "1")
    kept = pq.read_table(tmp_path / "g")
    assert kept.column("text").equals(pq.read_table(tmp_path / "g2").column("text"))
    res = run("filter", "gopher", str(pool), str(tmp_path / "x"), "--write-sidecar", ok=False)
    assert res.returncode in (1, 2) and "sidecar" in res.stderr
