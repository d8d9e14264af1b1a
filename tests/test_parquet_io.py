"""Parquet reading and writing details: the footer cache follows a file's versions and keeps to
its byte budget, reads without pre-buffering give the stored rows, written shards keep texts, ids
and numbers plain, and narrow outputs gather batches into row groups."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import InputDataError
from curate.io.inputs import Columns, Shard, count_rows, iter_batches, read_schema, row_groups
from curate.io.outputs import ParquetShardWriter
from curate.io.readers import iter_parquet, parquet_layout


def _table(n: int, extra: str = "") -> pa.Table:
    return pa.table(
        {
            "id": [f"doc-{i}" for i in range(n)],
            "text": [f"document {i} of {n} {extra} " * (1 + i % 7) for i in range(n)],
            "lang": ["en" if i % 3 else "de" for i in range(n)],
        }
    )


def _shard(path: Path) -> Shard:
    return Shard(path=str(path), name=path.name, index=0, format="parquet", size=path.stat().st_size)


def test_layout_follows_a_rewritten_file(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    pq.write_table(_table(10), path, row_group_size=4)
    assert parquet_layout(str(path)).group_rows == (4, 4, 2)
    # rewritten the way outputs are (a new file renamed over it), then in place
    tmp = tmp_path / "new.parquet"
    pq.write_table(_table(7).append_column("extra", pa.array([1] * 7)), tmp, row_group_size=3)
    os.replace(tmp, path)
    assert parquet_layout(str(path)).group_rows == (3, 3, 1)
    assert "extra" in read_schema(_shard(path)).names
    pq.write_table(_table(5), path)
    shard = _shard(path)
    assert (row_groups(shard), count_rows(shard)) == (1, 5)
    assert "extra" not in read_schema(shard).names
    assert [len(b) for b, _, _ in iter_parquet(str(path), ["text"], 1024)] == [5]


def test_a_file_truncated_after_it_was_read_is_named(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    pq.write_table(_table(20), path)
    parquet_layout(str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match=r"part-0\.parquet"):
        parquet_layout(str(path))


def test_batches_are_the_stored_rows(tmp_path: Path) -> None:
    path = tmp_path / "part-0.parquet"
    table = _table(50)
    pq.write_table(table, path, row_group_size=8)
    shard = _shard(path)
    got = pa.Table.from_batches(list(iter_batches(shard, Columns(), batch_size=5)))
    assert got.select(table.column_names).equals(table)
    for rg in range(row_groups(shard) or 0):
        part = pa.Table.from_batches(list(iter_batches(shard, Columns(), row_group=rg, columns=["text"])))
        assert part.column("text").to_pylist() == table.column("text").to_pylist()[8 * rg : 8 * rg + 8]


def test_written_shards_keep_texts_ids_and_numbers_plain(tmp_path: Path) -> None:
    table = _table(300, extra="x" * 50)
    table = table.append_column("score", pa.array([i % 7 / 7 for i in range(300)], pa.float64()))
    path = tmp_path / "out.parquet"
    with ParquetShardWriter(path, table.schema) as writer:
        for batch in table.to_batches(max_chunksize=100):
            writer.write(batch)
    assert pq.read_table(path).equals(table)
    meta = pq.ParquetFile(path).metadata
    for g in range(meta.num_row_groups):
        encodings = {
            meta.row_group(g).column(c).path_in_schema: meta.row_group(g).column(c).encodings
            for c in range(meta.num_columns)
        }
        for plain in ("text", "id", "score"):
            assert "RLE_DICTIONARY" not in encodings[plain], plain
        assert "RLE_DICTIONARY" in encodings["lang"]  # a repetitive column still gets one


def test_narrow_outputs_gather_batches_into_row_groups(tmp_path: Path) -> None:
    table = _table(300)
    for rows, groups in ((0, [100, 100, 100]), (150, [200, 100]), (1000, [300])):
        path = tmp_path / f"out-{rows}.parquet"
        with ParquetShardWriter(path, table.schema, row_group_rows=rows) as writer:
            for batch in table.to_batches(max_chunksize=100):
                writer.write(batch)
        assert pq.read_table(path).equals(table)
        meta = pq.ParquetFile(path).metadata
        assert [meta.row_group(g).num_rows for g in range(meta.num_row_groups)] == groups


def test_footer_cache_stays_within_its_byte_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from curate.io import readers

    paths = []
    for i in range(6):
        paths.append(tmp_path / f"part-{i}.parquet")
        pq.write_table(_table(20 + i), paths[-1], row_group_size=5)
    one = pq.ParquetFile(paths[0]).metadata.serialized_size
    monkeypatch.setattr(readers, "FOOTER_CACHE_BYTES", 2 * one + one // 2)
    for _ in range(2):
        for path in paths:
            shard = _shard(path)
            assert sum(b.num_rows for b in iter_batches(shard, Columns(), row_group=1, columns=["text"])) == 5
            assert readers._footer_bytes <= 2 * one + one // 2
    assert 1 <= len(readers._footers) <= 3
