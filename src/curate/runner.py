"""Running stages over datasets: map a pipeline shard by shard, or select rows to a budget.

Both accept a dataset (folder, glob, file) or `-` (Arrow IPC on stdin/stdout) on either side.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import __version__, native
from curate.budget import Budget, human_count
from curate.errors import SchemaError, UsageError
from curate.executors.local import map_tasks, resolve_workers, threads_per_worker
from curate.io.inputs import (
    STDIO,
    Columns,
    DatasetSpec,
    Shard,
    discover,
    iter_batches,
    iter_stdin,
    read_schema,
)
from curate.io.outputs import Manifest, StdoutWriter, output_files
from curate.pipeline import (
    Pipeline,
    RunContext,
    ShardReport,
    canonicalize_schema,
    collect_keys,
    merge_reports,
    run_shard,
    run_stream,
    write_selected,
)
from curate.progress import NoProgress, Progress
from curate.stages.resample import GumbelTopK


@dataclass
class RunResult:
    report: ShardReport
    seconds: float
    output: str
    extra: dict[str, Any] = field(default_factory=dict)


def _plan(
    kind: str, stages: Any, inputs: list[Shard] | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "kind": kind,
        "stages": repr(stages),
        "inputs": [[s.name, s.size] for s in inputs] if inputs else "-",
        "curate_version": __version__,
        "kernel_version": native.KERNEL_VERSION,
        **(extra or {}),
    }


@contextmanager
def spooled_stdin(cols: Columns) -> Iterator[list[Shard]]:
    """Copy an IPC stream from stdin to a temporary file so that it can be read twice."""
    tmp = Path(tempfile.mkdtemp(prefix="curate-stdin-"))
    try:
        schema, batches = iter_stdin(cols, raw=True)
        path = tmp / "stdin.arrow"
        with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_file(sink, schema) as w:
            for b in batches:
                w.write_batch(b)
        yield [Shard(path=str(path), name="stdin.arrow", index=0, format="ipc", size=path.stat().st_size)]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_map(
    pipeline: Pipeline,
    source: DatasetSpec,
    dest: str,
    *,
    columns: Columns,
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
    rejected: str | None = None,
) -> RunResult:
    """Apply annotators/filters to every shard of `source`, writing one output shard per input;
    rows that filters drop go to `rejected` (a folder), with a `filter_reason` column."""
    progress = progress or NoProgress()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    threads = threads_per_worker(workers)
    if source == STDIO or dest == STDIO:
        return _run_map_stream(
            pipeline,
            source,
            dest,
            columns=columns,
            threads=threads,
            batch_size=batch_size,
            overwrite=overwrite,
        )
    shards = discover(source)
    for s in shards:
        pipeline.validate(canonicalize_schema(read_schema(s), columns, s.path), s.path)
    plan = _plan(
        "map", pipeline, shards, {"batch_size": batch_size, "columns": repr(columns), "rejected": rejected}
    )
    manifest = Manifest(Path(dest), plan, overwrite=overwrite)
    side = Manifest(Path(rejected), {**plan, "side": "rejected"}, overwrite=overwrite) if rejected else None
    ctx = RunContext(columns=columns, batch_size=batch_size, threads=threads, output=dest, rejected=rejected)
    reports: dict[int, ShardReport] = {}
    todo = []
    for s in shards:
        rec = manifest.shard_done(s.name)
        if rec:
            reports[s.index] = ShardReport.from_dict(rec["report"])
        else:
            todo.append(s)
    progress.start("map", sum(s.size for s in todo))

    def done(i: int, rep: ShardReport) -> None:
        reports[todo[i].index] = rep
        manifest.mark_shard(todo[i].name, {"files": rep.files, "report": rep.to_dict()})
        progress.advance("map", todo[i].size)

    map_tasks(run_shard, [(pipeline, s, ctx) for s in todo], workers=workers, on_result=done)
    progress.end("map")
    total = merge_reports(reports[s.index] for s in shards)
    manifest.finish(total.to_dict())
    if side is not None:
        side.finish({**total.to_dict(), "side": "rejected rows"})
    return RunResult(report=total, seconds=time.perf_counter() - start, output=dest)


def _run_map_stream(
    pipeline: Pipeline,
    source: DatasetSpec,
    dest: str,
    *,
    columns: Columns,
    threads: int,
    batch_size: int,
    overwrite: bool,
) -> RunResult:
    start = time.perf_counter()
    if source == STDIO:
        schema, batches = iter_stdin(columns)
    else:
        shards = discover(source)
        schema = canonicalize_schema(read_schema(shards[0]), columns, shards[0].path)

        def gen() -> Iterator[pa.RecordBatch]:
            for s in shards:
                s_schema = canonicalize_schema(read_schema(s), columns, s.path)
                if s_schema != schema:
                    raise UsageError(
                        f"{s.path}: schema differs from {shards[0].path}; streaming to stdout needs one schema"
                    )
                yield from iter_batches(s, columns, batch_size=batch_size)

        batches = gen()
    out_schema = pipeline.validate(schema, "stdin" if source == STDIO else shards[0].path)
    if dest == STDIO:
        writer = StdoutWriter(out_schema)
        report = run_stream(pipeline, schema, batches, writer.write, threads=threads)
        writer.close()
        sys.stdout.flush()
    else:
        from curate.io.outputs import ParquetShardWriter

        manifest = Manifest(
            Path(dest), _plan("map", pipeline, None, {"batch_size": batch_size}), overwrite=overwrite
        )
        target = Path(dest) / "part-00000.parquet"
        with ParquetShardWriter(target, out_schema) as pw:
            report = run_stream(pipeline, schema, batches, pw.write, threads=threads)
        report.files = [target.name]
        manifest.mark_shard("stdin", {"files": report.files, "report": report.to_dict()})
        manifest.finish(report.to_dict())
    return RunResult(report=report, seconds=time.perf_counter() - start, output=dest)


def run_resample(
    selector: GumbelTopK,
    source: DatasetSpec,
    dest: str,
    *,
    columns: Columns,
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Select rows of `source` to the selector's budget (two passes; memory O(selected))."""
    if source == STDIO:
        with spooled_stdin(columns) as shards:
            return _run_resample(
                selector,
                shards,
                dest,
                columns=columns,
                workers=workers,
                overwrite=overwrite,
                batch_size=batch_size,
                progress=progress,
            )
    return _run_resample(
        selector,
        discover(source),
        dest,
        columns=columns,
        workers=workers,
        overwrite=overwrite,
        batch_size=batch_size,
        progress=progress,
    )


def _run_resample(
    selector: GumbelTopK,
    shards: list[Shard],
    dest: str,
    *,
    columns: Columns,
    workers: int | None,
    overwrite: bool,
    batch_size: int,
    progress: Progress | None,
) -> RunResult:
    from curate.select import decide

    progress = progress or NoProgress()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    pipeline = Pipeline(stages=())
    for s in shards:
        selector.validate(canonicalize_schema(read_schema(s), columns, s.path), s.path)
    if dest == STDIO:
        tmp = Path(tempfile.mkdtemp(prefix="curate-resample-"))
        try:
            result = _run_resample(
                selector,
                shards,
                str(tmp / "out"),
                columns=columns,
                workers=workers,
                overwrite=True,
                batch_size=batch_size,
                progress=progress,
            )
            files = list(output_files(tmp / "out"))
            if files:
                import pyarrow.parquet as pq

                schema = pq.read_schema(files[0])
                writer = StdoutWriter(schema)
                for f in files:
                    for b in pq.ParquetFile(f).iter_batches():
                        writer.write(b)
                writer.close()
                sys.stdout.flush()
            result.output = STDIO
            return result
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    manifest = Manifest(
        Path(dest), _plan("resample", selector, shards, {"batch_size": batch_size}), overwrite=overwrite
    )
    work = manifest.work_dir()
    ctx = RunContext(columns=columns, batch_size=batch_size, threads=threads_per_worker(workers), output=dest)
    keys_paths = [str(work / f"keys-{s.index:05d}.npz") for s in shards]
    progress.start("keys", sum(s.size for s in shards))
    reps1 = map_tasks(
        collect_keys,
        [(pipeline, selector, s, ctx, keys_paths[s.index], None) for s in shards],
        workers=workers,
        on_result=lambda i, r: progress.advance("keys", shards[i].size),
    )
    progress.end("keys")
    pass1 = merge_reports(r for r in reps1 if r is not None)
    budget = selector.budget
    selectable_cost = 0
    selectable_rows = 0
    for p in keys_paths:
        with np.load(p, allow_pickle=False) as z:
            ok = np.isfinite(z["key"])
            selectable_rows += int(ok.sum())
            selectable_cost += int(z["cost"][ok].sum())
    if budget.unit == "fraction":
        budget = Budget(unit="tokens", amount=float(np.ceil(budget.amount * selectable_cost)))
    if budget.amount > selectable_cost:
        raise UsageError(
            f"budget {selector.budget} is larger than the selectable rows: {human_count(selectable_cost)} "
            f"{budget.unit} in {selectable_rows:,} rows with a finite {selector.by!r}",
            hint="lower the budget, or use a percentage such as 50%",
        )
    per_shard, decision = decide(keys_paths, budget, selector.policy)
    progress.start("write", sum(s.size for s in shards))
    reps2 = map_tasks(
        write_selected,
        [(pipeline, s, per_shard[s.index], ctx) for s in shards],
        workers=workers,
        on_result=lambda i, r: progress.advance("write", shards[i].size),
    )
    progress.end("write")
    for p in keys_paths:
        Path(p).unlink(missing_ok=True)
    pass2 = merge_reports(r for r in reps2 if r is not None)
    summary = {
        "budget": str(selector.budget),
        "budget_resolved": {"unit": budget.unit, "amount": budget.amount},
        "selected_rows": pass2.rows_out,
        "selected_cost": decision["selected_cost"],
        "budget_error": (decision["selected_cost"] - budget.amount) / budget.amount,
        "pool_rows": pass1.rows_in,
        "selectable_rows": selectable_rows,
        "mode": "top-k" if selector.top_k else "gumbel resampling",
        "policy": selector.policy,
        "seed": selector.seed,
        "by": selector.by,
        "key_threshold": decision["key_threshold"],
    }
    manifest.finish(summary)
    return RunResult(report=pass2, seconds=time.perf_counter() - start, output=dest, extra=summary)


# ---------------------------------------------------------------------------------- exact dedup
POSITION_BITS = 40  # global position = shard index << 40 | row: input order, 1T rows per shard


def hash_shard(shard: Shard, ctx: RunContext, out_path: str) -> ShardReport:
    """Pass 1 of exact dedup: every row's normalised-text hash (masked when null or empty)."""
    from curate.pipeline import peak_rss_mb, text_stats
    from curate.stages.dedup import DEDUP_EXACT_HASH, ExactHash

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    stage = ExactHash()
    hashes, valid = [], []
    for batch in iter_batches(shard, ctx.columns, columns=["text"], batch_size=ctx.batch_size):
        text_stats(batch, report)
        col = stage.annotate(batch)[DEDUP_EXACT_HASH]
        valid.append(np.asarray(col.is_valid().to_numpy(zero_copy_only=False), dtype=bool))
        hashes.append(np.asarray(col.fill_null(0).to_numpy(zero_copy_only=False), dtype=np.uint64))
    np.savez(
        out_path,
        hash=np.concatenate(hashes) if hashes else np.zeros(0, np.uint64),
        valid=np.concatenate(valid) if valid else np.zeros(0, bool),
    )
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def exact_decision(shards: list[Shard], paths: list[str]) -> tuple[list[np.ndarray], list[np.ndarray], Any]:
    """From hash_shard's spills: per shard, which rows to keep (first occurrences in input order;
    null/empty texts always) and each row's number of copies. Memory: distinct hashes only."""
    from curate.stages.dedup import first_occurrences

    parts = []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            h, ok = z["hash"][z["valid"]], z["valid"]
        pos = (np.int64(s.index) << POSITION_BITS) + np.flatnonzero(ok).astype(np.int64)
        parts.append(first_occurrences(h, pos, np.ones(len(h), np.int64)))
    merged = first_occurrences(
        np.concatenate([np.zeros(0, np.uint64), *(x.hash for x in parts)]),
        np.concatenate([np.zeros(0, np.int64), *(x.position for x in parts)]),
        np.concatenate([np.zeros(0, np.int64), *(x.count for x in parts)]),
    )
    del parts
    keeps, copies = [], []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            h, ok = z["hash"], z["valid"]
        rows = np.arange(len(h), dtype=np.int64)
        keep = ~ok
        copies_all = np.ones(len(h), np.int64)
        if ok.any():
            first, n_copies = merged.lookup(h[ok])
            keep[ok] = first == (np.int64(s.index) << POSITION_BITS) + rows[ok]
            copies_all[ok] = n_copies
        keeps.append(keep)
        copies.append(copies_all)
    return keeps, copies, merged


def run_exact_dedup(
    source: DatasetSpec,
    dest: str,
    *,
    columns: Columns,
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Keep the first occurrence (input order: shard order, then row order) of every normalised
    text; add `dedup_exact_hash` and `dedup_exact_copies` (occurrences in the whole input).
    Null and empty texts are never duplicates. Memory: 24 bytes per distinct document."""
    if source == STDIO:
        with spooled_stdin(columns) as shards:
            return _run_exact_dedup(shards, dest, columns, workers, overwrite, batch_size, progress)
    return _run_exact_dedup(discover(source), dest, columns, workers, overwrite, batch_size, progress)


def _run_exact_dedup(
    shards: list[Shard],
    dest: str,
    columns: Columns,
    workers: int | None,
    overwrite: bool,
    batch_size: int,
    progress: Progress | None,
) -> RunResult:
    from curate.stages.dedup import DEDUP_EXACT_COPIES, ExactHash

    progress = progress or NoProgress()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    if dest == STDIO:
        raise UsageError(
            "dedup writes a dataset folder; stream it onward with `curate ... OUT -` from that folder"
        )
    pipeline = Pipeline(stages=(ExactHash(),))
    for s in shards:
        pipeline.validate(canonicalize_schema(read_schema(s), columns, s.path), s.path)
    manifest = Manifest(
        Path(dest), _plan("dedup exact", pipeline, shards, {"batch_size": batch_size}), overwrite=overwrite
    )
    work = manifest.work_dir()
    ctx = RunContext(columns=columns, batch_size=batch_size, threads=threads_per_worker(workers), output=dest)
    paths = [str(work / f"hash-{s.index:05d}.npz") for s in shards]
    progress.start("hash", sum(s.size for s in shards))
    reps1 = map_tasks(
        hash_shard,
        [(s, ctx, paths[s.index]) for s in shards],
        workers=workers,
        on_result=lambda i, r: progress.advance("hash", shards[i].size),
    )
    progress.end("hash")
    keeps, copies, merged = exact_decision(shards, paths)
    dropped = sum(int((~k).sum()) for k in keeps)
    tasks = [
        (pipeline, s, np.flatnonzero(k).astype(np.int64), ctx, None, None, None, {DEDUP_EXACT_COPIES: c[k]})
        for s, k, c in zip(shards, keeps, copies, strict=True)
    ]
    progress.start("write", sum(s.size for s in shards))
    reps2 = map_tasks(
        write_selected,
        tasks,
        workers=workers,
        on_result=lambda i, r: progress.advance("write", shards[i].size),
    )
    progress.end("write")
    pass1 = merge_reports(r for r in reps1 if r is not None)
    pass2 = merge_reports(r for r in reps2 if r is not None)
    summary = {
        "rows_in": pass1.rows_in,
        "rows_out": pass2.rows_out,
        "duplicates_dropped": dropped,
        "distinct_texts": len(merged.hash),
        "null_text": pass1.null_text,
        "empty_text": pass1.empty_text,
        "largest_group": int(merged.count.max()) if len(merged.count) else 0,
        "groups_with_copies": int((merged.count > 1).sum()),
        "normalisation": "NFKC, lower-case, whitespace runs collapsed, trimmed",
        "kept": "first occurrence in input order (shard order, then row order)",
    }
    manifest.finish(summary)
    pass2.drops["exact duplicate"] = dropped
    return RunResult(report=pass2, seconds=time.perf_counter() - start, output=dest, extra=summary)


# ---------------------------------------------------------------------------------- near-dup dedup
def signature_shard(
    shard: Shard, ctx: RunContext, out_path: str, num_perm: int, ngram: int, seed: int, bands: int, rows: int
) -> ShardReport:
    """Pass 1 of near-dup dedup: MinHash signatures and LSH band hashes of every row, spilled."""
    from curate import native
    from curate.pipeline import peak_rss_mb, text_stats
    from curate.stages.dedup import band_hashes

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    sigs, valid = [], []
    for batch in iter_batches(shard, ctx.columns, columns=["text"], batch_size=ctx.batch_size):
        text_stats(batch, report)
        sig = native.minhash_signatures(
            batch.column("text"), num_perm=num_perm, ngram=ngram, seed=seed, threads=ctx.threads
        )
        sigs.append(sig)
        valid.append(~(sig == np.uint32(0xFFFFFFFF)).all(axis=1))  # documents without words
    sig = np.concatenate(sigs) if sigs else np.zeros((0, num_perm), np.uint32)
    np.savez(
        out_path,
        sig=sig,
        bands=band_hashes(sig, bands, rows),
        valid=np.concatenate(valid) if valid else np.zeros(0, bool),
    )
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def minhash_decision(
    shards: list[Shard], paths: list[str], *, num_perm: int, bands: int, threshold: float
) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray], dict[str, int]]:
    """From signature_shard's spills: per shard, which rows to keep (the first of each near-
    duplicate cluster in input order; documents in no cluster always), each row's cluster (the
    kept document's global position) and cluster size. Built from MinHashIndex (merge of band
    summaries, clustering) and NearDuplicateFilter."""
    from curate.stages.dedup import POSITION, BandSummary, MinHashIndex, NearDuplicateFilter

    index = MinHashIndex(threshold=threshold, num_perm=num_perm)
    assert index.shape[0] == bands
    parts = [index.empty()]
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            ok = z["valid"]
            pos = (np.int64(s.index) << POSITION_BITS) + np.flatnonzero(ok).astype(np.int64)
            parts.append(BandSummary(positions=pos, bands=z["bands"][ok]))
    while len(parts) > 1:  # a balanced tree of merges: O(N log shards)
        parts = [
            index.merge(parts[i], parts[i + 1]) if i + 1 < len(parts) else parts[i]
            for i in range(0, len(parts), 2)
        ]
    summary = parts[0]

    def signature_of(pos: np.ndarray) -> np.ndarray:
        out = np.zeros((len(pos), num_perm), np.uint32)
        shard_ix = pos >> POSITION_BITS
        for si in np.unique(shard_ix):
            with np.load(paths[int(si)], allow_pickle=False) as z:
                sel = shard_ix == si
                out[sel] = z["sig"][pos[sel] & ((1 << POSITION_BITS) - 1)]
        return out

    clusters = index.clusters(summary, signature_of)
    del summary
    near_dup = NearDuplicateFilter(clusters=clusters)
    keeps, cluster_ids, sizes = [], [], []
    for s, p in zip(shards, paths, strict=True):
        with np.load(p, allow_pickle=False) as z:
            n = len(z["valid"])
        pos = (np.int64(s.index) << POSITION_BITS) + np.arange(n, dtype=np.int64)
        keeps.append(near_dup.keep(pa.RecordBatch.from_pydict({POSITION: pos})).keep)
        cl, sz = clusters.lookup(pos)
        cluster_ids.append(cl)
        sizes.append(sz)
    stats = {
        "clusters": len(np.unique(clusters.roots)) if len(clusters.roots) else 0,
        "largest_cluster": int(clusters.sizes.max()) if len(clusters.sizes) else 1,
        "verified_pairs": clusters.verified_pairs,
    }
    return keeps, cluster_ids, sizes, stats


def run_minhash_dedup(
    source: DatasetSpec,
    dest: str,
    *,
    columns: Columns,
    threshold: float = 0.8,
    num_perm: int = 128,
    ngram: int = 5,
    seed: int = 0,
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Near-duplicate removal: MinHash + LSH banding, candidates verified on full signatures,
    connected components; one document kept per cluster (the first in input order), with
    `minhash_cluster` (the kept document's global position) and `minhash_cluster_size`."""
    from curate.stages.dedup import lsh_params

    progress = progress or NoProgress()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    if source == STDIO or dest == STDIO:
        raise UsageError("near-duplicate dedup reads and writes dataset folders")
    if not 0 < threshold <= 1:
        raise UsageError(f"--threshold must be in (0, 1], got {threshold}")
    shards = discover(source)
    for s in shards:
        canonicalize_schema(read_schema(s), columns, s.path)
    bands, rows = lsh_params(threshold, num_perm)
    plan = _plan(
        "dedup minhash",
        None,
        shards,
        {
            "threshold": threshold,
            "num_perm": num_perm,
            "ngram": ngram,
            "seed": seed,
            "batch_size": batch_size,
        },
    )
    manifest = Manifest(Path(dest), plan, overwrite=overwrite)
    work = manifest.work_dir()
    ctx = RunContext(columns=columns, batch_size=batch_size, threads=threads_per_worker(workers), output=dest)
    paths = [str(work / f"minhash-{s.index:05d}.npz") for s in shards]
    progress.start("signatures", sum(s.size for s in shards))
    reps1 = map_tasks(
        signature_shard,
        [(s, ctx, paths[s.index], num_perm, ngram, seed, bands, rows) for s in shards],
        workers=workers,
        on_result=lambda i, r: progress.advance("signatures", shards[i].size),
    )
    progress.end("signatures")
    keeps, clusters, sizes, stats = minhash_decision(
        shards, paths, num_perm=num_perm, bands=bands, threshold=threshold
    )
    dropped = sum(int((~k).sum()) for k in keeps)
    tasks = [
        (
            Pipeline(stages=()),
            s,
            np.flatnonzero(k).astype(np.int64),
            ctx,
            None,
            None,
            None,
            {"minhash_cluster": cl[k], "minhash_cluster_size": sz[k]},
        )
        for s, k, cl, sz in zip(shards, keeps, clusters, sizes, strict=True)
    ]
    progress.start("write", sum(s.size for s in shards))
    reps2 = map_tasks(
        write_selected,
        tasks,
        workers=workers,
        on_result=lambda i, r: progress.advance("write", shards[i].size),
    )
    progress.end("write")
    pass1 = merge_reports(r for r in reps1 if r is not None)
    pass2 = merge_reports(r for r in reps2 if r is not None)
    summary = {
        "rows_in": pass1.rows_in,
        "rows_out": pass2.rows_out,
        "near_duplicates_dropped": dropped,
        **stats,
        "threshold": threshold,
        "num_perm": num_perm,
        "bands": bands,
        "rows_per_band": rows,
        "shingles": f"word {ngram}-grams, lower-cased, punctuation dropped",
        "signature_seconds": round(sum(r.seconds for r in reps1 if r is not None), 3),
        "signature_mb": round(pass1.text_bytes / 1e6, 3),
    }
    manifest.finish(summary)
    pass2.drops["near duplicate"] = dropped
    return RunResult(report=pass2, seconds=time.perf_counter() - start, output=dest, extra=summary)


# ---------------------------------------------------------------------------------- threshold filter
def column_values(shard: Shard, ctx: RunContext, column: str, out_path: str) -> ShardReport:
    """Pass 1 of a threshold filter: the column as float64 (NaN where null), spilled."""
    from curate.pipeline import peak_rss_mb

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    values = []
    for batch in iter_batches(shard, ctx.columns, columns=[column], batch_size=ctx.batch_size):
        report.rows_in += batch.num_rows
        col = batch.column(column)
        if not (
            pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)
        ):
            raise UsageError(
                f"{shard.path}: column {column!r} has type {col.type}; a threshold needs numbers"
            )
        values.append(
            np.asarray(pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False))
        )
    np.savez(out_path, values=np.concatenate(values) if values else np.zeros(0))
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def run_threshold_filter(
    source: DatasetSpec,
    dest: str,
    *,
    column: str,
    columns: Columns,
    keep_top: float | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    rejected: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    batch_size: int = 4096,
    progress: Progress | None = None,
) -> RunResult:
    """Keep rows whose `column` is in range, or in the top `keep_top` fraction of the whole input
    (a global percentile: every shard's values are ranked together, never per shard). Null and
    NaN values never pass and are counted; `rejected` receives the other rows."""
    progress = progress or NoProgress()
    workers = resolve_workers(workers)
    start = time.perf_counter()
    if source == STDIO or dest == STDIO:
        raise UsageError("a global threshold needs two passes: read and write dataset folders")
    if keep_top is None and minimum is None and maximum is None:
        raise UsageError("give --keep-top, --min or --max")
    if keep_top is not None and not 0 < keep_top <= 1:
        raise UsageError(f"--keep-top must be a fraction in (0, 1], got {keep_top}")
    shards = discover(source)
    for s in shards:
        schema = canonicalize_schema(read_schema(s), columns, s.path)
        if column not in schema.names:
            raise SchemaError(f"{s.path}: no column {column!r}; columns present: {', '.join(schema.names)}")
    plan = _plan(
        "filter threshold",
        None,
        shards,
        {"column": column, "keep_top": keep_top, "min": minimum, "max": maximum},
    )
    manifest = Manifest(Path(dest), plan, overwrite=overwrite)
    side = Manifest(Path(rejected), {**plan, "side": "rejected"}, overwrite=overwrite) if rejected else None
    work = manifest.work_dir()
    ctx = RunContext(columns=columns, batch_size=batch_size, threads=threads_per_worker(workers), output=dest)
    paths = [str(work / f"values-{s.index:05d}.npz") for s in shards]
    progress.start("read", sum(s.size for s in shards))
    map_tasks(
        column_values,
        [(s, ctx, column, paths[s.index]) for s in shards],
        workers=workers,
        on_result=lambda i, r: progress.advance("read", shards[i].size),
    )
    progress.end("read")
    values = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            values.append(z["values"])
    allv = np.concatenate(values) if values else np.zeros(0)
    finite = allv[np.isfinite(allv)]
    lo = -np.inf if minimum is None else minimum
    hi = np.inf if maximum is None else maximum
    threshold = None
    if keep_top is not None and len(finite):
        k = max(1, int(np.ceil(keep_top * len(finite))))
        threshold = float(np.partition(finite, len(finite) - k)[len(finite) - k])
        lo = max(lo, threshold)
    del allv, finite
    tasks, side_tasks = [], []
    drops = {f"null or NaN {column}": 0, f"{column} out of range": 0}
    for s, v in zip(shards, values, strict=True):
        ok = np.isfinite(v)
        keep = ok & (v >= lo) & (v <= hi)
        drops[f"null or NaN {column}"] += int((~ok).sum())
        drops[f"{column} out of range"] += int((ok & ~keep).sum())
        tasks.append((Pipeline(stages=()), s, np.flatnonzero(keep).astype(np.int64), ctx))
        if rejected:
            side_tasks.append(
                (
                    Pipeline(stages=()),
                    s,
                    np.flatnonzero(~keep).astype(np.int64),
                    RunContext(columns=columns, batch_size=batch_size, threads=ctx.threads, output=rejected),
                )
            )
    progress.start("write", sum(s.size for s in shards))
    reps = map_tasks(
        write_selected,
        tasks + side_tasks,
        workers=workers,
        on_result=lambda i, r: progress.advance("write", shards[i % len(shards)].size),
    )
    progress.end("write")
    kept = merge_reports(r for r in reps[: len(shards)] if r is not None)
    summary = {
        "rows_in": sum(len(v) for v in values),
        "rows_out": kept.rows_out,
        "column": column,
        "threshold": threshold,
        "min": None if lo == -np.inf else lo,
        "max": None if hi == np.inf else hi,
        "keep_top": keep_top,
        "drops": drops,
        "global": "percentiles over the whole input, not per shard",
    }
    manifest.finish(summary)
    if side is not None:
        side.finish({**summary, "side": "rejected rows"})
    kept.drops.update(drops)
    return RunResult(report=kept, seconds=time.perf_counter() - start, output=dest, extra=summary)


# ---------------------------------------------------------------------------------- score combination
def score_columns(shard: Shard, ctx: RunContext, names: list[str], out_path: str) -> ShardReport:
    """Pass 1 of a combination: the score columns as float64 (NaN where null), spilled."""
    from curate.pipeline import peak_rss_mb
    from curate.stages.combine import numeric_column

    start = time.perf_counter()
    report = ShardReport(shard=shard.name)
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for batch in iter_batches(shard, ctx.columns, columns=names, batch_size=ctx.batch_size):
        report.rows_in += batch.num_rows
        for n in names:
            parts[n].append(numeric_column(batch, n, shard.path))
    arrays = {f"c{i}": np.concatenate(parts[n]) if parts[n] else np.zeros(0) for i, n in enumerate(names)}
    np.savez(out_path, **arrays)  # type: ignore[arg-type]
    report.seconds = time.perf_counter() - start
    report.peak_rss_mb = peak_rss_mb()
    return report


def read_scores(
    source: DatasetSpec,
    names: list[str],
    *,
    columns: Columns,
    workers: int | None = None,
    work: Path | None = None,
) -> dict[str, np.ndarray]:
    """All values of some score columns over a dataset (8 bytes per row per column)."""
    shards = discover(source)
    for s in shards:
        schema = canonicalize_schema(read_schema(s), columns, s.path)
        missing = [n for n in names if n not in schema.names]
        if missing:
            raise SchemaError(
                f"{s.path}: no column(s) {', '.join(missing)}; columns present: {', '.join(schema.names)}"
            )
    workers = resolve_workers(workers)
    with tempfile.TemporaryDirectory(prefix="curate-scores-", dir=work) as tmp:
        ctx = RunContext(columns=columns, threads=threads_per_worker(workers))
        paths = [str(Path(tmp) / f"scores-{s.index:05d}.npz") for s in shards]
        map_tasks(score_columns, [(s, ctx, names, paths[s.index]) for s in shards], workers=workers)
        out: dict[str, list[np.ndarray]] = {n: [] for n in names}
        for p in paths:
            with np.load(p, allow_pickle=False) as z:
                for i, n in enumerate(names):
                    out[n].append(z[f"c{i}"])
    return {n: np.concatenate(v) if v else np.zeros(0) for n, v in out.items()}
