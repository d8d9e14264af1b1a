"""LESS and BIDS on a real multi-domain pool (METHODS §2-§3, docs/influence.md), as users run
them: a warm-up proxy LM trained on a seeded random 5% of the pool with 4 checkpoints, three
target tasks of 10 held-out examples each from three domains, then

- for each task, the share of the task's domain in the top-k by `influence_<task>`;
- the per-task shares of a BIDS selection against LESS's top-k on `influence`, same budget;
- the same budget chosen by DSIR (`curate select`) toward the union of the tasks' examples.

Prints one JSON line. `python bench/measure_influence.py [--mb-per-domain 1] [--budget 150]`
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.testing import build_corpus

TASK_DOMAINS = ("python_docs", "python_code", "debian_changelog")


def curate(*argv: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "curate.cli.main", *argv, "--no-progress"], check=True, capture_output=True
    )


def shares(table: pa.Table) -> dict[str, float]:
    counts = collections.Counter(table.column("domain").to_pylist())
    return {d: round(counts.get(d, 0) / max(table.num_rows, 1), 3) for d in sorted(counts)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=1.0)
    ap.add_argument("--budget", type=int, default=150, help="documents")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        c = build_corpus(work / "c", max_bytes_per_domain=int(args.mb_per_domain * 1e6), target_fraction=0.0)
        pool = pq.read_table(c.pool)
        domains = sorted(set(pool.column("domain").to_pylist()))
        tasks = [d for d in TASK_DOMAINS if d in domains]
        # 10 examples per task, held out of the pool; the rest is the candidate pool
        held: list[int] = []
        for d in tasks:
            idx = pc.indices_nonzero(pc.equal(pool.column("domain"), d)).to_pylist()[:10]
            pq.write_table(pool.take(idx), work / f"task_{d}.parquet")
            held += idx
        keep = sorted(set(range(pool.num_rows)) - set(held))
        (work / "pool").mkdir()
        pq.write_table(pool.take(keep).drop_columns(["source"]), work / "pool" / "part-0.parquet")
        pq.write_table(
            pa.concat_tables([pq.read_table(work / f"task_{d}.parquet") for d in tasks]),
            work / "union.parquet",
        )
        p = str(work / "pool")
        rng = np.random.default_rng(0)  # the warm-up's seeded random 5% of the candidates
        sample = rng.choice(len(keep), size=max(1, len(keep) // 20), replace=False)
        pq.write_table(pool.take(keep).take(np.sort(sample)), work / "sample.parquet")
        curate(
            "train", "lm", "--data", str(work / "sample.parquet"), "-o", str(work / "warm"), "--steps", str(args.steps),
            "--dim", "64", "--layers", "2", "--heads", "2", "--context", "128", "--checkpoints", "4", "--device", "cpu",
        )  # fmt: skip
        task_args = [a for d in tasks for a in ("--task", f"{d}={work / f'task_{d}.parquet'}")]
        curate(
            "score",
            "influence",
            p,
            str(work / "scored"),
            "--model",
            str(work / "warm"),
            *task_args,
            "--dim",
            "2048",
        )
        scored = pq.read_table(work / "scored")
        out: dict[str, object] = {
            "bench": "measure_influence",
            "pool_docs": scored.num_rows,
            "pool_shares": shares(scored),
        }
        k = args.budget
        top = {}
        for d in tasks:
            col = pc.fill_null(scored.column(f"influence_{d}"), -1e9)
            order = pc.sort_indices(pa.table({"s": col}), sort_keys=[("s", "descending")])[:k]
            top[d] = shares(scored.take(order)).get(d, 0.0)
        out["top_k_share_of_own_domain"] = top
        best = pc.sort_indices(
            pa.table({"s": pc.fill_null(scored.column("influence"), -1e9)}), sort_keys=[("s", "descending")]
        )[:k]
        out["less_top_k_shares"] = shares(scored.take(best))
        curate("bids", str(work / "scored"), str(work / "bids"), "--budget", f"docs:{k}")
        out["bids_shares"] = shares(pq.read_table(work / "bids"))
        curate(
            "select",
            p,
            str(work / "dsir"),
            "--target",
            str(work / "union.parquet"),
            "--budget",
            f"docs:{k}",
            "--min-words",
            "0",
        )
        out["dsir_shares"] = shares(pq.read_table(work / "dsir"))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
