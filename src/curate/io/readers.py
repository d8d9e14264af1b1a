"""The raw readers behind `curate.io.inputs`, one per format: Parquet (by row group), JSON
lines (plain, gzip, zstd) and Arrow IPC (file or stream). Each yields (batch, where, first row):
the batch as stored, a location for messages and the file row its first row is. Nothing but
`curate.io.inputs` uses them; everyone else reads through that door.
"""

from __future__ import annotations

import functools
import gzip
import io
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curate.errors import InputDataError
from curate.io.stores import is_uri, open_input_file, open_input_stream

# ------------------------------------------------------------------------------------- Parquet
Located = tuple[pa.RecordBatch, str, int]


def _random_access(path: str) -> Any:
    """A local path as is; an object-store URI as a pyarrow random-access file."""
    return open_input_file(path) if is_uri(path) else path


def _unreadable(path: str, exc: Exception) -> InputDataError:
    return InputDataError(
        f"{path}: not a readable Parquet file ({exc})",
        hint="the file may be truncated or not Parquet; re-export it, or remove it from the pool",
    )


@dataclass(frozen=True)
class ParquetLayout:
    """What planning needs of a Parquet file: its Arrow schema and the rows of each row group."""

    schema: pa.Schema
    group_rows: tuple[int, ...]


# A job opens each shard several times (plan, schema, every row group of a fit, which visits
# them in a seeded order across the whole pool), so local footers are parsed once per version of
# the file (inode, size, mtime): a parse costs ~0.25 ms, a hit ~1 µs. Footers can be large (a
# statistics entry per column per row group), so they are kept up to a byte budget of their
# serialized sizes (a 4 MB shard's is ~13 KB: ~2,500 shards), least recently used first out.
FOOTER_CACHE_BYTES = 32 << 20
_footers: OrderedDict[tuple[str, tuple[int, int, int]], pq.FileMetaData] = OrderedDict()
_footer_bytes = 0
_footer_lock = threading.Lock()


def _local_footer(path: str, version: tuple[int, int, int]) -> pq.FileMetaData:
    global _footer_bytes
    key = (path, version)
    with _footer_lock:
        meta = _footers.get(key)
        if meta is not None:
            _footers.move_to_end(key)
            return meta
    meta = pq.ParquetFile(path).metadata
    with _footer_lock:
        if key not in _footers:
            _footers[key] = meta
            _footer_bytes += meta.serialized_size
        while _footer_bytes > FOOTER_CACHE_BYTES and len(_footers) > 1:
            _, old = _footers.popitem(last=False)
            _footer_bytes -= old.serialized_size
    return meta


def _layout_of(meta: pq.FileMetaData) -> ParquetLayout:
    return ParquetLayout(
        meta.schema.to_arrow_schema(), tuple(meta.row_group(i).num_rows for i in range(meta.num_row_groups))
    )


@functools.lru_cache(maxsize=4096)
def _local_layout(path: str, version: tuple[int, int, int]) -> ParquetLayout:
    return _layout_of(_local_footer(path, version))


def _version(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def open_parquet(path: str) -> pq.ParquetFile:
    try:
        if is_uri(path):  # pre-buffering coalesces a row group's reads: one round trip, not many
            return pq.ParquetFile(_random_access(path))
        # locally it is one more copy of every byte (~8% of a text read's CPU) and a slower start
        return pq.ParquetFile(path, metadata=_local_footer(path, _version(path)), pre_buffer=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from exc


def parquet_layout(path: str) -> ParquetLayout:
    if is_uri(path):
        return _layout_of(open_parquet(path).metadata)
    try:
        return _local_layout(path, _version(path))
    except (pa.ArrowInvalid, OSError) as exc:
        raise _unreadable(path, exc) from exc


def iter_parquet(
    path: str, columns: Sequence[str] | None, batch_size: int, row_group: int | None = None
) -> Iterator[Located]:
    pf = open_parquet(path)
    todo = range(pf.num_row_groups) if row_group is None else [row_group]
    row = sum(pf.metadata.row_group(i).num_rows for i in range(todo[0])) if len(todo) else 0
    for rg in todo:
        try:
            # use_threads=False: workers are processes, one per core; nested decode threads only contend
            for b in pf.iter_batches(
                batch_size=batch_size, row_groups=[rg], columns=columns, use_threads=False
            ):
                yield b, f"{path}: row group {rg}", row
                row += b.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{path}: row group {rg} cannot be read ({exc})") from exc


# ------------------------------------------------------------------------------------- JSONL
def _open_binary(path: str) -> Any:
    lower = path.lower()
    if is_uri(path):  # a JSONL shard is read whole anyway: fetch it, then decompress in memory
        with open_input_stream(path) as stream:
            data = stream.read()
        if lower.endswith(".gz"):
            data = gzip.decompress(data)
        elif lower.endswith(".zst"):
            import zstandard

            data = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data)).read()
        return io.BytesIO(data)
    if lower.endswith(".gz"):
        return gzip.open(path, "rb")
    if lower.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))
    return open(path, "rb")


def _locate_jsonl_error(path: str) -> str:
    """Find the first bad line to name it in the error (only runs after a parse failure)."""
    with _open_binary(path) as fh, io.BufferedReader(fh) as reader:
        for lineno, raw in enumerate(reader, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return f"line {lineno}: invalid UTF-8 at byte {exc.start} of the line"
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                return f"line {lineno}: invalid JSON ({exc.msg}, column {exc.colno})"
            if not isinstance(value, dict):
                return f"line {lineno}: expected a JSON object, got {type(value).__name__}"
    return "the file could not be parsed as JSON lines"


def iter_jsonl(path: str, columns: Sequence[str] | None, batch_size: int) -> Iterator[Located]:
    try:
        with _open_binary(path) as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise InputDataError(
            f"{path}: cannot read compressed JSONL ({exc})", hint="the file may be truncated"
        ) from exc
    except Exception as exc:  # zstandard raises its own error type
        raise InputDataError(f"{path}: cannot decompress ({exc})", hint="the file may be truncated") from exc
    if not data.strip():
        return
    try:
        table = pajson.read_json(pa.BufferReader(data), read_options=pajson.ReadOptions(block_size=1 << 26))
        table.validate(full=True)  # the JSON reader does not reject invalid UTF-8 inside strings
    except pa.ArrowInvalid as exc:
        raise InputDataError(f"{path}: {_locate_jsonl_error(path)}", hint="fix or remove that line") from exc
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    row = 0
    for b in table.to_batches(max_chunksize=batch_size):
        yield b, path, row
        row += b.num_rows


# ------------------------------------------------------------------------------------- IPC
def iter_ipc(path: str, columns: Sequence[str] | None, batch_size: int) -> Iterator[Located]:
    try:
        try:
            reader = pa.ipc.open_file(_random_access(path))
            batches: Iterator[pa.RecordBatch] = (
                reader.get_batch(i) for i in range(reader.num_record_batches)
            )
        except pa.ArrowInvalid:
            batches = iter(pa.ipc.open_stream(_random_access(path)))
        row = 0
        for b in batches:
            if columns is not None:
                b = b.select([c for c in columns if c in b.schema.names])
            for part in pa.Table.from_batches([b]).to_batches(max_chunksize=batch_size):
                yield part, path, row
                row += part.num_rows
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(
            f"{path}: not a readable Arrow IPC file or stream ({exc})",
            hint="the file may be truncated or not Arrow IPC; re-export it, or remove it from the pool",
        ) from exc
