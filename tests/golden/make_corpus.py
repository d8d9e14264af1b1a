"""How tests/golden/corpus/ was made (run once, by hand; the tests only read its files).

The golden corpus is committed so that the golden digests do not depend on the text of the
machine the tests run on: real text from CPython 3.11's own documentation, docstrings and
standard-library source (PSF licence), cut by `curate.testing.build_corpus` with no Debian
text, a hundred-odd documents, with a 0/1 `label` column (1 = language reference), plus a shard
of planted copies, near-copies, a null and an empty text.

    CURATE_DOC_DIR=/nonexistent python tests/golden/make_corpus.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.testing import build_corpus

HERE = Path(__file__).resolve().parent / "corpus"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        c = build_corpus(Path(tmp), max_bytes_per_domain=90_000, shards=3, row_group_size=24, seed=0)
        (HERE / "pool").mkdir(parents=True, exist_ok=True)
        for part in sorted(c.pool.glob("*.parquet")):
            t = pq.read_table(part)
            label = pc.cast(pc.equal(t.column("domain"), "python_docs"), pa.int8())
            pq.write_table(t.append_column("label", label), HERE / "pool" / part.name, row_group_size=24)
        pq.write_table(pq.read_table(c.target), HERE / "target.parquet")
        # copies and near-copies in a shard of their own, and a null and an empty text, so that
        # dedup and the null-text paths have work to do
        first = pq.read_table(HERE / "pool" / "part-00000.parquet").to_pylist()
        extra = [{**r, "id": f"copy-{r['id']}", "text": r["text"].upper()} for r in first[:8]]
        extra += [
            {**r, "id": f"near-{r['id']}", "text": r["text"] + " Share this page."} for r in first[8:14]
        ]
        extra += [{**first[0], "id": "null-text", "text": None}, {**first[0], "id": "empty-text", "text": ""}]
        schema = pq.read_schema(HERE / "pool" / "part-00000.parquet")
        pq.write_table(pa.Table.from_pylist(extra, schema=schema), HERE / "pool" / "part-00003.parquet")


if __name__ == "__main__":
    main()
