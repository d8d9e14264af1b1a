"""Score sidecars (Dolma's attribute files): a scoring job may write only a key column plus the
columns it adds, one sidecar shard per input shard (`<stem>.parquet`), so scoring a pool never
rewrites its text. Readers join sidecars back by shard and row order, checking the key row by
row: the input's `id` where it has one, else `_row_key`, the 64-bit hash of the text.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate import arrow_ops, native
from curate.errors import InputDataError, SchemaError
from curate.types import ID, TEXT

ROW_KEY = "_row_key"
_KEYS = (ID, ROW_KEY)


def sidecar_file(folder: str, stem: str) -> str:
    """A sidecar shard's path, in a local folder or under an object-store prefix."""
    from curate.io.stores import is_uri, location

    folder = location(folder)
    return f"{folder.rstrip('/')}/{stem}.parquet" if is_uri(folder) else str(Path(folder) / f"{stem}.parquet")


def _exists(path: str) -> bool:
    from curate.io.stores import is_uri, resolve

    if not is_uri(path):
        return Path(path).exists()
    from pyarrow import fs

    filesystem, key = resolve(path)
    return bool(filesystem.get_file_info(key).type == fs.FileType.File)


def row_keys(batch: pa.RecordBatch) -> pa.Array:
    """The key a sidecar row carries: the `id`, or the text's hash when there is no id."""
    if ID in batch.schema.names:
        return batch.column(ID)
    return pa.array(native.string_hashes(batch.column(TEXT), seed=0), pa.uint64())


def key_name(schema: pa.Schema) -> str:
    return ID if ID in schema.names else ROW_KEY


@dataclass
class SidecarReader:
    """Rows [start, start + n) of one sidecar shard, read a row group at a time."""

    path: str
    source: str  # the input shard it belongs to (for messages)
    file: pq.ParquetFile = field(init=False)
    starts: list[int] = field(init=False)
    _cached: tuple[int, pa.Table] | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        if not _exists(self.path):
            raise InputDataError(
                f"{self.path}: no sidecar for {self.source}",
                hint="a sidecar folder holds one shard per input shard, named after it "
                "(written by a scoring command with --write-sidecar on the same input)",
            )
        try:
            from curate.io.stores import is_uri, open_input_file

            remote = is_uri(self.path)  # pre-buffer remote reads only, as readers.open_parquet does
            self.file = pq.ParquetFile(open_input_file(self.path) if remote else self.path, pre_buffer=remote)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputDataError(f"{self.path}: not a readable Parquet sidecar ({exc})") from exc
        meta = self.file.metadata
        self.starts = [0]
        for i in range(meta.num_row_groups):
            self.starts.append(self.starts[-1] + meta.row_group(i).num_rows)

    @property
    def rows_total(self) -> int:
        return self.starts[-1]

    def columns(self) -> list[pa.Field]:
        return [f for f in self.file.schema_arrow if f.name not in _KEYS]

    def _group(self, i: int) -> pa.Table:
        if self._cached is None or self._cached[0] != i:
            self._cached = (i, self.file.read_row_group(i, use_threads=False))
        return self._cached[1]

    def rows(self, start: int, n: int) -> pa.Table:
        if start + n > self.rows_total:
            raise InputDataError(
                f"{self.path}: the sidecar has {self.rows_total:,} rows and {self.source} more",
                hint="the sidecar was written for another version of this shard; score it again",
            )
        parts = []
        g = bisect.bisect_right(self.starts, start) - 1
        while n > 0:
            table = self._group(g)
            offset = start - self.starts[g]
            take = min(n, table.num_rows - offset)
            parts.append(table.slice(offset, take))
            start, n, g = start + take, n - take, g + 1
        return pa.concat_tables(parts) if len(parts) != 1 else parts[0]


def sidecar_fields(readers: list[SidecarReader], schema: pa.Schema) -> list[pa.Field]:
    """The columns the sidecars add to a shard's schema; a clash with a column already there is
    an error naming both."""
    out: list[pa.Field] = []
    seen = set(schema.names)
    for r in readers:
        for f in r.columns():
            if f.name in seen:
                raise SchemaError(
                    f"{r.path}: sidecar column {f.name!r} is already in {r.source} or another sidecar",
                    hint="join each score once; drop the column from the input or leave that sidecar out",
                )
            seen.add(f.name)
            out.append(f)
    return out


def join(batch: pa.RecordBatch, first_row: int, readers: list[SidecarReader]) -> pa.RecordBatch:
    """`batch` (rows from `first_row` of its shard) with its sidecars' columns, keys checked."""
    if not readers:
        return batch
    keys = row_keys(batch)
    for r in readers:
        side = r.rows(first_row, batch.num_rows)
        name = ID if ID in side.column_names else ROW_KEY
        theirs = side.column(name).combine_chunks()
        if name == ID and ID not in batch.schema.names:
            raise SchemaError(f"{r.path}: the sidecar is keyed by `id`, and {r.source} has no id column")
        if name == ROW_KEY and ID in batch.schema.names:
            raise SchemaError(f"{r.path}: the sidecar is keyed by text hash, and {r.source} has an id column")
        same = (
            arrow_ops.equal(arrow_ops.cast(theirs, keys.type), keys)
            if theirs.type != keys.type
            else arrow_ops.equal(theirs, keys)
        )
        ok = np.asarray(arrow_ops.fill_null(same, False).to_numpy(zero_copy_only=False), bool)
        if not ok.all():
            i = int(np.flatnonzero(~ok)[0])
            raise InputDataError(
                f"{r.path}: row {first_row + i} belongs to another document than row {first_row + i} of "
                f"{r.source} ({name} {theirs[i].as_py()!r} vs {keys[i].as_py()!r})",
                hint="a sidecar must come from the same input shard, in the same row order",
            )
        for f in r.columns():
            batch = batch.append_column(f, side.column(f.name).combine_chunks())
    return batch
