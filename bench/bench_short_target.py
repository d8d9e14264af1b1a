"""A target of short entries (issue 11, part 2): does the length treatment let long documents of
related prose into a selection toward ~60-word entries? Prints one JSON line.

Pool: curate's test corpus with documents of 20 to 3,000 words (log-uniform: long chapters of
Python docs, Debian changelogs and copyright files, code) beside a domain of short entries, the
package descriptions in /var/lib/dpkg/status (median ~60 words). Target: a seeded share of the
descriptions; the others stay in the pool. For each length treatment (`per-chunk`, curate's
default, and `sum`, DSIR's raw sum) and budget kind (documents, and the same amount as tokens):
token and document precision (the descriptions' share of the selection) and KL reduction.

    python bench/bench_short_target.py [--target-share 0.25] [--seeds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import statistics
import tempfile
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq


def descriptions(path: str = "/var/lib/dpkg/status") -> list[str]:
    """Each package's Description field (synopsis and long text), as one entry."""
    out, cur = [], None
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("Description:"):
            cur = [line[len("Description:") :].strip()]
        elif cur is not None and line.startswith(" "):
            cur.append("" if line.strip() == "." else line.strip())
        elif cur is not None:
            out.append("\n".join(cur))
            cur = None
    if cur:
        out.append("\n".join(cur))
    return sorted(set(out))


def main() -> None:
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job
    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--target-share", type=float, default=0.25)
    ap.add_argument("--mb-per-domain", type=float, default=3.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--length-norms", default="per-chunk,sum")
    ap.add_argument(
        "--budget-share", type=float, default=0.5, help="budget: this share of the entries in the pool"
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-bench-short-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = build_corpus(
            tmp / "c", max_bytes_per_domain=int(args.mb_per_domain * 1e6), doc_words=(20, 3000)
        )
        pool = pq.read_table(corpus.pool, columns=["id", "text", "domain"]).to_pylist()
        pool += pq.read_table(corpus.target, columns=["id", "text", "domain"]).to_pylist()
        entries = descriptions()
        random.Random(0).shuffle(entries)
        k = int(len(entries) * args.target_share)
        rows = [
            {"id": hashlib.sha1(t.encode()).hexdigest()[:16], "text": t, "domain": "package_descriptions"}
            for t in entries
        ]
        (tmp / "pool").mkdir()
        pq.write_table(
            pa.Table.from_pylist(pool + rows[k:]), tmp / "pool" / "part-0.parquet", row_group_size=512
        )
        pq.write_table(pa.Table.from_pylist(rows[:k]), tmp / "target.parquet")
        in_pool = len(rows) - k
        words = sorted(len(r["text"].split()) for r in rows)
        n_docs = int(in_pool * args.budget_share)
        # the same amount as tokens: what n_docs average descriptions hold (cl100k, as select counts)
        from curate.tokens import exact_counter

        counts = exact_counter("cl100k").count(pa.array([r["text"] for r in rows[k:]], pa.large_string()))
        per_doc = float(counts.mean())
        budgets = {"docs": f"docs:{n_docs}", "tokens": str(int(n_docs * per_doc))}
        line: dict[str, Any] = {
            "bench": "short_target",
            "target_docs": k,
            "entries_in_pool": in_pool,
            "pool_docs": len(pool) + in_pool,
            "entry_words_median": words[len(words) // 2],
            "budgets": budgets,
            "rows": [],
        }
        for norm in args.length_norms.split(","):
            for kind, budget in budgets.items():
                runs = []
                for seed in range(args.seeds):
                    out = tmp / f"{norm}-{kind}-{seed}"
                    config = SelectConfig(
                        pool=str(tmp / "pool"),
                        target=str(tmp / "target.parquet"),
                        output=str(out),
                        budget=budget,
                        seed=seed,
                        length_norm=norm,  # type: ignore[arg-type]
                        min_words=0,
                    )
                    s = run_job(select_job(config)).summary
                    t = pq.read_table(out, columns=["domain", "n_tokens"]).to_pylist()
                    on = [r for r in t if r["domain"] == "package_descriptions"]
                    runs.append(
                        {
                            "token_precision": sum(r["n_tokens"] for r in on) / sum(r["n_tokens"] for r in t),
                            "doc_precision": len(on) / len(t),
                            "kl_reduction": s["kl_reduction"],
                            "mean_tokens": sum(r["n_tokens"] for r in t) / len(t),
                        }
                    )
                line["rows"].append(
                    {
                        "length_norm": norm,
                        "budget": kind,
                        **{m: round(statistics.mean(r[m] for r in runs), 4) for m in runs[0]},
                    }
                )
        print(json.dumps(line))


if __name__ == "__main__":
    main()
