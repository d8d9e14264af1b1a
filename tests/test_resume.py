"""Kill a real run with SIGKILL in the middle of a per-shard phase, rerun the same command, and
get the same bytes as an uninterrupted run (DESIGN §3): select, resample, dedup minhash,
diversify and score lm. Also --keep-going: a corrupt shard is left out and reported, the rest
is written, and the command exits 1 at the end."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from curate.io.outputs import finished_shards
from curate.testing import build_corpus

CURATE = [sys.executable, "-m", "curate.cli.app"]


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def run(*args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([*CURATE, *args], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res


@pytest.fixture(scope="module")
def pools(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A pool of 24 small shards, scored, embedded and clustered; a tiny proxy LM."""
    tmp = tmp_path_factory.mktemp("resume")
    c = build_corpus(tmp / "c", max_bytes_per_domain=150_000, shards=24, row_group_size=16)
    run("importance", "fit", "--target", str(c.target), "--raw", str(c.pool), "-o", str(tmp / "imp.npz"))
    run("score", "importance", "--model", str(tmp / "imp.npz"), str(c.pool), str(tmp / "scored"), "-w", "1")
    run("embed", str(c.pool), str(tmp / "emb"), "--dim", "16", "-w", "1", "--no-progress")
    run("cluster", str(tmp / "emb"), str(tmp / "cl"), "--k", "6", "-w", "1", "--no-progress")
    run(
        "train", "lm", "--data", str(c.target), "-o", str(tmp / "lm"), "--steps", "5", "--dim", "16",
        "--layers", "1", "--heads", "2", "--context", "32", "--batch-size", "2", "--threads", "1", "--no-progress",
    )  # fmt: skip
    return {
        "pool": c.pool,
        "target": c.target,
        "scored": tmp / "scored",
        "clustered": tmp / "cl",
        "lm": tmp / "lm",
    }


CASES = {
    "select": (["select", "{pool}", "{out}", "--target", "{target}", "--budget", "40%"], "write"),
    "resample": (["resample", "{scored}", "{out}", "--by", "dsir_log_weight", "--budget", "30%"], "write"),
    "dedup minhash": (["dedup", "minhash", "{pool}", "{out}"], "write"),
    "diversify": (["diversify", "{clustered}", "{out}", "--budget", "docs:120"], "write"),
    "score lm": (["score", "lm", "--model", "{lm}", "{pool}", "{out}", "--device", "cpu"], "map"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_killed_run_resumes_to_identical_bytes(case: str, pools: dict[str, Path], tmp_path: Path) -> None:
    template, phase = CASES[case]

    def argv(out: Path) -> list[str]:
        fill = {**{k: str(v) for k, v in pools.items()}, "out": str(out)}
        return [*CURATE, *[a.format(**fill) for a in template], "--workers", "1", "--no-progress"]

    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run(argv(clean), check=True, capture_output=True)
    proc = subprocess.Popen(argv(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    killed_mid_phase = False
    while time.time() < deadline and proc.poll() is None:
        if any(key.startswith(f"{phase}:") for key in finished_shards(killed)):
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_phase = True
            break
        time.sleep(0.002)
    proc.wait()
    assert killed_mid_phase, f"the run finished before its {phase} phase could be killed"
    state = json.loads((killed / "_manifest.json").read_text())
    assert not state.get("complete")
    assert len([key for key in finished_shards(killed) if key.startswith(f"{phase}:")]) < 24
    res = subprocess.run(
        [*argv(killed), "--stats-json", str(tmp_path / "stats.json")], capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    resumed = json.loads((tmp_path / "stats.json").read_text())["resumed"]
    assert any(r.startswith(f"{phase} (") for r in resumed), resumed
    assert digest(killed) and digest(killed) == digest(clean)
    assert not list(killed.glob(".*.tmp-*"))


def test_keep_going_leaves_a_corrupt_shard_out_and_exits_1(pools: dict[str, Path], tmp_path: Path) -> None:
    pool = tmp_path / "pool"
    pool.mkdir()
    for p in sorted(pools["pool"].glob("*.parquet"))[:4]:
        (pool / p.name).write_bytes(p.read_bytes())
    good = sorted(pool.glob("*.parquet"))
    data = good[1].read_bytes()
    good[1].write_bytes(data[: len(data) // 3])  # truncated
    args = ["dedup", "exact", str(pool), str(tmp_path / "out"), "--workers", "1", "--no-progress"]
    res = subprocess.run([*CURATE, *args], capture_output=True, text=True)
    assert res.returncode == 1 and good[1].name in res.stderr and "--keep-going" not in res.stderr
    res = subprocess.run(
        [*CURATE, *args, "--keep-going", "--stats-json", str(tmp_path / "s.json")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr and f"{good[1]}: left out" in res.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert list(stats["failed_shards"]) == [str(good[1])]
    out = pq.read_table(tmp_path / "out")
    expected = sum(pq.read_metadata(p).num_rows for p in good if p != good[1])
    assert out.num_rows + stats["duplicates_dropped"] == expected
    assert sorted(p.name for p in (tmp_path / "out").glob("*.parquet")) == sorted(
        p.name for p in good if p != good[1]
    )
    # the rerun resumes the finished job and reports the same failure
    again = subprocess.run([*CURATE, *args, "--keep-going"], capture_output=True, text=True)
    assert again.returncode == 1 and "left out" in again.stderr


def test_keep_going_when_a_shard_breaks_mid_read(pools: dict[str, Path], tmp_path: Path) -> None:
    """A shard whose schema reads but whose text is not UTF-8 fails inside a pass; it is left
    out of every later phase, and the selection is that of the other shards."""
    import pyarrow as pa

    pool, clean = tmp_path / "pool", tmp_path / "clean"
    pool.mkdir()
    clean.mkdir()
    for p in sorted(pools["pool"].glob("*.parquet"))[:4]:
        (pool / p.name).write_bytes(p.read_bytes())
        (clean / p.name).write_bytes(p.read_bytes())
    bad = sorted(pool.glob("*.parquet"))[2]
    t = pq.read_table(bad)
    raw = [x.encode() for x in t.column("text").to_pylist()]
    raw[5] = b"\xff" + raw[5]
    i = t.schema.get_field_index("text")
    pq.write_table(t.set_column(i, "text", pa.array(raw, pa.binary()).view(pa.string())), bad)
    (clean / bad.name).unlink()
    target = str(pools["target"])
    res = subprocess.run(
        [*CURATE, "select", str(pool), str(tmp_path / "out"), "--target", target, "--budget", "docs:20",
         "--workers", "1", "--no-progress", "--keep-going"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 1 and f"{bad}: left out" in res.stderr and "row 5" in res.stderr, res.stderr
    assert not (tmp_path / "out" / bad.name).exists()
    ids = set(pq.read_table(tmp_path / "out", columns=["id"]).column("id").to_pylist())
    assert len(ids) == 20 and not ids & set(t.column("id").to_pylist())


def test_shard_journal_skips_a_torn_line_and_keeps_what_follows(tmp_path: Path) -> None:
    from curate.io.outputs import JOURNAL, WORK_DIR, Manifest

    out = tmp_path / "out"
    first = Manifest(out, {"job": "t"})
    (out / "a.parquet").write_bytes(b"x")
    first.mark_shard("map:0", {"files": ["a.parquet"], "rows": 1})
    first.mark_shard("map:1", {"files": ["missing.parquet"]})
    with open(out / WORK_DIR / JOURNAL, "a") as fh:  # a run killed in the middle of a record
        fh.write('{"status": "done", "key": "map:2", "fi')
    again = Manifest(out, {"job": "t"})
    assert again.shard_done("map:0") == {"status": "done", "key": "map:0", "files": ["a.parquet"], "rows": 1}
    assert again.shard_done("map:1") is None  # its file is gone: done again
    assert again.shard_done("map:2") is None
    again.mark_shard("map:2", {"files": [], "rows": 2})
    again.mark_shard("map:0", {"files": ["a.parquet"], "rows": 3})  # the last record of a key wins
    assert finished_shards(out)["map:2"]["rows"] == 2
    assert again.shard_done("map:0")["rows"] == 3  # type: ignore[index]
    again.finish({"rows": 5})
    state = json.loads((out / "_manifest.json").read_text())
    assert state["complete"] and sorted(state["shards"]) == ["map:0", "map:1", "map:2"]
    assert state["shards"]["map:0"]["rows"] == 3
    assert not (out / WORK_DIR).exists()
