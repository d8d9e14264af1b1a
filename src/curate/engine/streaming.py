"""Map jobs over streams: stdin (Arrow IPC) to a folder or stdout, or a dataset to stdout.

Batches flow through the job's pipeline one at a time, so shell pipelines stay bounded in
memory; there is nothing to resume (a stream cannot be re-read).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from curate.engine.job import Job, JobResult
from curate.engine.phases import Map
from curate.errors import UsageError
from curate.executors.local import threads_per_worker
from curate.io.inputs import STDIO, Columns, discover, iter_batches, iter_stdin, shard_schema
from curate.io.outputs import Manifest, ParquetShardWriter, StdoutWriter
from curate.pipeline import run_stream
from curate.stats import STATS_HEADER


def run_stream_job(job: Job, *, workers: int, overwrite: bool) -> JobResult:
    start = time.perf_counter()
    phase = job.phases[0]
    assert isinstance(phase, Map) and len(job.phases) == 1, "only a single-map job streams"
    columns = job.columns.get("input", Columns())
    source = job.inputs["input"]
    if source == STDIO:
        schema, batches = iter_stdin(columns)
        where = "stdin"
    else:
        shards = discover(source)
        where = shards[0].path
        schema = shard_schema(shards[0], columns)

        def gen() -> Iterator[pa.RecordBatch]:
            for s in shards:
                if shard_schema(s, columns) != schema:
                    raise UsageError(
                        f"{s.path}: schema differs from {shards[0].path}; streaming to stdout needs one schema"
                    )
                yield from iter_batches(s, columns, batch_size=job.batch_size)

        batches = gen()
    pipeline = phase.pipeline(None)  # type: ignore[arg-type]
    out_schema = pipeline.validate(schema, where)
    threads = threads_per_worker(workers)
    if job.output == STDIO:
        writer = StdoutWriter(out_schema)
        report = run_stream(pipeline, schema, batches, writer.write, threads=threads)
        writer.close()
        sys.stdout.flush()
    else:
        assert job.output is not None
        manifest = Manifest(Path(job.output), {**job.plan({}), "stream": True}, overwrite=overwrite)
        target = Path(job.output) / "part-00000.parquet"
        with ParquetShardWriter(target, out_schema) as pw:
            report = run_stream(pipeline, schema, batches, pw.write, threads=threads)
        report.files = [target.name]
        manifest.mark_shard("stdin", {"files": report.files, "report": report.to_dict()})
        manifest.finish(report.to_dict())
    summary = {**STATS_HEADER, "kind": job.kind, "report": report.to_dict()}
    return JobResult(summary, job.output, time.perf_counter() - start, [], {})
