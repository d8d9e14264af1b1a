"""Which length treatment should DSIR weights get by default? (METHODS §1.7)

Selects toward the Python language reference from a real multi-domain pool with each
treatment (`sum`: DSIR's raw sum; `per-chunk`: weights rescaled to a 128-word chunk) at several
token budgets and seeds, and prints one JSON line per setting plus a summary line: target-domain
precision (share of selected tokens from the target domain), KL reduction, mean selected length.

    python bench/measure_length_norm.py [--mb-per-domain 4] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))


def main() -> None:
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job
    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=4.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--budgets", default="1%,3%,10%")
    ap.add_argument("--min-words", type=int, default=30)
    ap.add_argument("--max-words", type=int, default=3000)
    args = ap.parse_args()
    rows = []
    ids: dict[tuple[str, str, int], set[str]] = {}
    with tempfile.TemporaryDirectory(prefix="curate-lengthnorm-") as tmp:
        # Real pools mix short and long documents; that is where DSIR's raw sum misbehaves.
        c = build_corpus(
            Path(tmp) / "c",
            max_bytes_per_domain=int(args.mb_per_domain * 1e6),
            doc_words=(args.min_words, args.max_words),
            target_fraction=0.3,
        )
        for budget in args.budgets.split(","):
            for norm in ("sum", "per-chunk"):
                for seed in range(args.seeds):
                    out = Path(tmp) / f"{norm}-{budget}-{seed}"
                    res = run_job(
                        select_job(
                            SelectConfig(
                                pool=str(c.pool),
                                output=str(out),
                                target=str(c.target),
                                budget=budget,
                                seed=seed,
                                length_norm=norm,
                                min_words=20,
                                group_by="domain",
                            )
                        ),
                        workers=0,
                    )
                    s = res.summary
                    share = {g["group"]: g["selected_share"] for g in s["groups"]}
                    t = pq.read_table(out, columns=["n_tokens", "id"])
                    ids[(budget, norm, seed)] = set(t.column("id").to_pylist())
                    row = {
                        "budget": budget,
                        "length_norm": norm,
                        "seed": seed,
                        "target_precision": round(share.get(c.target_domain, 0.0), 4),
                        "kl_reduction": round(s["kl_reduction"], 4),
                        "selected_docs": s["selected_docs"],
                        "mean_tokens_per_doc": round(
                            sum(t.column("n_tokens").to_pylist()) / max(t.num_rows, 1), 1
                        ),
                    }
                    rows.append(row)
                    print(json.dumps(row))
    summary: dict = {
        "bench": "length_norm",
        "target_domain": c.target_domain,
        "pool_docs": sum(c.domains.values()),
    }
    for budget in args.budgets.split(","):
        for norm in ("sum", "per-chunk"):
            sel = [r for r in rows if r["budget"] == budget and r["length_norm"] == norm]
            summary[f"{norm}@{budget}"] = {
                "target_precision": round(statistics.mean(r["target_precision"] for r in sel), 4),
                "kl_reduction": round(statistics.mean(r["kl_reduction"] for r in sel), 4),
                "mean_tokens_per_doc": round(statistics.mean(r["mean_tokens_per_doc"] for r in sel), 1),
                # how random the draw still is: overlap of the selections of different seeds
                # (1.0 = the noise no longer matters, DSIR's degenerate top-k)
                "seed_jaccard": round(
                    statistics.mean(
                        len(ids[(budget, norm, a)] & ids[(budget, norm, b)])
                        / len(ids[(budget, norm, a)] | ids[(budget, norm, b)])
                        for a in range(args.seeds)
                        for b in range(a + 1, args.seeds)
                    ),
                    3,
                )
                if args.seeds > 1
                else None,
            }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
