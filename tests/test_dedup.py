"""Exact deduplication on real text with planted copies."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from curate.io.inputs import Columns
from curate.runner import run_exact_dedup
from curate.stages.dedup import ExactHash, ExactIndex, exact_hashes, first_occurrences
from curate.testing import check_stage, near_duplicate_edit, shingle_jaccard


def _planted(corpus, folder: Path) -> tuple[Path, dict[str, str]]:  # type: ignore[no-untyped-def]
    """Shards of real text plus copies (verbatim, re-cased, re-spaced) in later shards."""
    t = pq.read_table(corpus.pool).slice(0, 300)
    rows = t.to_pylist()
    copies = []
    expected_original: dict[str, str] = {}
    for i, r in enumerate(rows[:60]):
        variant = [r["text"], r["text"].upper(), "  " + r["text"].replace(" ", "\t  ") + "\n"][i % 3]
        cid = f"copy-{i}"
        copies.append({**r, "id": cid, "text": variant})
        expected_original[cid] = r["id"]
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:150]), folder / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[150:] + copies[:30]), folder / "b.parquet")
    extra = [
        {**rows[0], "id": "null-1", "text": None},
        {**rows[0], "id": "null-2", "text": None},
        {**rows[0], "id": "empty-1", "text": ""},
        {**rows[0], "id": "empty-2", "text": ""},
    ]
    pq.write_table(pa.Table.from_pylist(copies[30:] + extra, schema=t.schema), folder / "c.parquet")
    return folder, expected_original


def test_drops_planted_copies_and_keeps_first(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, originals = _planted(corpus, tmp_path / "pool")
    res = run_exact_dedup(str(pool), str(tmp_path / "out"), columns=Columns(), workers=2)
    out = pq.read_table(tmp_path / "out")
    ids = set(out.column("id").to_pylist())
    assert not any(i.startswith("copy-") for i in ids)
    assert set(originals.values()) <= ids
    assert {"null-1", "null-2", "empty-1", "empty-2"} <= ids
    assert res.extra["duplicates_dropped"] == 60
    copies = dict(
        zip(out.column("id").to_pylist(), out.column("dedup_exact_copies").to_pylist(), strict=True)
    )
    assert all(copies[o] >= 2 for o in originals.values())
    assert res.extra["rows_in"] == res.extra["rows_out"] + 60


def test_first_occurrence_is_input_order(tmp_path: Path) -> None:
    text = "the same sentence about parsing command line options in Python"
    (tmp_path / "pool").mkdir()
    pq.write_table(
        pa.table({"id": ["a1", "a2"], "text": ["unique one", text]}), tmp_path / "pool" / "a.parquet"
    )
    pq.write_table(pa.table({"id": ["b1"], "text": [text.upper()]}), tmp_path / "pool" / "b.parquet")
    run_exact_dedup(str(tmp_path / "pool"), str(tmp_path / "out"), columns=Columns(), workers=1)
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == ["a1", "a2"]


def test_workers_do_not_change_bytes(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, _ = _planted(corpus, tmp_path / "pool")
    digests = []
    for w in (1, 2):
        run_exact_dedup(str(pool), str(tmp_path / f"o{w}"), columns=Columns(), workers=w)
        digests.append(
            {
                p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in (tmp_path / f"o{w}").glob("*.parquet")
            }
        )
    assert digests[0] == digests[1]


def test_normalisation() -> None:
    h = exact_hashes(
        pa.array(
            [
                "Hello  World",
                "hello world",
                " HELLO\tWORLD\n",
                "hello, world",
                "Ωmega",
                "ωMEGA",
                "ｈｅｌｌｏ ｗｏｒｌｄ",
            ]
        )
    )
    assert h[0] == h[1] == h[2] == h[6] != h[3]  # full-width letters fold under NFKC
    assert h[4] == h[5]


@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 10_000), st.integers(1, 3)), max_size=60),
    st.integers(0, 60),
)
def test_index_merge_is_associative_and_exact(items, cut) -> None:  # type: ignore[no-untyped-def]
    h = np.array([i[0] for i in items], np.uint64)
    p = np.array([i[1] for i in items], np.int64)
    c = np.array([i[2] for i in items], np.int64)
    whole = first_occurrences(h, p, c)
    idx = ExactIndex()
    a = first_occurrences(h[:cut], p[:cut], c[:cut])
    b = first_occurrences(h[cut:], p[cut:], c[cut:])
    for m in (idx.merge(a, b), idx.merge(b, a)):
        assert np.array_equal(m.hash, whole.hash)
        assert np.array_equal(m.position, whole.position)
        assert np.array_equal(m.count, whole.count)
    for k in set(h.tolist()):
        sel = h == k
        j = int(np.searchsorted(whole.hash, k))
        assert whole.position[j] == p[sel].min() and whole.count[j] == c[sel].sum()


def test_stage_conforms(corpus) -> None:  # type: ignore[no-untyped-def]
    check_stage(ExactHash(), pq.read_table(corpus.pool).slice(0, 40).combine_chunks().to_batches()[0])


def test_cli(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, _ = _planted(corpus, tmp_path / "pool")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate.cli.app",
            "dedup",
            "exact",
            str(pool),
            str(tmp_path / "out"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "duplicates dropped" in res.stderr and "60" in res.stderr


def test_minhash_stage_conforms(corpus) -> None:  # type: ignore[no-untyped-def]
    from curate.stages.dedup import MinHashSignature

    batch = pq.read_table(corpus.pool).slice(0, 40).combine_chunks().to_batches()[0]
    check_stage(MinHashSignature(num_perm=32), batch)
    sig = MinHashSignature(num_perm=32).annotate(batch)["minhash_signature"]
    assert sig.type == pa.list_(pa.uint32(), 32) and len(sig) == 40


def test_minhash_dedup_finds_planted_near_duplicates(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    from curate.runner import run_minhash_dedup

    rng = np.random.default_rng(0)
    t = pq.read_table(corpus.pool)
    rows = [r for r in t.to_pylist() if len(r["text"].split()) >= 200][:400]
    originals = rows[:100]
    variants = [
        {**r, "id": f"near-{i}-{k}", "text": near_duplicate_edit(r["text"], k, rng)}
        for i, r in enumerate(originals)
        for k in range(4)
    ]
    pool = tmp_path / "pool"
    pool.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), pool / "a.parquet")
    pq.write_table(pa.Table.from_pylist(variants, schema=t.schema), pool / "b.parquet")
    res = run_minhash_dedup(str(pool), str(tmp_path / "out"), columns=Columns(), workers=2)
    kept = pq.read_table(tmp_path / "out")
    kept_ids = set(kept.column("id").to_pylist())
    removed = {r["id"] for r in rows + variants} - kept_ids
    recall = sum(v["id"] in removed for v in variants) / len(variants)
    # The real pool has near-duplicates of its own (licence boilerplate, changelog entries): a
    # removal is correct when the document's true shingle Jaccard with a kept cluster head is
    # at least the threshold.
    text_of = {r["id"]: r["text"] for r in rows + variants}
    heads = [
        i
        for i, n in zip(
            kept.column("id").to_pylist(), kept.column("minhash_cluster_size").to_pylist(), strict=True
        )
        if n > 1
    ]

    def correct(doc: str) -> bool:
        return doc.startswith("near-") or max(shingle_jaccard(text_of[doc], text_of[h]) for h in heads) >= 0.8

    precision = sum(correct(i) for i in removed) / max(len(removed), 1)
    assert recall >= 0.95, (recall, res.extra)
    assert precision >= 0.98, (precision, res.extra)
    sizes = dict(
        zip(kept.column("id").to_pylist(), kept.column("minhash_cluster_size").to_pylist(), strict=True)
    )
    assert all(sizes[o["id"]] >= 2 for o in originals if o["id"] in kept_ids)


def test_minhash_cli(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, _ = _planted(corpus, tmp_path / "pool")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "curate.cli.app",
            "dedup",
            "minhash",
            str(pool),
            str(tmp_path / "out"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "near-duplicates dropped" in res.stderr and "9 bands x 13 rows" in res.stderr
    out = pq.read_table(tmp_path / "out")
    # exact copies are near-duplicates too: none of the planted copies survives
    assert not any(i.startswith("copy-") for i in out.column("id").to_pylist())


def test_minhash_index_and_filter_as_stages(corpus) -> None:  # type: ignore[no-untyped-def]
    from curate.stages.dedup import POSITION, MinHashIndex, MinHashSignature, NearDuplicateFilter

    t = pq.read_table(corpus.pool).slice(0, 60).combine_chunks()
    texts = t.column("text").to_pylist()
    # plant copies of the first 10 documents at the end
    batch = pa.RecordBatch.from_pydict({"text": texts + texts[:10], POSITION: np.arange(70, dtype=np.int64)})
    batch = batch.append_column("minhash_signature", MinHashSignature().annotate(batch)["minhash_signature"])
    index = MinHashIndex()
    a, b, c = (index.summarize(batch.slice(i, n)) for i, n in ((0, 25), (25, 25), (50, 20)))
    left, right = index.merge(index.merge(a, b), c), index.merge(a, index.merge(c, b))
    assert np.array_equal(left.positions, right.positions) and np.array_equal(left.bands, right.bands)
    sig = {
        int(p): s
        for p, s in zip(
            batch.column(POSITION).to_pylist(), batch.column("minhash_signature").to_pylist(), strict=True
        )
    }
    clusters = index.clusters(left, lambda pos: np.array([sig[int(p)] for p in pos], dtype=np.uint32))
    flt = NearDuplicateFilter(clusters=clusters)
    res = flt.keep(batch)
    assert not res.keep[60:].any() and res.drops["near duplicate"] >= 10
    cluster, size = clusters.lookup(np.arange(70))
    assert all(cluster[60 + i] == i and size[i] >= 2 for i in range(10))
    check_stage(flt, batch)
