"""The one door to input data: datasets, their shards, schemas and batches.

A dataset is a folder (its Parquet/JSONL files, recursively), a glob, a single file, several of
those in order, or `-` (an Arrow IPC stream on stdin). Every read goes through `iter_batches`:
it renames the user's text/id columns to the canonical `text`/`id`, decodes the text column to
a string type (dictionary-encoded, binary and view columns included) and checks it is UTF-8,
naming the file, row group and row at fault; every other column passes through in order and
type. The per-format readers are in `curate.io.readers`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import pyarrow as pa

from curate.errors import InputDataError, SchemaError, UsageError
from curate.io.listing import IPC_SUFFIXES, JSONL_SUFFIXES, PARQUET_SUFFIXES, format_of, local_files
from curate.io.readers import Located, iter_ipc, iter_jsonl, iter_parquet, parquet_layout
from curate.io.sidecars import SidecarReader, join, sidecar_fields, sidecar_file
from curate.io.stores import is_uri, list_files
from curate.types import ID, TEXT

STDIO = "-"


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
    sidecars: tuple[str, ...] = ()  # folders of score sidecars joined to every shard (io.sidecars)


DatasetSpec = str | Sequence[str]


def specs_of(spec: DatasetSpec) -> list[str]:
    """A dataset spec as a list: one path, folder or glob, or several, in the order given."""
    return [spec] if isinstance(spec, str) else [str(s) for s in spec]


def describe(spec: DatasetSpec) -> str:
    return " ".join(specs_of(spec))


def discover(spec: DatasetSpec) -> list[Shard]:
    """The shards of a dataset: each spec's files in a stable (sorted) order, specs in the order
    given. A file listed twice, or two files that would give output shards the same name, is an
    error: either would write or select a document twice."""
    specs = specs_of(spec)
    if not specs:
        raise UsageError("no input dataset given")
    if STDIO in specs:
        if len(specs) == 1:
            raise UsageError("`-` (stdin) is a stream, not a set of shards")
        raise UsageError("`-` (stdin) cannot be combined with other inputs")
    paths: list[tuple[str, str, int]] = []
    for one in specs:
        paths.extend(_discover_one(one))
    by_path: dict[str, str] = {}
    by_name: dict[str, str] = {}
    for path, name, _ in paths:
        real = path if is_uri(path) else os.path.realpath(path)
        if real in by_path:
            raise UsageError(
                f"{path}: listed twice among the inputs (also as {by_path[real]})",
                hint="each document must come from one input file; drop the repeated path or glob",
            )
        if name in by_name:
            raise UsageError(
                f"inputs {by_name[name]} and {path} have the same name {name!r}, and output shards are "
                "named after input shards",
                hint="give one folder that holds both, or rename one of them",
            )
        by_path[real] = path
        by_name[name] = path
    return [
        Shard(path=path, name=name, index=i, format=format_of(path) or "parquet", size=size)
        for i, (path, name, size) in enumerate(paths)
    ]


def _discover_one(spec: str) -> list[tuple[str, str, int]]:
    """(path, name relative to the spec, size) of each shard a spec names."""
    if is_uri(spec):
        found = [(u, n, size) for u, n, size in list_files(spec) if format_of(n)]
        if not found:
            raise InputDataError(
                f"{spec}: no .parquet, .jsonl(.gz/.zst) or .arrow objects found",
                hint="point at a prefix holding shards, a glob such as 's3://bucket/pool/*.parquet', or one object",
            )
        return found
    return [(path, name, os.path.getsize(path)) for path, name in local_files(spec)]


def row_groups(shard: Shard) -> int | None:
    """Row groups of a Parquet shard (None for JSONL/IPC, read whole)."""
    if shard.format != "parquet":
        return None
    return len(parquet_layout(shard.path).group_rows)


def count_rows(shard: Shard) -> int | None:
    """Row count from metadata where cheap (Parquet), else None."""
    if shard.format == "parquet":
        return sum(parquet_layout(shard.path).group_rows)
    return None


# ------------------------------------------------------------------------------------- text
def _is_text_type(t: pa.DataType) -> bool:
    if pa.types.is_dictionary(t):
        return _is_text_type(t.value_type)
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_null(t)
    )


def text_type(t: pa.DataType) -> pa.DataType:
    """What a text column of type `t` is read as: `large_string` for the 64-bit-offset types,
    else `string` (dictionary-encoded, binary, view and all-null columns are decoded)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return pa.large_string() if pa.types.is_large_string(t) or pa.types.is_large_binary(t) else pa.string()


def _decode_text(col: pa.Array, where: str, first_row: int, name: str) -> pa.Array:
    """The text column as `text_type` of its type, checked to be valid UTF-8 (naming the row)."""
    want = text_type(col.type)
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), want)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_binary_view(col.type) or pa.types.is_string_view(col.type):
        col = col.cast(pa.large_binary()).view(pa.large_string()).cast(want)
    elif pa.types.is_binary(col.type) or pa.types.is_large_binary(col.type):
        col = col.view(want)
    try:
        col.validate(full=True)
    except pa.ArrowInvalid:
        binary = col.view(pa.large_binary() if pa.types.is_large_string(col.type) else pa.binary())
        for i, v in enumerate(binary.to_pylist()):
            if v is None:
                continue
            try:
                v.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise InputDataError(
                    f"{where}, row {first_row + i}: {name!r} is not valid UTF-8 (byte {exc.start})",
                    hint="re-encode that text (e.g. decode with errors='replace') or drop the row",
                ) from None
        raise
    return col


def read_schema(shard: Shard) -> pa.Schema:
    """The shard's schema as written (before canonical renaming)."""
    if shard.format == "parquet":
        return parquet_layout(shard.path).schema
    for batch, _, _ in _raw_batches(shard, None, 1024):
        return batch.schema
    return pa.schema([])


def _raw_batches(
    shard: Shard, columns: Sequence[str] | None, batch_size: int, row_group: int | None = None
) -> Iterator[Located]:
    if shard.format == "parquet":
        return iter_parquet(shard.path, columns, batch_size, row_group)
    if shard.format == "jsonl":
        return iter_jsonl(shard.path, columns, batch_size)
    return iter_ipc(shard.path, columns, batch_size)


def canonical_schema(schema: pa.Schema, cols: Columns, source: str) -> pa.Schema:
    """The schema the stages see: the text/id columns checked and renamed to `text`/`id`, and
    the text column's type as read (`text_type`). Errors name `source`."""
    names = schema.names
    if cols.text not in names:
        raise SchemaError(
            f"{source}: no text column {cols.text!r}; columns present: {', '.join(names) or '(none)'}",
            hint="name the text column with --text-column",
        )
    t = schema.field(cols.text).type
    if not _is_text_type(t):
        raise SchemaError(
            f"{source}: text column {cols.text!r} has type {t}, expected a string type",
            hint="the text column must hold strings (or UTF-8 bytes); name another with --text-column",
        )
    if cols.id is not None and cols.id not in names:
        raise SchemaError(
            f"{source}: no id column {cols.id!r}; columns present: {', '.join(names)}",
            hint="name the id column with --id-column, or leave it out to derive ids from the text",
        )
    fields = list(schema)
    fields[names.index(cols.text)] = pa.field(cols.text, text_type(t))
    renamed = _renamed(names, cols)
    return pa.schema(
        [pa.field(n, f.type, f.nullable, f.metadata) for n, f in zip(renamed, fields, strict=True)],
        metadata=schema.metadata,
    )


def _renamed(names: list[str], cols: Columns) -> list[str]:
    names = list(names)
    if cols.text != TEXT and cols.text in names:
        if TEXT in names:
            names[names.index(TEXT)] = f"{TEXT}_original"
        names[names.index(cols.text)] = TEXT
    if cols.id is not None and cols.id != ID and cols.id in names:
        if ID in names:
            names[names.index(ID)] = f"{ID}_original"
        names[names.index(cols.id)] = ID
    return names


def canonicalize(
    batch: pa.RecordBatch, cols: Columns, where: str = "input", first_row: int = 0
) -> pa.RecordBatch:
    """Rename the text/id columns to canonical names and decode the text column (`text_type`),
    checking it is UTF-8; an error names `where` and the row."""
    names = list(batch.schema.names)
    if cols.text in names:
        i = names.index(cols.text)
        col = batch.column(i)
        decoded = _decode_text(col, where, first_row, cols.text)
        if decoded is not col:
            batch = batch.set_column(i, pa.field(cols.text, decoded.type), decoded)
    renamed = _renamed(names, cols)
    if renamed != names:
        batch = batch.rename_columns(renamed)
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
    yield from iter_batches(
        shard,
        cols,
        columns=list(columns) if columns is not None else [TEXT],
        batch_size=batch_size,
        row_group=row_group,
    )


def iter_batches(
    shard: Shard,
    cols: Columns,
    *,
    columns: Sequence[str] | None = None,
    batch_size: int = 4096,
    row_group: int | None = None,
) -> Iterator[pa.RecordBatch]:
    """Batches of one shard (or one of its Parquet row groups) with canonical names and text
    decoded; `columns` (canonical) projects the read. Every read of input data goes through here.

    An `id` requested but absent from the shard is simply left out (ids are then derived).
    """
    schema = read_schema(shard)
    canonical_schema(schema, cols, shard.path)
    sidecars = _sidecars(shard, cols)
    if sidecars:
        sidecar_fields(sidecars, canonical_schema(schema, cols, shard.path))
        if columns is not None:  # join only the sidecars whose columns are asked for
            sidecars = [r for r in sidecars if any(f.name in columns for f in r.columns())]
    wanted = source_columns(columns, cols)
    if wanted is not None:
        if sidecars:  # the key each sidecar row is checked against
            wanted += source_columns([ID if (cols.id or ID) in schema.names else TEXT], cols) or []
        wanted = list(dict.fromkeys(c for c in wanted if c in schema.names))
    for batch, where, row in _raw_batches(shard, wanted, batch_size, row_group):
        batch = join(canonicalize(batch, cols, where, row), row, sidecars)
        if columns is not None and sidecars:
            batch = batch.select(
                [c for c in batch.schema.names if c in columns or c not in _sidecar_names(sidecars)]
            )
        yield batch


def _sidecar_names(sidecars: list[SidecarReader]) -> set[str]:
    return {f.name for r in sidecars for f in r.columns()}


def _sidecars(shard: Shard, cols: Columns) -> list[SidecarReader]:
    return [SidecarReader(sidecar_file(folder, shard.stem), shard.path) for folder in cols.sidecars]


def shard_schema(shard: Shard, cols: Columns) -> pa.Schema:
    """The schema the stages see for a shard: canonical (`canonical_schema`), plus the columns
    of its sidecars. Errors name the shard or the sidecar."""
    schema = canonical_schema(read_schema(shard), cols, shard.path)
    for f in sidecar_fields(_sidecars(shard, cols), schema):
        schema = schema.append(f)
    return schema


def iter_raw_batches(shard: Shard, *, batch_size: int = 4096) -> Iterator[pa.RecordBatch]:
    """A shard's batches as stored, for a dataset without a text column (`curate inspect`)."""
    for batch, _, _ in _raw_batches(shard, None, batch_size):
        yield batch


def iter_stdin(cols: Columns, *, raw: bool = False) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """An Arrow IPC stream on stdin, canonicalised (`raw`: as sent, e.g. to spool it to a file
    that is then read like any input)."""
    try:
        reader = pa.ipc.open_stream(sys.stdin.buffer)
    except pa.ArrowInvalid as exc:
        raise InputDataError(
            f"stdin: not an Arrow IPC stream ({exc})",
            hint="`-` reads what another curate command wrote to stdout; for files pass a path",
        ) from exc
    schema = canonical_schema(reader.schema, cols, "stdin")

    def gen() -> Iterator[pa.RecordBatch]:
        row = 0
        try:
            for b in reader:
                yield b if raw else canonicalize(b, cols, "stdin", row)
                row += b.num_rows
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"stdin: the Arrow IPC stream broke off after row {row} ({exc})") from exc

    return (reader.schema if raw else schema), gen()
