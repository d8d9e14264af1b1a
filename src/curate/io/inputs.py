"""Dataset discovery and streaming readers.

A dataset is a folder (its Parquet/JSONL files, recursively), a glob, a single file, or `-`
(an Arrow IPC stream on stdin). Readers rename the user's text/id columns to the canonical
`text`/`id` once; every other column passes through in order and type.
"""

from __future__ import annotations

import glob
import gzip
import io
import json
import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson
import pyarrow.parquet as pq

from curate.errors import InputDataError, SchemaError, UsageError
from curate.types import ID, TEXT

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson")
IPC_SUFFIXES = (".arrow", ".ipc", ".feather")
STDIO = "-"


def _format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(IPC_SUFFIXES):
        return "ipc"
    return None


@dataclass(frozen=True, kw_only=True)
class Shard:
    """One input file. `name` is its path relative to the dataset root, used for output names."""

    path: str
    name: str
    index: int
    format: str
    size: int

    @property
    def stem(self) -> str:
        base = self.name
        for suffix in sorted(PARQUET_SUFFIXES + JSONL_SUFFIXES + IPC_SUFFIXES, key=len, reverse=True):
            if base.lower().endswith(suffix):
                base = base[: -len(suffix)]
                break
        return base.replace(os.sep, "__")


@dataclass(frozen=True, kw_only=True)
class Columns:
    """How the input names its text and id columns."""

    text: str = TEXT
    id: str | None = None  # None: use `id` when present, else derive ids from the text


def discover(spec: str) -> list[Shard]:
    """The shards of a dataset, in a stable (sorted) order."""
    if spec == STDIO:
        raise UsageError("`-` (stdin) is a stream, not a set of shards")
    paths: list[tuple[str, str]] = []
    p = Path(spec)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if (
                f.is_file()
                and _format_of(f.name)
                and not any(part.startswith(("_", ".")) for part in f.relative_to(p).parts)
            ):
                paths.append((str(f), str(f.relative_to(p))))
    elif p.is_file():
        if _format_of(p.name) is None:
            raise InputDataError(
                f"{spec}: unknown file type",
                hint="inputs are .parquet, .jsonl, .jsonl.gz, .jsonl.zst or .arrow files, or folders of them",
            )
        paths.append((str(p), p.name))
    else:
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise InputDataError(f"{spec}: no such file, folder or glob match")
        for m in matches:
            if os.path.isfile(m) and _format_of(m):
                paths.append((m, os.path.basename(m)))
    if not paths:
        raise InputDataError(
            f"{spec}: no .parquet, .jsonl(.gz/.zst) or .arrow files found",
            hint="point at a folder of shards, a glob such as 'pool/*.parquet', or a single file",
        )
    return [
        Shard(path=path, name=name, index=i, format=_format_of(path) or "parquet", size=os.path.getsize(path))
        for i, (path, name) in enumerate(paths)
    ]


# ------------------------------------------------------------------------------------- Parquet
def _open_parquet(path: str) -> pq.ParquetFile:
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(
            f"{path}: not a readable Parquet file ({exc})",
            hint="the file may be truncated or not Parquet; re-export it, or remove it from the pool",
        ) from exc


def _iter_parquet(
    path: str, columns: Sequence[str] | None, batch_size: int, text: str | None = None
) -> Iterator[pa.RecordBatch]:
    pf = _open_parquet(path)
    row = 0
    for rg in range(pf.num_row_groups):
        try:
            # use_threads=False: workers are processes, one per core; nested decode threads only contend
            for b in pf.iter_batches(
                batch_size=batch_size, row_groups=[rg], columns=columns, use_threads=False
            ):
                if text is not None:
                    check_utf8(b, text, f"{path}: row group {rg}", row)
                row += b.num_rows
                yield b
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{path}: row group {rg} cannot be read ({exc})") from exc


def check_utf8(batch: pa.RecordBatch, column: str, where: str, first_row: int) -> None:
    """Raise InputDataError naming the first row whose text is not valid UTF-8."""
    if column not in batch.schema.names:
        return
    col = batch.column(column)
    try:
        col.validate(full=True)
    except pa.ArrowInvalid:
        values = (
            col.cast(pa.large_binary())
            if pa.types.is_string_view(col.type)
            else col.view(pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary())
        )
        for i, v in enumerate(values.to_pylist()):
            if v is None:
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputDataError(
                    f"{where}, row {first_row + i}: {column!r} is not valid UTF-8 (byte {exc.start})",
                    hint="re-encode that text (e.g. decode with errors='replace') or drop the row",
                ) from None
        raise


# ------------------------------------------------------------------------------------- JSONL
def _open_binary(path: str) -> io.BufferedIOBase:
    lower = path.lower()
    if lower.endswith(".gz"):
        return gzip.open(path, "rb")
    if lower.endswith(".zst"):
        import zstandard

        return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"))  # type: ignore[return-value]
    return open(path, "rb")


def _locate_jsonl_error(path: str) -> str:
    """Find the first bad line to name it in the error (only runs after a parse failure)."""
    with _open_binary(path) as fh:
        for lineno, raw in enumerate(io.BufferedReader(fh), start=1):
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


def _iter_jsonl(path: str, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
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
        missing = [c for c in columns if c not in table.column_names]
        if missing:
            # surfaces as the schema error of the caller
            table = table.select([c for c in columns if c in table.column_names])
        else:
            table = table.select(list(columns))
    yield from table.to_batches(max_chunksize=batch_size)


# ------------------------------------------------------------------------------------- IPC
def _iter_ipc(path: str, columns: Sequence[str] | None, batch_size: int) -> Iterator[pa.RecordBatch]:
    try:
        reader = pa.ipc.open_file(path)
        batches: Iterator[pa.RecordBatch] = (reader.get_batch(i) for i in range(reader.num_record_batches))
    except pa.ArrowInvalid:
        try:
            batches = iter(pa.ipc.open_stream(path))
        except pa.ArrowInvalid as exc:
            raise InputDataError(f"{path}: not an Arrow IPC file or stream ({exc})") from exc
    for b in batches:
        if columns is not None:
            b = b.select([c for c in columns if c in b.schema.names])
        yield from pa.Table.from_batches([b]).to_batches(max_chunksize=batch_size)


def read_schema(shard: Shard) -> pa.Schema:
    """The shard's schema as written (before canonical renaming)."""
    if shard.format == "parquet":
        return _open_parquet(shard.path).schema_arrow
    for batch in _raw_batches(shard, None, 1024):
        return batch.schema
    return pa.schema([])


def _raw_batches(
    shard: Shard, columns: Sequence[str] | None, batch_size: int, text: str | None = None
) -> Iterator[pa.RecordBatch]:
    if shard.format == "parquet":
        return _iter_parquet(shard.path, columns, batch_size, text)
    if shard.format == "jsonl":
        return _iter_jsonl(shard.path, columns, batch_size)
    return _iter_ipc(shard.path, columns, batch_size)


def canonical_schema(schema: pa.Schema, cols: Columns, source: str) -> pa.Schema:
    """Check the text/id columns exist and rename them to `text`/`id`."""
    names = schema.names
    if cols.text not in names:
        raise SchemaError(
            f"{source}: no text column {cols.text!r}; columns present: {', '.join(names) or '(none)'}",
            hint="name the text column with --text-column",
        )
    t = schema.field(cols.text).type
    if not (
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_null(t)
    ):
        raise SchemaError(f"{source}: text column {cols.text!r} has type {t}, expected a string type")
    if cols.id is not None and cols.id not in names:
        raise SchemaError(
            f"{source}: no id column {cols.id!r}; columns present: {', '.join(names)}",
            hint="name the id column with --id-column, or leave it out to derive ids from the text",
        )
    return schema


def canonicalize(batch: pa.RecordBatch, cols: Columns) -> pa.RecordBatch:
    """Rename the text/id columns to canonical names and make text a string column."""
    names = list(batch.schema.names)
    if cols.text != TEXT and cols.text in names:
        if TEXT in names:
            names[names.index(TEXT)] = f"{TEXT}_original"
        names[names.index(cols.text)] = TEXT
    if cols.id is not None and cols.id != ID and cols.id in names:
        if ID in names:
            names[names.index(ID)] = f"{ID}_original"
        names[names.index(cols.id)] = ID
    if names != list(batch.schema.names):
        batch = batch.rename_columns(names)
    if TEXT in names and pa.types.is_null(batch.schema.field(TEXT).type):
        i = names.index(TEXT)
        batch = batch.set_column(i, pa.field(TEXT, pa.string()), pa.nulls(batch.num_rows, pa.string()))
    return batch


def source_columns(wanted: Sequence[str] | None, cols: Columns) -> list[str] | None:
    """Map canonical column names back to the input's names, for projection."""
    if wanted is None:
        return None
    out = []
    for c in wanted:
        if c == TEXT:
            out.append(cols.text)
        elif c == ID:
            out.append(cols.id or ID)
        else:
            out.append(c)
    return out


def iter_unit_batches(
    shard: Shard,
    row_group: int | None,
    cols: Columns,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 4096,
) -> Iterator[pa.RecordBatch]:
    """Batches of one fit unit: a Parquet row group, or a whole JSONL/IPC shard (row_group None)."""
    if row_group is None:
        yield from iter_batches(shard, cols, columns=columns, batch_size=batch_size)
        return
    pf = _open_parquet(shard.path)
    wanted = source_columns(list(columns) if columns is not None else [TEXT], cols)
    try:
        table = pf.read_row_group(row_group, columns=wanted, use_threads=False)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputDataError(f"{shard.path}: row group {row_group} cannot be read ({exc})") from exc
    row = sum(pf.metadata.row_group(i).num_rows for i in range(row_group))
    for b in table.to_batches(max_chunksize=batch_size):
        if cols.text in b.schema.names:
            check_utf8(b, cols.text, f"{shard.path}: row group {row_group}", row)
        row += b.num_rows
        yield canonicalize(b, cols)


def iter_batches(
    shard: Shard, cols: Columns, *, columns: Sequence[str] | None = None, batch_size: int = 4096
) -> Iterator[pa.RecordBatch]:
    """Batches of one shard with canonical names; `columns` (canonical) projects the read.

    An `id` requested but absent from the shard is simply left out (ids are then derived).
    """
    schema = read_schema(shard)
    canonical_schema(schema, cols, shard.path)
    wanted = source_columns(columns, cols)
    if wanted is not None:
        wanted = [c for c in wanted if c in schema.names]
    for batch in _raw_batches(shard, wanted, batch_size, cols.text):
        yield canonicalize(batch, cols)


def iter_stdin(cols: Columns) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """An Arrow IPC stream on stdin, canonicalised."""
    try:
        reader = pa.ipc.open_stream(sys.stdin.buffer)
    except pa.ArrowInvalid as exc:
        raise InputDataError(
            f"stdin: not an Arrow IPC stream ({exc})",
            hint="`-` reads what another curate command wrote to stdout; for files pass a path",
        ) from exc
    canonical_schema(reader.schema, cols, "stdin")

    def gen() -> Iterator[pa.RecordBatch]:
        for b in reader:
            yield canonicalize(b, cols)

    return reader.schema, gen()


def count_rows(shard: Shard) -> int | None:
    """Row count from metadata where cheap (Parquet), else None."""
    if shard.format == "parquet":
        return int(_open_parquet(shard.path).metadata.num_rows)
    return None
