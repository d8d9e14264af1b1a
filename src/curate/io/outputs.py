"""Atomic shard writers, the stdout IPC writer, and the run manifest (resume and refusal rules)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from curate.errors import OutputError
from curate.types import ID, TEXT

MANIFEST = "_manifest.json"
# zstd level 3: on real text 5.8x smaller than raw (17% smaller than level 1) at ~280 MB/s of
# writing per core (level 1: ~360) and faster to read back; levels 6 and up cost 2.5x the
# write time for 12% less. Measured by bench/bench_codec.py (docs/benchmarks.md).
COMPRESSION, COMPRESSION_LEVEL = "zstd", 3
# Texts and ids are (nearly) unique: a dictionary for them is built for each row group and then
# abandoned (pyarrow falls back to plain at 1 MB), which costs a hash of every value written and
# a dictionary page to decode on every read. Numbers (scores, token counts) are written plain too:
# a sidecar shard of id + score + n_tokens wrote in 0.78 ms and 24.5 KB plain, 1.06 ms and 26.7 KB
# with dictionaries (zstd compresses repeated plain numbers as well). Other columns (labels such
# as `lang`) keep pyarrow's dictionary.
NO_DICTIONARY = (TEXT, ID)


def dictionary_columns(schema: pa.Schema) -> list[str]:
    """The columns written with a dictionary: all but texts, ids and numbers."""
    plain = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
    return [f.name for f in schema if f.name not in NO_DICTIONARY and not any(t(f.type) for t in plain)]


WORK_DIR = "_curate_work"
JOURNAL = "done.jsonl"


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".curate-probe-"):
            pass
    except OSError as exc:
        raise OutputError(
            f"{folder}: output folder is not writable ({exc.strerror or exc})",
            hint="choose another output path or fix its permissions",
        ) from exc


def write_bytes_atomic(path: Path, data: bytes, *, durable: bool = True) -> None:
    """Write to a temporary name in the same folder, fsync (when `durable`), and rename over
    `path`. A killed process never leaves a partial file either way; only a power loss can, and
    only without the fsync."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        if durable:
            os.fsync(fh.fileno())
    os.replace(tmp, path)


def save_bytes(path: Any, data: bytes) -> None:
    """A small output file (stats, a report, a summary), locally or on an object store."""
    from curate.io.stores import is_uri, location, write_bytes

    where = location(path)
    if is_uri(where):
        write_bytes(where, data)
        return
    write_bytes_atomic(Path(where), data)


class ParquetShardWriter:
    """Streams record batches to `<path>` through a temporary file; renamed only when complete.

    On an exception the temporary file is removed, so a killed or failed shard never leaves a
    file that looks finished. With `row_group_rows`, batches are gathered into row groups of at
    least that many rows (for narrow outputs such as sidecars: one row group per shard is written
    in 0.65 ms, one per batch of ~600 rows in 0.92); else each batch is a row group.
    """

    def __init__(self, path: Path, schema: pa.Schema, *, row_group_rows: int = 0) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.schema = schema
        self.rows = 0
        self.row_group_rows = row_group_rows
        self._pending: list[pa.RecordBatch] = []
        self._pending_rows = 0
        self._writer: pq.ParquetWriter | None = None

    def _open(self) -> pq.ParquetWriter:
        if self._writer is None:
            self._writer = pq.ParquetWriter(
                self.tmp,
                self.schema,
                compression=COMPRESSION,
                compression_level=COMPRESSION_LEVEL,
                use_dictionary=dictionary_columns(self.schema),
            )
        return self._writer

    def write(self, batch: pa.RecordBatch) -> None:
        writer = self._open()
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        if not self.row_group_rows:
            writer.write_batch(batch)
            return
        self._pending.append(batch)
        self._pending_rows += batch.num_rows
        if self._pending_rows >= self.row_group_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._open().write_table(pa.Table.from_batches(self._pending), row_group_size=self._pending_rows)
            self._pending, self._pending_rows = [], 0

    def close(self) -> None:
        self._flush()
        self._open().close()
        with open(self.tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                self._writer.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp)

    def __enter__(self) -> ParquetShardWriter:
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class StdoutWriter:
    """Arrow IPC stream on stdout, so stages chain through shell pipes."""

    def __init__(self, schema: pa.Schema, sink: BinaryIO | None = None) -> None:
        self._writer = pa.ipc.new_stream(sink or sys.stdout.buffer, schema)
        self.rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self._writer.write_batch(batch)
        self.rows += batch.num_rows

    def close(self) -> None:
        self._writer.close()


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Manifest:
    """`_manifest.json` in the output folder: the resolved plan, versions, seeds and per-shard state.

    A rerun with the same plan resumes (finished shards are skipped); a different plan in a
    folder that already holds one is refused unless `overwrite`.
    """

    def __init__(self, folder: Path, plan: dict[str, Any], *, overwrite: bool = False) -> None:
        self.folder = folder
        self.plan = plan
        self.fingerprint = hashlib.sha256(json.dumps(plan, sort_keys=True).encode()).hexdigest()[:16]
        _check_writable(folder)
        self.path = folder / MANIFEST
        self._done: dict[str, dict[str, Any]] | None = None
        self._journal_checked = False
        self.state: dict[str, Any] = {
            "plan": plan,
            "fingerprint": self.fingerprint,
            "shards": {},
            "phases": {},
        }
        existing = self._load()
        if overwrite and (existing is not None or self._has_other_files()):
            self._clear()
        elif existing is not None and existing.get("fingerprint") == self.fingerprint:
            self.state = existing
        elif existing is not None or self._has_other_files():
            what = "a different run" if existing is not None else "files that curate did not write"
            raise OutputError(
                f"{folder}: output folder already holds {what}",
                hint="rerun the same command to resume, choose an empty folder, or pass --overwrite",
            )
        for stale in folder.glob(".*.tmp-*"):  # a killed run's unfinished shards
            stale.unlink(missing_ok=True)
        self.save()

    def _load(self) -> dict[str, Any] | None:
        if not self.path.exists():
            return None
        try:
            data = json.loads(self.path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, json.JSONDecodeError):
            return {"fingerprint": None}

    def _has_other_files(self) -> bool:
        return any(not p.name.startswith(".curate-probe-") for p in self.folder.iterdir())

    def _clear(self) -> None:
        import shutil

        for p in self.folder.iterdir():
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()

    def save(self) -> None:
        write_bytes_atomic(self.path, json.dumps(self.state, indent=2, sort_keys=True).encode())

    # ------------------------------------------------------------------ shard and phase state
    # Per-shard records are lines appended to one journal (_curate_work/done.jsonl) as each shard
    # ends: O(1) per shard however many the run has, and no file created per shard (a file per
    # record cost ~0.6 ms of each shard's ~3 ms of glue in a 256-shard run).
    def _records(self) -> dict[str, dict[str, Any]]:
        """The records earlier runs left (read once): what a phase resumes from."""
        if self._done is None:
            self._done = finished_shards(self.folder)
        return self._done

    def shard_done(self, key: str) -> dict[str, Any] | None:
        """The record of `key` from an earlier run, if its files are all there."""
        rec = self._records().get(key)
        if rec is None:
            return None
        for f in rec.get("files", []):
            if not (self.folder / f).exists():
                return None
        return rec

    def mark_shard(self, key: str, record: dict[str, Any]) -> None:
        rec = {"status": "done", "key": key, **record}
        line = json.dumps(rec) + "\n"
        journal = self.work_dir() / JOURNAL
        if not self._journal_checked:
            self._journal_checked = True
            if _ends_unfinished(journal):
                line = "\n" + line  # end the line a killed run left half-written
        # Appended to an existing file (no create and rename per shard); flushed on close, not
        # fsynced: a line a crash truncates fails to parse and that shard is simply done again.
        with open(journal, "a", encoding="utf-8") as fh:
            fh.write(line)
        # This run's records stay on disk only (memory does not grow with the shards); one that
        # replaces an earlier run's replaces it here too.
        if self._done is not None and key in self._done:
            self._done[key] = rec

    def phase(self, name: str) -> Any:
        return self.state["phases"].get(name)

    def set_phase(self, name: str, value: Any) -> None:
        self.state["phases"][name] = value
        self.save()

    def work_dir(self) -> Path:
        d = self.folder / WORK_DIR
        d.mkdir(exist_ok=True)
        return d

    def finish(self, summary: dict[str, Any], samples: dict[str, Any] | None = None) -> None:
        """Fold the per-shard records (without bulky extras) into the manifest; drop the work dir."""
        import shutil

        shards = {}
        for rec in _journal(self.folder):  # streamed: each record's bulky extras dropped as read
            key = rec.pop("key")
            rec.pop("extra", None)
            if isinstance(rec.get("report"), dict):  # histograms, samples: bulky, and summarised already
                rec["report"].pop("extra", None)
            shards[key] = rec
        self.state["shards"] = dict(sorted(shards.items()))
        self.state["complete"] = True
        self.state["summary"] = summary
        if samples is not None:
            self.state["samples"] = samples
        self.save()
        shutil.rmtree(self.folder / WORK_DIR, ignore_errors=True)


def _ends_unfinished(path: Path) -> bool:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() == 0:
                return False
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) != b"\n"
    except FileNotFoundError:
        return False


def _journal(folder: Path) -> Iterator[dict[str, Any]]:
    """The shard records in `folder`'s journal, in order, skipping a line a killed run left
    unfinished."""
    path = folder / WORK_DIR / JOURNAL
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line in fh:
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("status") == "done" and isinstance(rec.get("key"), str):
                yield rec


def finished_shards(folder: Path) -> dict[str, dict[str, Any]]:
    """The shards a running (or killed) job in `folder` has recorded as done, by key (the last
    record of a key wins)."""
    return {rec["key"]: rec for rec in _journal(folder)}


def annotate_manifest(folder: Path, **fields: Any) -> None:
    """Add fields to a finished run's manifest (the command line, the checks' verdicts) that
    are not part of its plan, so `curate report` can show them later."""
    path = folder / MANIFEST
    state = json.loads(path.read_text())
    state.update(fields)
    write_bytes_atomic(path, json.dumps(state, indent=2, sort_keys=True).encode())


def output_files(folder: Path) -> Iterator[Path]:
    yield from sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
