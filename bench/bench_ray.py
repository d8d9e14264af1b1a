"""The same jobs on the local executor and on Ray, as users run them (`curate ...` in a fresh
process: start-up, a local Ray's start, reads and writes included). Prints one JSON line:
wall seconds of each, whether the outputs are byte-identical, and Ray's cost per task
(from a job of many small shards, where the per-task overhead dominates).

    pip install -e '.[dev,ray]' && python bench/bench_ray.py [--mb 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cores, real_texts


def write_pool(folder: Path, texts: pa.Array, shards: int) -> None:
    folder.mkdir(parents=True)
    n = len(texts)
    ids = pa.array([f"d{i}" for i in range(n)])
    for s in range(shards):
        lo, hi = s * n // shards, (s + 1) * n // shards
        pq.write_table(pa.table({"id": ids[lo:hi], "text": texts[lo:hi]}), folder / f"part-{s:05d}.parquet")


def timed(argv: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "curate.cli.main", *argv, "--no-progress"], check=True, capture_output=True
    )
    return time.perf_counter() - start


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.parquet"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=40, help="pool text size")
    args = ap.parse_args()
    texts = real_texts(args.mb * 1_000_000)
    out: dict[str, object] = {"bench": "ray", "cores": cores(), "pool_mb": args.mb, "docs": len(texts)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        write_pool(work / "pool", texts, 16)
        few = texts[: min(len(texts), 1024)]
        write_pool(work / "small64", few, 64)
        write_pool(work / "small256", few, 256)
        target = work / "target.parquet"
        pq.write_table(pa.table({"text": texts[::97]}), target)
        jobs = {
            "select": ["select", str(work / "pool"), "{out}", "--target", str(target), "--budget", "5%"],
            "dedup_minhash": ["dedup", "minhash", str(work / "pool"), "{out}"],
            "filter_gopher_64_shards": ["filter", "gopher", str(work / "small64"), "{out}"],
            "filter_gopher_256_shards": ["filter", "gopher", str(work / "small256"), "{out}"],
        }
        for name, argv in jobs.items():
            seconds, outputs = {}, {}
            for executor in ("local", "ray"):
                folder = work / f"{name}-{executor}"
                seconds[executor] = round(
                    timed([a.replace("{out}", str(folder)) for a in argv] + ["--executor", executor]), 2
                )
                outputs[executor] = contents(folder)
            out[name] = {
                "local_s": seconds["local"],
                "ray_s": seconds["ray"],
                "identical": bool(outputs["local"]) and outputs["local"] == outputs["ray"],
            }
        # The same documents in 64 or in 256 shards: the slope is the cost of one more task.
        a, b = out["filter_gopher_64_shards"], out["filter_gopher_256_shards"]
        assert isinstance(a, dict) and isinstance(b, dict)
        for executor in ("local", "ray"):
            slope = (b[f"{executor}_s"] - a[f"{executor}_s"]) / 192
            out[f"{executor}_ms_per_task"] = round(1000 * slope, 1)
        start = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import ray; ray.init(include_dashboard=False, log_to_driver=False); ray.shutdown()",
            ],
            check=True,
            capture_output=True,
        )
        out["ray_start_s"] = round(time.perf_counter() - start, 2)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
