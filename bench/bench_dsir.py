"""curate vs DSIR's reference implementation (the `data-selection` package) on the same corpus.

Builds a real multi-domain pool from this machine's text (curate.testing.build_corpus), then
selects the same number of documents toward the same target with each tool, in separate
processes, and prints one JSON line: fit and score MB/s per core, end-to-end seconds, peak RSS,
the curate/reference ratios, and selection quality for both (target-domain precision and KL
reduction, computed in one shared hashed feature space).

With --workers 1 it also times curate's two whole commands (start-up included) on that pool, on
a --mid-replicate copy of it (~140 MB, the size issue #12 measured), on a --large-replicate copy
(~1 GB, 256 shards) and that copy in --large-shards shards, against the reference's CPU-seconds
per MB. Each whole-command figure is the median of 3 runs.

    python bench/bench_dsir.py [--mb-per-domain 4] [--workers N] [--large-replicate 64]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import compile_curate, cores, peak_rss_mb


def run_reference(work: Path, k: int, workers: int) -> dict:
    import nltk  # noqa: F401  (the reference's tokenizer)
    from data_selection import HashedNgramDSIR

    np.random.seed(0)  # the reference draws its Gumbel noise from the global RNG
    raw = sorted(str(p) for p in (work / "jsonl").glob("part-*.jsonl"))
    dsir = HashedNgramDSIR(
        raw_datasets=raw,
        target_datasets=[str(work / "jsonl" / "target.jsonl")],
        cache_dir=str(work / "ref_cache"),
        num_proc=workers,
        min_example_length=100,
    )
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    dsir.fit_importance_estimator(num_tokens_to_fit="auto")
    t1 = time.perf_counter()
    dsir.compute_importance_weights()
    t2 = time.perf_counter()
    fit_score_cpu = cpu_seconds() - c0
    dsir.resample(out_dir=str(work / "ref_out"), num_to_sample=k, cache_dir=str(work / "ref_tmp"))
    t3 = time.perf_counter()
    ids = []
    for p in sorted((work / "ref_out").glob("*.jsonl")):
        ids.extend(json.loads(line)["id"] for line in p.read_text().splitlines() if line.strip())
    return {
        "fit_s": t1 - t0,
        "score_s": t2 - t1,
        "fit_plus_score_cpu_s": fit_score_cpu,
        "resample_s": t3 - t2,
        "total_s": t3 - t0,
        "ids": ids,
        "peak_rss_mb": max(peak_rss_mb(), peak_rss_mb(children=True)),
    }


def run_curate(work: Path, k: int, workers: int, budget: str | None = None, out: str = "curate_out") -> dict:
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job

    t0 = time.perf_counter()
    res = run_job(
        select_job(
            SelectConfig(
                pool=str(work / "corpus" / "pool"),
                output=str(work / out),
                target=str(work / "corpus" / "target.parquet"),
                budget=budget or f"docs:{k}",
            )
        ),
        workers=workers,
        overwrite=True,
    )
    total = time.perf_counter() - t0
    ids = pq.read_table(work / out, columns=["id"]).column("id").to_pylist()
    t = res.summary["timings"]
    return {
        "fit_s": t["fit target"]["seconds"] + t["fit raw"]["seconds"],
        "score_s": t["score"]["seconds"],
        "resample_s": t["decide"]["seconds"] + t["write"]["seconds"],
        "total_s": total,
        "ids": ids,
        "peak_rss_mb": max(peak_rss_mb(), peak_rss_mb(children=True)),
    }


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def whole_commands(work: Path, repeats: int = 3) -> dict:
    """`curate importance fit` then `curate score importance` on work/corpus as users run them:
    new processes, one worker, start-up included; the median CPU seconds of `repeats` runs of
    each (outputs removed before each run, so none resumes), full rows and --write-sidecar."""
    pool, target = str(work / "corpus" / "pool"), str(work / "corpus" / "target.parquet")
    compile_curate()  # the commands start as an installed curate's do (bytecode, not source)
    curate = [sys.executable, "-m", "curate.cli.main"]
    steps = {
        "fit": ["importance", "fit", "--target", target, "--raw", pool, "-o", str(work / "w.npz")],
        "score": ["score", "importance", "--model", str(work / "w.npz"), pool, str(work / "w-full")],
        "score_sidecar": [
            *("score", "importance", "--model", str(work / "w.npz"), pool, str(work / "w-side")),
            "--write-sidecar",
        ],
    }
    out = {}
    for name, argv in steps.items():
        runs = []
        for i in range(repeats):
            if i:  # the outputs of the run before, else this run resumes and costs nothing
                for old in (work / "w-full", work / "w-side"):
                    shutil.rmtree(old, ignore_errors=True)
                if name == "fit":
                    for old in (work / "w.npz", work / "w.npz.json"):
                        old.unlink(missing_ok=True)
            c0 = cpu_seconds()
            subprocess.run([*curate, *argv, "-w", "1", "--no-progress"], check=True, capture_output=True)
            runs.append(cpu_seconds() - c0)
        out[f"{name}_cpu_s"] = round(float(np.median(runs)), 3)
    return out


def quality(work: Path, ids: list[str], target_domain: str) -> dict:
    from curate import native
    from curate.native import HashSpec
    from curate.report import kl_reduction

    pool = pq.read_table(work / "corpus" / "pool", columns=["id", "text", "domain"])
    target = pq.read_table(work / "corpus" / "target.parquet", columns=["text"])
    wanted = set(ids)
    chosen = pa.array([i in wanted for i in pool.column("id").to_pylist()])
    sel = pool.filter(chosen)
    spec = HashSpec()
    kl = kl_reduction(
        native.ngram_histogram(target.column("text"), spec),
        native.ngram_histogram(pool.column("text"), spec),
        native.ngram_histogram(sel.column("text"), spec),
    )
    precision = sum(d == target_domain for d in sel.column("domain").to_pylist()) / max(sel.num_rows, 1)
    from curate.tokens import exact_counter

    return {
        "docs": sel.num_rows,
        "tokens": int(exact_counter("cl100k").count(sel.column("text")).sum()),
        "target_precision": round(precision, 4),
        "kl_reduction": round(kl["kl_reduction"], 4),
    }


def replicate(pool: Path, copies: int) -> None:
    """Add copies of every shard with new ids (same text): a larger pool from the same real text."""
    for p in sorted(pool.glob("part-*.parquet")):
        t = pq.read_table(p)
        for c in range(1, copies):
            ids = pa.array([f"{i}-copy{c}" for i in t.column("id").to_pylist()])
            pq.write_table(
                t.set_column(0, "id", ids), pool / f"{p.stem}-copy{c}.parquet", row_group_size=1024
            )


def larger_pool(work: Path, pool: Path, copies: int, name: str = "larger") -> Path:
    """A copy of the corpus with `copies` copies of each original shard (the reference is not
    run on it: its rate, measured on the smaller pool, is linear in the text)."""
    root = work / name
    (root / "corpus" / "pool").mkdir(parents=True)
    shutil.copy(work / "corpus" / "target.parquet", root / "corpus" / "target.parquet")
    for p in sorted(pool.glob("part-*.parquet")):
        if "-copy" not in p.stem:
            shutil.copy(p, root / "corpus" / "pool" / p.name)
    replicate(root / "corpus" / "pool", copies)
    return root


def resharded(work: Path, source: Path, shards: int) -> Path:
    """The same rows as `source`'s pool, in `shards` larger shards (1024-row groups as before):
    the difference to `source` is what the pool's shard count costs."""
    root = work / f"resharded-{shards}"
    (root / "corpus" / "pool").mkdir(parents=True)
    shutil.copy(source / "corpus" / "target.parquet", root / "corpus" / "target.parquet")
    files = sorted((source / "corpus" / "pool").glob("*.parquet"))
    for i, group in enumerate(np.array_split(np.arange(len(files)), shards)):
        table = pa.concat_tables([pq.read_table(files[j]) for j in group])
        pq.write_table(table, root / "corpus" / "pool" / f"part-{i:05d}.parquet", row_group_size=1024)
    return root


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb-per-domain", type=float, default=4.0)
    ap.add_argument("--workers", type=int, default=cores())
    ap.add_argument(
        "--replicate", type=int, default=4, help="copies of the pool (new ids), to amortise start-up"
    )
    ap.add_argument(
        "--large-replicate",
        type=int,
        default=64,
        help="copies for a second, larger pool that only curate's whole commands run on (~1 GB)",
    )
    ap.add_argument(
        "--mid-replicate",
        type=int,
        default=9,
        help="copies for a pool of the size issue #12 measured (143 MB); 0 skips it",
    )
    ap.add_argument(
        "--large-shards",
        type=int,
        default=16,
        help="the larger pool again in this many shards (per-shard cost)",
    )
    ap.add_argument("--side", choices=["ref", "curate"], help=argparse.SUPPRESS)
    ap.add_argument("--work", help=argparse.SUPPRESS)
    ap.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.side:
        fn = run_reference if args.side == "ref" else run_curate
        print(json.dumps(fn(Path(args.work), args.k, args.workers)))
        return

    from curate.testing import build_corpus

    with tempfile.TemporaryDirectory(prefix="curate-bench-") as tmp:
        work = Path(tmp)
        corpus = build_corpus(
            work / "corpus", max_bytes_per_domain=int(args.mb_per_domain * 1e6), shards=4, row_group_size=1024
        )
        replicate(corpus.pool, args.replicate)
        (work / "jsonl").mkdir()
        for p in sorted(corpus.pool.glob("*.parquet")):
            rows = pq.read_table(p, columns=["id", "text"]).to_pylist()
            (work / "jsonl" / (p.stem + ".jsonl")).write_text("".join(json.dumps(r) + "\n" for r in rows))
        trows = pq.read_table(corpus.target, columns=["id", "text"]).to_pylist()
        (work / "jsonl" / "target.jsonl").write_text("".join(json.dumps(r) + "\n" for r in trows))
        pool_mb = (
            sum(
                len(r["text"].encode())
                for p in corpus.pool.glob("*.parquet")
                for r in pq.read_table(p, columns=["text"]).to_pylist()
            )
            / 1e6
        )
        target_mb = sum(len(r["text"].encode()) for r in trows) / 1e6
        k = corpus.domains[corpus.target_domain] * args.replicate
        results = {}
        for side in ("ref", "curate"):
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--side",
                    side,
                    "--work",
                    str(work),
                    "--k",
                    str(k),
                    "--workers",
                    str(args.workers),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            results[side] = json.loads(out.stdout.strip().splitlines()[-1])
            results[side]["quality"] = quality(work, results[side].pop("ids"), corpus.target_domain)
        # A doc budget favours whichever tool picks longer documents (more tokens); compare at
        # equal tokens too: curate with a token budget equal to the reference's selection.
        same = run_curate(
            work, k, args.workers, budget=str(results["ref"]["quality"]["tokens"]), out="curate_same_tokens"
        )
        results["curate"]["quality_at_reference_tokens"] = quality(work, same["ids"], corpus.target_domain)
        w = args.workers
        line: dict = {
            "bench": "dsir_vs_reference",
            "pool_mb": round(pool_mb, 2),
            "target_mb": round(target_mb, 3),
            "pool_docs": sum(corpus.domains.values()) * args.replicate,
            "selected_docs": k,
            "workers": w,
        }
        for side, r in results.items():
            fit_mb = pool_mb + target_mb  # both fit on all of this pool (it is under the 1e9-feature cap)
            line[side] = {
                "fit_mb_s_per_core": round(fit_mb / r["fit_s"] / w, 2),
                "score_mb_s_per_core": round(pool_mb / r["score_s"] / w, 2),
                "fit_plus_score_mb_s_per_core": round(
                    (fit_mb + pool_mb) / (r["fit_s"] + r["score_s"]) / w, 2
                ),
                "end_to_end_s": round(r["total_s"], 2),
                "peak_rss_mb": round(r["peak_rss_mb"], 1),
                **r["quality"],
            }
            if "quality_at_reference_tokens" in r:
                line[side]["at_reference_tokens"] = r["quality_at_reference_tokens"]
        line["ratio_fit_plus_score_per_core"] = round(
            line["curate"]["fit_plus_score_mb_s_per_core"] / line["ref"]["fit_plus_score_mb_s_per_core"], 1
        )
        line["ratio_end_to_end"] = round(line["ref"]["end_to_end_s"] / line["curate"]["end_to_end_s"], 1)
        # The whole commands, start-up and Parquet I/O included, per CPU-second of pool text.
        if w != 1:  # the reference's pool workers are still alive when it is measured: uncounted CPU
            line["whole_commands"] = "run with --workers 1 (the reference's CPU is only counted there)"
            print(json.dumps(line))
            return
        cmds = whole_commands(work)
        large = few = mid = None  # the same commands on larger copies of the pool, and resharded
        if args.mid_replicate > args.replicate:
            mid = whole_commands(larger_pool(work, corpus.pool, args.mid_replicate, name="mid"))
        if args.large_replicate > args.replicate:
            root = larger_pool(work, corpus.pool, args.large_replicate)
            large = whole_commands(root)
            if 0 < args.large_shards < len(list((root / "corpus" / "pool").glob("*.parquet"))):
                few = whole_commands(resharded(work, root, args.large_shards))
        ref_mb_cpu = pool_mb / results["ref"]["fit_plus_score_cpu_s"]
        full = pool_mb / (cmds["fit_cpu_s"] + cmds["score_cpu_s"])
        side = pool_mb / (cmds["fit_cpu_s"] + cmds["score_sidecar_cpu_s"])
        line["whole_commands"] = {
            **cmds,
            "ref_fit_plus_score_cpu_s": round(results["ref"]["fit_plus_score_cpu_s"], 2),
            "ref_mb_per_cpu_s": round(ref_mb_cpu, 2),
            "curate_mb_per_cpu_s": round(full, 1),
            "curate_sidecar_mb_per_cpu_s": round(side, 1),
            "ratio": round(full / ref_mb_cpu, 1),
            "ratio_sidecar": round(side / ref_mb_cpu, 1),
        }
        if mid is not None:
            mid_mb = pool_mb * args.mid_replicate / args.replicate
            mid_cpu = mid["fit_cpu_s"] + mid["score_sidecar_cpu_s"]
            line["whole_commands_mid_pool"] = {
                **mid,
                "pool_mb": round(mid_mb, 1),
                "curate_sidecar_mb_per_cpu_s": round(mid_mb / mid_cpu, 1),
                "ratio_sidecar": round(mid_mb / mid_cpu / ref_mb_cpu, 1),
            }
        if large is not None:
            # two pool sizes give each command pair's fixed cost and its cost per GB of text
            large_mb = pool_mb * args.large_replicate / args.replicate
            small_cpu = cmds["fit_cpu_s"] + cmds["score_sidecar_cpu_s"]
            large_cpu = large["fit_cpu_s"] + large["score_sidecar_cpu_s"]
            per_mb = (large_cpu - small_cpu) / (large_mb - pool_mb)
            line["whole_commands_larger_pool"] = {
                **large,
                "pool_mb": round(large_mb, 1),
                "curate_sidecar_mb_per_cpu_s": round(large_mb / large_cpu, 1),
                "ratio_sidecar": round(large_mb / large_cpu / ref_mb_cpu, 1),
                "fixed_cpu_s": round(small_cpu - per_mb * pool_mb, 2),
                "cpu_s_per_gb": round(per_mb * 1000, 2),
                "shards": len(list((root / "corpus" / "pool").glob("*.parquet"))),
            }
        if few is not None:
            few_cpu = few["fit_cpu_s"] + few["score_sidecar_cpu_s"]
            line["whole_commands_larger_pool_resharded"] = {
                **few,
                "shards": args.large_shards,
                "curate_sidecar_mb_per_cpu_s": round(large_mb / few_cpu, 1),
                "ratio_sidecar": round(large_mb / few_cpu / ref_mb_cpu, 1),
                "pair_cpu_ms_per_shard": round(
                    (large_cpu - few_cpu)
                    / (line["whole_commands_larger_pool"]["shards"] - args.large_shards)
                    * 1000,
                    2,
                ),
            }
        print(json.dumps(line))


if __name__ == "__main__":
    main()
