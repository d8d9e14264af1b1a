"""Peak memory of `curate select` is flat in pool size.

Runs the same select (same token budget) on a pool of real text and on the same pool 4x larger
(copies with new ids), each in a fresh process, and prints one JSON line with the peak RSS of
the driver and of the largest worker for each, and their ratio.

    python bench/bench_memory.py [--mb-per-domain 10] [--factor 4] [--budget 2M]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import peak_rss_mb


def measure(pool: str, target: str, out: str, budget: str, workers: int) -> dict:
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job

    t = time.perf_counter()
    res = run_job(
        select_job(SelectConfig(pool=pool, output=out, target=target, budget=budget)),
        workers=workers,
        overwrite=True,
    )
    return {
        "seconds": round(time.perf_counter() - t, 2),
        "pool_mb": round(res.summary["pool_bytes"] / 1e6, 1),
        "pool_docs": res.summary["pool_docs"],
        "selected_docs": res.summary["selected_docs"],
        "driver_peak_rss_mb": round(peak_rss_mb(), 1),
        "worker_peak_rss_mb": res.summary["peak_rss_mb"]["workers"],
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=10.0)
    ap.add_argument("--factor", type=int, default=4)
    ap.add_argument("--budget", default="2M")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--side", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        print(json.dumps(measure(*args.side, budget=args.budget, workers=args.workers)))
        return
    from bench_dsir import replicate
    from curate.testing import build_corpus

    with tempfile.TemporaryDirectory(prefix="curate-mem-") as tmp:
        small = build_corpus(
            Path(tmp) / "small", max_bytes_per_domain=int(args.mb_per_domain * 1e6), row_group_size=1024
        )
        large = build_corpus(
            Path(tmp) / "large", max_bytes_per_domain=int(args.mb_per_domain * 1e6), row_group_size=1024
        )
        replicate(large.pool, args.factor)
        line: dict = {
            "bench": "memory",
            "budget": args.budget,
            "workers": args.workers,
            "factor": args.factor,
        }
        for name, c in (("pool_1x", small), (f"pool_{args.factor}x", large)):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--budget",
                    args.budget,
                    "--workers",
                    str(args.workers),
                    "--side",
                    str(c.pool),
                    str(c.target),
                    str(Path(tmp) / f"out-{name}"),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            line[name] = json.loads(out.stdout.strip().splitlines()[-1])
        big = line[f"pool_{args.factor}x"]
        line["driver_rss_ratio"] = round(big["driver_peak_rss_mb"] / line["pool_1x"]["driver_peak_rss_mb"], 3)
        line["worker_rss_ratio"] = round(big["worker_peak_rss_mb"] / line["pool_1x"]["worker_peak_rss_mb"], 3)
        print(json.dumps(line))


if __name__ == "__main__":
    main()
