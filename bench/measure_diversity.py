"""Coverage at small budgets: cluster-balanced selection vs importance resampling alone.

On a real multi-domain pool built from this machine's text (curate.testing.build_corpus: Python
docs, docstrings, code, Debian changelogs and copyright files; `source` names the file or
package each document came from), select 0.5%, 1%, 2% and 5% of the pool's tokens three ways:
- `importance`: curate select toward the target (Python docs), i.e. DSIR alone;
- `diversify`: curate embed + cluster (k=64) + diversify, uniform inside clusters;
- `diversify+importance`: the same clusters, documents inside each drawn by dsir_log_weight.
and count the distinct domains and clusters covered (documents carry no finer group label:
`source` is unique per document). Prints one JSON line.

    python bench/measure_diversity.py [--mb 2] [--k 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))


def coverage(folder: Path, cluster_of: dict[str, int]) -> dict[str, int]:
    t = pq.read_table(folder, columns=["id", "domain"])
    clusters = {cluster_of.get(i, -1) for i in t.column("id").to_pylist()} - {-1}
    return {
        "docs": t.num_rows,
        "domains": len(set(t.column("domain").to_pylist())),
        "clusters": len(clusters),
    }


def main() -> None:
    from curate.budget import parse_budget
    from curate.engine.run import run_job
    from curate.jobs.cluster import ClusterConfig, cluster_job
    from curate.jobs.diversify import DiversifyConfig, diversify_job
    from curate.jobs.embed import EmbedConfig, embed_job
    from curate.jobs.select import SelectConfig, select_job

    def select(config: SelectConfig, workers: int) -> None:
        run_job(select_job(config), workers=workers)

    def diversify(source: str, dest: str, **kw: object) -> None:
        run_job(diversify_job(DiversifyConfig(input=source, output=dest, **kw)), workers=2)  # type: ignore[arg-type]

    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=2.0, help="MB of text per domain")
    ap.add_argument("--k", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        corpus = build_corpus(t / "c", max_bytes_per_domain=int(args.mb * 1e6), shards=4, seed=args.seed)
        # DSIR log weights on every pool row, so diversify can draw by them inside clusters
        sel_all = t / "scored"
        select(
            SelectConfig(
                target=str(corpus.target),
                pool=str(corpus.pool),
                output=str(sel_all),
                budget="100%",
                seed=args.seed,
            ),
            workers=2,
        )
        run_job(embed_job(EmbedConfig(input=str(sel_all), output=str(t / "emb"), seed=args.seed)), workers=2)
        run_job(
            cluster_job(ClusterConfig(input=str(t / "emb"), output=str(t / "cl"), k=args.k, seed=args.seed)),
            workers=2,
        )
        cl = pq.read_table(t / "cl", columns=["id", "kmeans_cluster"])
        cluster_of = dict(
            zip(cl.column("id").to_pylist(), cl.column("kmeans_cluster").to_pylist(), strict=True)
        )
        pool_cov = coverage(corpus.pool, cluster_of)
        rows = []
        for pct in ("0.5%", "1%", "2%", "5%"):
            imp = t / f"imp{pct}"
            select(
                SelectConfig(
                    target=str(corpus.target),
                    pool=str(corpus.pool),
                    output=str(imp),
                    budget=pct,
                    seed=args.seed,
                ),
                workers=2,
            )
            div = t / f"div{pct}"
            diversify(
                str(t / "cl"), str(div), budget=parse_budget(pct), seed=args.seed, tokens_column="n_tokens"
            )
            both = t / f"both{pct}"
            diversify(
                str(t / "cl"), str(both), budget=parse_budget(pct), quality_column="dsir_log_weight",
                seed=args.seed, tokens_column="n_tokens",
            )  # fmt: skip
            rows.append(
                {
                    "budget": pct,
                    "importance": coverage(imp, cluster_of),
                    "diversify": coverage(div, cluster_of),
                    "diversify+importance": coverage(both, cluster_of),
                }
            )
    print(json.dumps({"bench": "diversity_coverage", "k": args.k, "pool": pool_cov, "rows": rows}))


if __name__ == "__main__":
    main()
