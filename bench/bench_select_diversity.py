"""Target-aware diversity in `curate select` (issue 11, part 3): coverage of the target's
clusters, token precision and KL reduction, against plain select and the `proportional`
allocation. Prints one JSON line.

On a real multi-domain pool built from this machine's text (curate.testing.build_corpus), toward
a target of one domain's documents, at each budget: `select` alone, `select --diversity K` with
`--diversity-allocation proportional`, and with `target` (the default). Token precision: the
share of selected tokens from the target's domain. KL reduction: select's own (hashed n-gram
distribution of the selection vs the target). Target clusters covered: clusters holding at least
one target document (by the run's embedder and centroids) that the selection reaches; for plain
select, its documents are assigned with the same artifacts.

    python bench/bench_select_diversity.py [--k 64] [--budgets 1%,2%,5%] [--domain python_docstrings]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def assign(artifacts: Path, texts: list[str], seed: int) -> np.ndarray:
    """Clusters of `texts` by the embedder and centroids a --diversity run saved in its output."""
    from curate.kmeans import KMeansModel
    from curate.pipeline import Pipeline, ShardReport
    from curate.stages.diversity import KMEANS_CLUSTER, KMeansAssign
    from curate.stages.embed import HashedEmbedder
    from curate.steps.clusters import EMBED_ARTIFACT, KMEANS_ARTIFACT, POOL_EMBED_DIM, pool_embed_spec

    with np.load(artifacts / f"{EMBED_ARTIFACT}.npz", allow_pickle=False) as z:
        embedder = HashedEmbedder(spec=pool_embed_spec(seed), idf=z["idf"], dim=POOL_EMBED_DIM, seed=seed)
    model = KMeansModel.load(artifacts / KMEANS_ARTIFACT)
    pipeline = Pipeline(stages=(embedder, KMeansAssign(centroids=model.centroids)))
    batch = pa.RecordBatch.from_pydict({"text": pa.array(texts, pa.large_string())})
    col = pipeline.apply(batch, ShardReport(shard="bench")).column(KMEANS_CLUSTER)
    return np.asarray(col.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)


def main() -> None:
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job
    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--budgets", default="1%,2%,5%")
    ap.add_argument("--domain", default="python_docstrings")
    ap.add_argument("--mb-per-domain", type=float, default=4.0)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-bench-seldiv-") as tmp_name:
        tmp = Path(tmp_name)
        corpus = build_corpus(
            tmp / "c",
            target_domain=args.domain,
            target_fraction=0.3,
            max_bytes_per_domain=int(args.mb_per_domain * 1e6),
            doc_words=(40, 600),
        )
        target_texts = pq.read_table(corpus.target).column("text").to_pylist()
        line: dict[str, Any] = {
            "bench": "select_diversity",
            "k": args.k,
            "domains": corpus.domains,
            "rows": [],
        }
        target_clusters: set[int] | None = None
        artifacts: Path | None = None
        for budget in args.budgets.split(","):
            for mode in ("plain", "proportional", "target"):
                out = tmp / f"{mode}-{budget.strip('%')}"
                diversity = None if mode == "plain" else args.k
                config = SelectConfig(
                    pool=str(corpus.pool),
                    target=str(corpus.target),
                    output=str(out),
                    budget=budget,
                    seed=args.seed,
                    diversity=diversity,
                    diversity_allocation=mode if diversity else "target",
                )
                summary = run_job(select_job(config)).summary
                if diversity and target_clusters is None:
                    artifacts = out
                    target_clusters = set(assign(out, target_texts, args.seed).tolist()) - {-1}
                t = pq.read_table(out, columns=["text", "domain", "n_tokens"])
                tokens = np.asarray(t.column("n_tokens").to_numpy(), np.float64)
                on = np.array([d == args.domain for d in t.column("domain").to_pylist()])
                row = {
                    "budget": budget,
                    "mode": mode,
                    "docs": t.num_rows,
                    "token_precision": round(float(tokens[on].sum() / tokens.sum()), 4),
                    "kl_reduction": round(summary["kl_reduction"], 4),
                    "domains_covered": len(set(t.column("domain").to_pylist())),
                    "_texts": t.column("text").to_pylist(),
                }
                line["rows"].append(row)
        assert target_clusters is not None and artifacts is not None
        line["target_clusters"] = len(target_clusters)
        for row in line["rows"]:
            chosen = set(assign(artifacts, row.pop("_texts"), args.seed).tolist())
            row["target_clusters_covered"] = len(chosen & target_clusters)
        print(json.dumps(line))


if __name__ == "__main__":
    main()
