"""Precision and recall of `curate dedup minhash` on planted near-duplicates of real text.

Takes a real multi-domain pool (curate.testing.build_corpus), plants 4 edited copies of 500
documents (an inserted sentence, ~2% of words deleted, two paragraphs swapped, appended
boilerplate), dedups at Jaccard 0.8, and prints one JSON line. Recall: planted copies removed.
Precision: removed documents that are planted copies or whose true word-5-gram Jaccard with a
kept cluster head is >= 0.8 (the real pool has near-duplicates of its own: licence texts,
changelog entries).

    python bench/measure_minhash.py [--mb-per-domain 3] [--originals 500]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    from curate.engine.run import run_job
    from curate.jobs.dedup_minhash import MinHashConfig, minhash_dedup_job
    from curate.testing import build_corpus
    from curate.testing import near_duplicate_edit as edit
    from curate.testing import shingle_jaccard as jaccard

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=3.0)
    ap.add_argument("--originals", type=int, default=500)
    ap.add_argument("--threshold", type=float, default=0.8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-minhash-") as tmp_name:
        tmp = Path(tmp_name)
        c = build_corpus(tmp / "c", max_bytes_per_domain=int(args.mb_per_domain * 1e6))
        t = pq.read_table(c.pool)
        rng = np.random.default_rng(1)
        rows = t.to_pylist()
        originals = [r for r in rows if len(r["text"].split()) >= 150][: args.originals]
        variants = [
            {**r, "id": f"near-{i}-{k}", "text": edit(r["text"], k, rng)}
            for i, r in enumerate(originals)
            for k in range(4)
        ]
        original_of = {f"near-{i}-{k}": r["text"] for i, r in enumerate(originals) for k in range(4)}
        true_j = {v["id"]: jaccard(original_of[v["id"]], v["text"]) for v in variants}
        pool = tmp / "pool"
        pool.mkdir()
        pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), pool / "a.parquet")
        pq.write_table(pa.Table.from_pylist(variants, schema=t.schema), pool / "b.parquet")
        start = time.perf_counter()
        config = MinHashConfig(input=str(pool), output=str(tmp / "out"), threshold=args.threshold)
        res = run_job(minhash_dedup_job(config))
        seconds = time.perf_counter() - start
        kept = pq.read_table(tmp / "out")
        removed = {r["id"] for r in rows + variants} - set(kept.column("id").to_pylist())
        text_of = {r["id"]: r["text"] for r in rows + variants}
        heads = [
            i
            for i, n in zip(
                kept.column("id").to_pylist(), kept.column("minhash_cluster_size").to_pylist(), strict=True
            )
            if n > 1
        ]
        natural = [i for i in removed if not i.startswith("near-")]
        natural_ok = sum(
            max(jaccard(text_of[x], text_of[h]) for h in heads) >= args.threshold for x in natural
        )
        line = {
            "bench": "minhash_quality",
            "pool_docs": len(rows) + len(variants),
            "planted": len(variants),
            "threshold": args.threshold,
            "recall": round(sum(v["id"] in removed for v in variants) / len(variants), 4),
            # planted copies whose edit kept them at or above the threshold are the true positives
            "recall_at_true_jaccard_ge_threshold": round(
                sum(v["id"] in removed for v in variants if true_j[v["id"]] >= args.threshold)
                / max(sum(true_j[v["id"]] >= args.threshold for v in variants), 1),
                4,
            ),
            "planted_below_threshold": sum(true_j[v["id"]] < args.threshold for v in variants),
            "precision": round((len(removed) - len(natural) + natural_ok) / max(len(removed), 1), 4),
            "removed": len(removed),
            "removed_not_planted": len(natural),
            "of_which_true_near_duplicates": natural_ok,
            "seconds": round(seconds, 2),
            "signature_mb": res.summary["signature_mb"],
            "signature_mb_s_per_core": round(
                res.summary["signature_mb"] / max(res.summary["signature_seconds"], 1e-9), 1
            ),
            **{
                k: res.summary[k]
                for k in ("bands", "rows_per_band", "verified_pairs", "clusters", "largest_cluster")
            },
        }
        print(json.dumps(line))


if __name__ == "__main__":
    sys.exit(main())
