"""Datasets on an object store: a real S3-compatible server (moto, in server mode) on 127.0.0.1,
reached through AWS_ENDPOINT_URL as a user's would be. Reading a pool and a target from
`s3://` gives the bytes reading them from disk gives."""

from __future__ import annotations

import gzip
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli import run_main

pytest.importorskip("moto")
GOLDEN = Path(__file__).resolve().parent / "golden" / "corpus"
BUCKET = "curate-test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3() -> Iterator[str]:
    """A moto server on a loopback port, with the golden corpus uploaded; yields the bucket URI."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        from pyarrow import fs

        store = fs.S3FileSystem(
            endpoint_override=f"127.0.0.1:{port}",
            scheme="http",
            region="us-east-1",
            allow_bucket_creation=True,
        )
        store.create_dir(BUCKET)
        for f in sorted((GOLDEN / "pool").glob("*.parquet")):
            with store.open_output_stream(f"{BUCKET}/pool/{f.name}") as out:
                out.write(f.read_bytes())
        with store.open_output_stream(f"{BUCKET}/target.jsonl.gz", compression=None) as out:
            import pyarrow.parquet as pq

            rows = pq.read_table(GOLDEN / "target.parquet").to_pylist()
            import json

            out.write(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
        with store.open_output_stream(f"{BUCKET}/pool/_SUCCESS") as out:  # not a shard: skipped
            out.write(b"")
        yield f"s3://{BUCKET}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def curate(*argv: str) -> int:
    return run_main(*argv, "--no-progress", "--workers", "1")


def shards(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def local_target(tmp_path: Path) -> str:
    import pyarrow.parquet as pq

    path = tmp_path / "target.jsonl.gz"
    import json

    rows = pq.read_table(GOLDEN / "target.parquet").to_pylist()
    path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode()))
    return str(path)


def test_select_from_s3_equals_select_from_disk(s3: str, tmp_path: Path) -> None:
    base = ["--budget", "20K", "--group-by", "domain"]
    assert (
        curate("select", f"{s3}/pool/", str(tmp_path / "remote"), "--target", f"{s3}/target.jsonl.gz", *base)
        == 0
    )
    assert (
        curate(
            "select", str(GOLDEN / "pool"), str(tmp_path / "local"), "--target", local_target(tmp_path), *base
        )
        == 0
    )
    remote, local = shards(tmp_path / "remote"), shards(tmp_path / "local")
    assert local and remote == local


def test_a_glob_on_s3_picks_the_objects_it_matches(s3: str, tmp_path: Path) -> None:
    assert curate("dedup", "exact", f"{s3}/pool/part-0000[12].parquet", str(tmp_path / "out")) == 0
    assert sorted(shards(tmp_path / "out")) == ["part-00001.parquet", "part-00002.parquet"]


def test_store_errors_name_the_uri(s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert curate("dedup", "exact", f"{s3}/nothing-here/", str(tmp_path / "o")) == 1
    assert f"{s3}/nothing-here/" in capsys.readouterr().err


def remote(uri: str) -> dict[str, bytes]:
    """Every object under a prefix, by name."""
    from curate.io.stores import list_files_all, read_bytes

    return {name: read_bytes(u) or b"" for u, name, _ in list_files_all(uri)}


def test_an_output_on_s3_holds_what_a_local_output_holds(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATE_STAGING", str(tmp_path / "staging"))
    out = f"{s3}/outputs/gopher"
    assert curate("filter", "gopher", f"{s3}/pool/", out, "--rejected", f"{s3}/outputs/gopher-rej") == 0
    assert curate("filter", "gopher", str(GOLDEN / "pool"), str(tmp_path / "local")) == 0
    got = remote(out)
    assert {k: v for k, v in got.items() if k.endswith(".parquet")} == shards(tmp_path / "local")
    assert "_manifest.json" in got and not [k for k in got if ".tmp-" in k]
    assert any(k.endswith(".parquet") for k in remote(f"{s3}/outputs/gopher-rej"))
    # A rerun of the finished run resumes and uploads the same objects.
    assert curate("filter", "gopher", f"{s3}/pool/", out, "--rejected", f"{s3}/outputs/gopher-rej") == 0
    assert {k: v for k, v in remote(out).items() if k != "_manifest.json"} == {
        k: v for k, v in got.items() if k != "_manifest.json"
    }


def test_a_run_killed_during_the_upload_leaves_no_manifest_and_resumes(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import curate.engine.staging as staging

    monkeypatch.setenv("CURATE_STAGING", str(tmp_path / "staging"))
    real = staging.upload

    def dies_after_one(local, uri, names, *, delete=()):  # type: ignore[no-untyped-def]
        real(local, uri, names[:1], delete=delete)
        raise KeyboardInterrupt  # as a kill would, between two objects

    monkeypatch.setattr(staging, "upload", dies_after_one)
    out = f"{s3}/outputs/killed"
    assert curate("dedup", "exact", f"{s3}/pool/", out) == 130
    partial = remote(out)
    assert len(partial) == 1 and "_manifest.json" not in partial  # an unfinished run, no half objects
    monkeypatch.setattr(staging, "upload", real)
    assert curate("dedup", "exact", f"{s3}/pool/", out) == 0
    assert curate("dedup", "exact", str(GOLDEN / "pool"), str(tmp_path / "local")) == 0
    done = remote(out)
    assert "_manifest.json" in done
    assert {k: v for k, v in done.items() if k.endswith(".parquet")} == shards(tmp_path / "local")


def test_a_prefix_with_foreign_objects_is_refused(
    s3: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert curate("dedup", "exact", f"{s3}/pool/", f"{s3}/pool/") == 1  # the pool prefix: not curate's
    assert "did not write" in capsys.readouterr().err


def test_models_artifacts_and_reports_on_s3(s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """importance fit -o s3://..., score importance --model s3://..., --report/--stats-json s3://."""
    monkeypatch.setenv("CURATE_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("CURATE_CACHE", str(tmp_path / "cache"))
    pool, target = str(GOLDEN / "pool"), str(GOLDEN / "target.parquet")
    model = f"{s3}/models/imp.npz"
    assert curate("importance", "fit", "--target", target, "--raw", pool, "-o", model) == 0
    objects = remote(f"{s3}/models")
    assert "imp.npz" in objects and not [k for k in objects if ".tmp-" in k]
    local_model = tmp_path / "imp.npz"
    assert curate("importance", "fit", "--target", target, "--raw", pool, "-o", str(local_model)) == 0
    for name, m in (("remote", model), ("local", str(local_model))):
        assert curate("score", "importance", "--model", m, pool, str(tmp_path / name)) == 0
    assert shards(tmp_path / "remote") == shards(tmp_path / "local")
    argv = ["dedup", "exact", pool, str(tmp_path / "dx"), "--report", f"{s3}/reports/dx.html"]
    assert curate(*argv, "--stats-json", f"{s3}/reports/dx.json", "--summary-md", f"{s3}/reports/dx.md") == 0
    reports = remote(f"{s3}/reports")
    assert (
        reports["dx.html"].startswith(b"<!DOCTYPE html>") and b'"kind": "dedup exact"' in reports["dx.json"]
    )
    assert f"{s3}/reports/dx.html".encode() in reports["dx.md"]


def test_sidecars_on_s3_join_as_local_ones_do(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATE_STAGING", str(tmp_path / "staging"))
    pool = str(GOLDEN / "pool")
    keep = ["--column", "gopher_words", "--keep-top", "50%"]
    for name, side in (("remote", f"{s3}/side/heur"), ("local", str(tmp_path / "heur"))):
        assert curate("score", "heuristics", pool, side, "--write-sidecar") == 0
        assert curate("filter", "threshold", pool, str(tmp_path / name), "--sidecar", side, *keep) == 0
    assert shards(tmp_path / "remote") and shards(tmp_path / "remote") == shards(tmp_path / "local")


def test_report_check_and_diff_read_runs_on_s3(
    s3: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CURATE_STAGING", str(tmp_path / "staging"))
    out = f"{s3}/runs/dx"
    argv = ["dedup", "exact", str(GOLDEN / "pool"), out, "--stats-json", str(tmp_path / "a.json")]
    assert curate(*argv) == 0

    run = run_main  # these commands take no --workers
    assert run("report", out) == 0
    assert remote(out)["_report.html"].startswith(b"<!DOCTYPE html>")
    assert run("check", out + "/", "--check", "rows_out >= 1") == 0
    assert run("diff", str(tmp_path / "a.json"), out) == 0
