"""The Ray executor: the same job on a local Ray (2 CPUs, started here) writes the same bytes
as on the local executor. Marker `ray`: CI runs these as their own step (`make test-ray`)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.io.outputs import finished_shards
from tests.cli import run_main

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.ray

GOLDEN = Path(__file__).resolve().parent / "golden" / "corpus"
POOL, TARGET = str(GOLDEN / "pool"), str(GOLDEN / "target.parquet")


@pytest.fixture(scope="module", autouse=True)
def local_ray():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def curate(*argv: str) -> int:
    return run_main(*argv, "--no-progress")


def contents(folder: Path) -> dict[str, bytes]:
    """Every file a run wrote but its manifest (which records timings and the executor)."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != "_manifest.json"
    }


COMMANDS = {
    "select": ["select", POOL, "{out}", "--target", TARGET, "--budget", "20K", "--group-by", "domain"],
    "select-diversity-dedup": [
        "select", POOL, "{out}", "--target", TARGET, "--budget", "docs:30", "--diversity", "4", "--dedup", "minhash",
    ],
    "dedup-minhash": ["dedup", "minhash", POOL, "{out}"],
    "filter-gopher": ["filter", "gopher", POOL, "{out}"],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_ray_writes_the_bytes_the_local_executor_writes(tmp_path: Path, name: str) -> None:
    outs = {}
    for executor, workers in (("local", "2"), ("ray", "0")):
        out = tmp_path / executor
        argv = [a.format(out=out) for a in COMMANDS[name]]
        assert curate(*argv, "--executor", executor, "--workers", workers) == 0
        outs[executor] = contents(out)
    assert outs["local"] and outs["local"] == outs["ray"]


def test_a_rerun_on_ray_after_a_crash_writes_the_same_bytes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    argv = ["dedup", "exact", POOL, str(out), "--executor", "ray"]
    assert curate(*argv) == 0
    first = contents(out)
    # As if the driver had died before the end: the run is not complete and a shard is missing.
    manifest = out / "_manifest.json"
    state = json.loads(manifest.read_text())
    state["complete"] = False
    manifest.write_text(json.dumps(state))
    (out / "part-00001.parquet").unlink()
    assert curate(*argv) == 0
    assert contents(out) == first


def test_a_task_error_on_ray_is_the_commands_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.parquet"  # invalid UTF-8 is found while a task reads the rows
    pq.write_table(pa.table({"text": pa.array([b"fine text", b"broken \xff text"], pa.binary())}), bad)
    assert curate("filter", "gopher", str(bad), str(tmp_path / "out"), "--executor", "ray") == 1
    err = capsys.readouterr().err
    assert "error:" in err and "bad.parquet" in err and "Traceback" not in err


def _dies(i: int) -> int:
    import os

    if i == 1:
        os._exit(1)  # the worker process dies, as on a lost node
    return i


def test_a_task_whose_worker_dies_is_retried_then_reported_lost() -> None:
    from curate.executors.on_ray import RayExecutor, TaskLost

    ex = RayExecutor(2)
    lost: list[tuple[int, str]] = []
    got = ex.map(_dies, [(0,), (1,), (2,)], on_lost=lambda i, m: lost.append((i, m)) or f"lost {i}")
    assert got == [0, "lost 1", 2] and lost[0][0] == 1 and "retries" in lost[0][1]
    with pytest.raises(TaskLost, match="retries"):
        ex.map(_dies, [(1,)])


def test_a_killed_driver_on_ray_resumes_to_the_local_bytes(tmp_path: Path) -> None:
    """The driver (joined to this test's Ray) is killed in its write phase; the rerun resumes
    from the manifest and ends with the bytes a local run writes."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from curate.testing import build_corpus

    c = build_corpus(tmp_path / "c", max_bytes_per_domain=150_000, shards=24, row_group_size=16)
    address = ray.get_runtime_context().gcs_address
    base = [sys.executable, "-m", "curate.cli.app", "dedup", "minhash", str(c.pool)]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    subprocess.run([*base, str(clean), "--workers", "1", "--no-progress"], check=True, capture_output=True)
    on_ray = [
        *base,
        str(killed),
        "--executor",
        "ray",
        "--ray-address",
        address,
        "--workers",
        "1",
        "--no-progress",
    ]
    proc = subprocess.Popen(on_ray, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, hit = time.time() + 180, False
    while time.time() < deadline and proc.poll() is None:
        if any(key.startswith("write:") for key in finished_shards(killed)):
            os.kill(proc.pid, signal.SIGKILL)
            hit = True
            break
        time.sleep(0.002)
    proc.wait()
    if not hit:
        pytest.skip("the run finished before its write phase could be killed")
    assert not json.loads((killed / "_manifest.json").read_text()).get("complete")
    res = subprocess.run([*on_ray, "--stats-json", str(tmp_path / "s.json")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert any(r.startswith("write (") for r in json.loads((tmp_path / "s.json").read_text())["resumed"])
    assert shards_of(killed) and shards_of(killed) == shards_of(clean)


def shards_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}
