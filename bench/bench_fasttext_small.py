"""fastText quality classifiers trained from a small target: top-N precision and AUC over a pool,
for each way of balancing the classes (issue 11, part 4). Prints one JSON line.

The case: `--positives` documents of one domain of curate's test corpus are the positives (the
target); the negatives are the pool itself, as DCLM takes random pool documents; the pool holds
every domain, the target's domain included (its other documents). Over the pool: AUC of the
target domain against the rest, and precision of the top N by `fasttext_quality`, N = the
target domain's documents in the pool.

    python bench/bench_fasttext_small.py [--positives 116] [--domain python_docstrings]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def main() -> None:
    from curate.stages.quality import (
        BALANCE,
        FastTextSettings,
        auc,
        hq_probabilities,
        load_model,
        one_line,
        train_fasttext,
    )
    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--positives", type=int, default=116)
    ap.add_argument("--domain", default="python_docstrings")
    ap.add_argument("--mb-per-domain", type=float, default=6.0)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-bench-ft-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = build_corpus(
            tmp / "c",
            target_domain=args.domain,
            target_fraction=0.2,
            max_bytes_per_domain=int(args.mb_per_domain * 1e6),
            doc_words=(40, 400),
        )
        positives = pq.read_table(corpus.target).column("text").to_pylist()[: args.positives]
        pool = pq.read_table(corpus.pool, columns=["text", "domain"])
        texts = pool.column("text").to_pylist()
        is_target = np.array([d == args.domain for d in pool.column("domain").to_pylist()])
        lines = one_line(pa.array(texts, pa.large_string()))
        n = int(is_target.sum())
        line: dict = {
            "bench": "fasttext_small_target",
            "positives": len(positives),
            "pool_docs": len(texts),
            "target_domain_in_pool": n,
            "domains": corpus.domains,
        }
        for balance in BALANCE:
            runs = []
            for seed in range(args.seeds):
                model_path = tmp / f"{balance}-{seed}.bin"
                report = train_fasttext(
                    positives, texts, model_path, settings=FastTextSettings(seed=seed), balance=balance
                )
                p = hq_probabilities(load_model(model_path), lines)
                top = np.argsort(-p, kind="stable")[:n]
                runs.append(
                    {
                        "pool_auc": auc(p, is_target),
                        "top_n_precision": float(is_target[top].mean()),
                        "holdout_auc": report.holdout_auc,
                        "train_docs": report.train_docs,
                    }
                )
            line[balance] = {
                "pool_auc": round(float(np.mean([r["pool_auc"] for r in runs])), 4),
                "top_n_precision": round(float(np.mean([r["top_n_precision"] for r in runs])), 4),
                "holdout_auc": round(float(np.mean([r["holdout_auc"] for r in runs])), 4),
                "train_docs": runs[0]["train_docs"],
                "seeds": args.seeds,
            }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
