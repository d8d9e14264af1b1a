"""What `select --diversity K` costs next to plain `select`, and what fitting k-means on an
in-memory sample (100 rows per cluster) gives up against Lloyd passes over the whole pool.
Prints one JSON line.

    python bench/measure_diversity_cost.py [--mb-per-domain 20] [--k 256] [--copies 1]

`--copies N` writes the pool N times over (new ids, same text), to see the cost on a pool larger
than the local text: there the sample (100 rows per cluster) is a small share of the pool, as it
is on real pools, instead of all of it.

Both selections run as users run them (`curate select ...`, new processes, default workers),
interleaved, best of `--repeats`.
The inertia of each centroid set is measured over every row's hashed embedding (the same
embedding `select --diversity` computes: `curate embed`'s defaults), against `curate cluster`'s
centroids (streamed Lloyd passes over the pool, to convergence or 20 passes).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import compile_curate


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def curate(*args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one curate command."""
    c0, t0 = cpu(), time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "curate.cli.main", *args, "--no-progress"], check=True, capture_output=True
    )
    return round(time.perf_counter() - t0, 2), round(cpu() - c0, 2)


def replicate(pool: Path, copies: int) -> None:
    """Each shard written `copies` times, ids suffixed by the copy number."""
    import pyarrow as pa
    import pyarrow.compute as pc

    for path in sorted(pool.glob("*.parquet")):
        table = pq.read_table(path)
        for i in range(1, copies):
            ids = pc.binary_join_element_wise(table["id"], pa.scalar(f"#{i}"), "")
            out = table.set_column(table.schema.get_field_index("id"), "id", ids)
            pq.write_table(out, path.with_name(f"{path.stem}-copy{i}.parquet"), row_group_size=1024)


def _idf_agreement(out: Path, shards: list[Path], x: np.ndarray) -> dict[str, float]:
    """Cosine between each row's embedding under `select --diversity`'s idf (document frequencies
    of its k-means sample) and under `curate embed`'s (of up to 200K documents): what taking the
    idf from the sample changes."""
    from curate.stages.embed import HashedEmbedder
    from curate.steps.clusters import POOL_EMBED_DIM, pool_embed_spec

    with np.load(out / "_embed.npz", allow_pickle=False) as z:
        emb = HashedEmbedder(spec=pool_embed_spec(0), idf=z["idf"], dim=POOL_EMBED_DIM, seed=0)
    vec = [emb.vectors(pq.read_table(p, columns=["text"]).column("text").combine_chunks()) for p in shards]
    y = np.concatenate([v[valid] for v, valid in vec])
    cos = (x * y).sum(1) if len(x) == len(y) else np.zeros(1)
    return {"mean": round(float(cos.mean()), 5), "p1": round(float(np.percentile(cos, 1)), 5)}


def main() -> None:
    compile_curate()  # commands start as an installed curate's do
    from curate.kmeans import KMeansModel, inertia_of
    from curate.stages.embed import embedding_matrix
    from curate.testing import build_corpus

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=20.0)
    ap.add_argument("--k", type=int, default=256)
    ap.add_argument("--budget", default="1%")
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-divcost-") as tmp:
        t = Path(tmp)
        c = build_corpus(
            t / "c", max_bytes_per_domain=int(args.mb_per_domain * 1e6), shards=8, row_group_size=1024
        )
        if args.copies > 1:
            replicate(c.pool, args.copies)
        pool, target = str(c.pool), str(c.target)
        runs: dict[str, list[tuple[float, float]]] = {"plain": [], "div": []}
        for i in range(args.repeats):  # interleaved, best of N: this machine's speed drifts
            for name, extra in (("plain", []), ("div", ["--diversity", str(args.k)])):
                out = str(t / f"{name}{i}")
                runs[name].append(
                    curate("select", pool, out, "--target", target, "--budget", args.budget, *extra)
                )
        plain, div = min(runs["plain"]), min(runs["div"])
        curate("embed", pool, str(t / "emb"))
        streamed = curate("cluster", str(t / "emb"), str(t / "cl"), "--k", str(args.k))
        x = np.concatenate(
            [embedding_matrix(b, "embedding", "emb", 0)[0] for p in sorted((t / "emb").glob("*.parquet")) for b in pq.ParquetFile(p).iter_batches(columns=["embedding"])]
        )  # fmt: skip
        sampled = KMeansModel.load(t / "div0" / "_kmeans")
        cosine = _idf_agreement(t / "div0", sorted(c.pool.glob("*.parquet")), x)
        full = KMeansModel.load(t / "cl" / "_kmeans")
        i_sampled, i_full = inertia_of(x, sampled.centroids), inertia_of(x, full.centroids)
        pool_mb = sum(p.stat().st_size for p in c.pool.glob("*.parquet")) / 1e6
    print(
        json.dumps(
            {
                "bench": "diversity_cost",
                "pool_docs": len(x),
                "pool_parquet_mb": round(pool_mb, 1),
                "k": args.k,
                "budget": args.budget,
                "plain_select": {"wall_s": plain[0], "cpu_s": plain[1]},
                "select_diversity": {
                    "wall_s": div[0],
                    "cpu_s": div[1],
                    "sample_rows": sampled.info.get("sample_rows"),
                },
                "ratio_wall": round(div[0] / plain[0], 2),
                "ratio_cpu": round(div[1] / plain[1], 2),
                "inertia_sample_fit": round(i_sampled, 2),
                "inertia_streamed_lloyd": round(i_full, 2),
                "streamed_passes": full.iterations,
                "inertia_cost": round(i_sampled / i_full - 1, 4),
                "streamed_cluster_cpu_s": streamed[1],
                "idf_docs": sampled.info.get("idf_docs"),
                "embedding_cosine_vs_full_idf": cosine,
            }
        )
    )


if __name__ == "__main__":
    main()
