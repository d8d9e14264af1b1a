"""Exact deduplication on real text with planted copies."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import given
from hypothesis import strategies as st

from curate.engine.job import JobResult
from curate.engine.run import run_job
from curate.jobs.dedup_exact import ExactDedupConfig, exact_dedup_job
from curate.stages.dedup import ExactHash, ExactIndex, exact_hashes, first_occurrences
from curate.testing import check_stage, near_duplicate_edit, shingle_jaccard


def run_exact_dedup(source: str, dest: str, workers: int) -> JobResult:
    return run_job(exact_dedup_job(ExactDedupConfig(input=source, output=dest)), workers=workers)


def reference_normalise(text: str) -> str:
    """Exact dedup's normalisation in plain Python, exact on the ASCII texts `_planted` uses: ASCII
    is its own NFKC form, and RE2's \\s is [\\t\\n\\f\\r ]."""
    return re.sub(r"[\t\n\f\r ]+", " ", text.lower()).strip("\t\n\f\r ")


def _plain(text: str | None) -> bool:
    """ASCII without the few characters where Python's and RE2's notions of whitespace differ."""
    return text is not None and text.isascii() and not re.search(r"[\v\x1c-\x1f]", text)


def _planted(corpus, folder: Path) -> tuple[Path, list[dict], set[str]]:  # type: ignore[no-untyped-def]
    """Shards of real text plus copies (verbatim, re-cased, re-spaced) in later shards. Returns the
    folder, all rows in input order, and the ids a plain-Python reference keeps: the first row of
    each normalised text, and every null or empty one. The real text may hold duplicates of its
    own (Debian's copyright files do); the reference counts them too."""
    t = pq.read_table(corpus.pool)
    rows = [r for r in t.to_pylist() if _plain(r["text"])][:300]
    copies = []
    for i, r in enumerate(rows[:60]):
        variant = [r["text"], r["text"].upper(), "  " + r["text"].replace(" ", "\t  ") + "\n"][i % 3]
        copies.append({**r, "id": f"copy-{i}", "text": variant})
    extra = [
        {**rows[0], "id": "null-1", "text": None},
        {**rows[0], "id": "null-2", "text": None},
        {**rows[0], "id": "empty-1", "text": ""},
        {**rows[0], "id": "empty-2", "text": ""},
    ]
    shards = [rows[:150], rows[150:] + copies[:30], copies[30:] + extra]
    folder.mkdir()
    for name, part in zip("abc", shards, strict=True):
        pq.write_table(pa.Table.from_pylist(part, schema=t.schema), folder / f"{name}.parquet")
    seen: set[str] = set()
    keep: set[str] = set()
    for r in (r for part in shards for r in part):
        if not r["text"]:
            keep.add(r["id"])
            continue
        norm = reference_normalise(r["text"])
        if norm not in seen:
            seen.add(norm)
            keep.add(r["id"])
    return folder, [r for part in shards for r in part], keep


def test_drops_planted_copies_and_keeps_first(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, rows, expected = _planted(corpus, tmp_path / "pool")
    res = run_exact_dedup(str(pool), str(tmp_path / "out"), workers=2)
    out = pq.read_table(tmp_path / "out")
    ids = out.column("id").to_pylist()
    assert set(ids) == expected and len(ids) == len(expected)
    assert not any(i.startswith("copy-") for i in ids)
    assert res.summary["duplicates_dropped"] == len(rows) - len(expected) >= 60
    assert res.summary["rows_in"] == res.summary["rows_out"] + res.summary["duplicates_dropped"]
    # copies: occurrences of the normalised text in the whole input
    occurrences: dict[str, int] = {}
    for r in rows:
        if r["text"]:
            occurrences[reference_normalise(r["text"])] = (
                occurrences.get(reference_normalise(r["text"]), 0) + 1
            )
    text_of = {r["id"]: r["text"] for r in rows}
    for i, n in zip(ids, out.column("dedup_exact_copies").to_pylist(), strict=True):
        assert n == (occurrences[reference_normalise(text_of[i])] if text_of[i] else 1)


def test_first_occurrence_is_input_order(tmp_path: Path) -> None:
    text = "the same sentence about parsing command line options in Python"
    (tmp_path / "pool").mkdir()
    pq.write_table(
        pa.table({"id": ["a1", "a2"], "text": ["unique one", text]}), tmp_path / "pool" / "a.parquet"
    )
    pq.write_table(pa.table({"id": ["b1"], "text": [text.upper()]}), tmp_path / "pool" / "b.parquet")
    run_exact_dedup(str(tmp_path / "pool"), str(tmp_path / "out"), workers=1)
    assert sorted(pq.read_table(tmp_path / "out").column("id").to_pylist()) == ["a1", "a2"]


def test_workers_do_not_change_bytes(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, _, _ = _planted(corpus, tmp_path / "pool")
    digests = []
    for w in (1, 2):
        run_exact_dedup(str(pool), str(tmp_path / f"o{w}"), workers=w)
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
    pool, rows, expected = _planted(corpus, tmp_path / "pool")
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
    assert re.search(rf"duplicates dropped\s+{len(rows) - len(expected):,} ", res.stderr), res.stderr


def test_minhash_stage_conforms(corpus) -> None:  # type: ignore[no-untyped-def]
    from curate.stages.dedup import MinHashSignature

    batch = pq.read_table(corpus.pool).slice(0, 40).combine_chunks().to_batches()[0]
    check_stage(MinHashSignature(num_perm=32), batch)
    sig = MinHashSignature(num_perm=32).annotate(batch)["minhash_signature"]
    assert sig.type == pa.list_(pa.uint32(), 32) and len(sig) == 40


def test_minhash_dedup_finds_planted_near_duplicates(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """A constructed case with known answers. Variants whose true shingle Jaccard with their
    original is >= 0.95 are candidates with probability > 1 - 1e-9 (LSH 25 x 5) and are decided
    on their exact Jaccard, so recall >= 0.9 over them cannot flake; no removal may be a
    document unlike every kept cluster head (true Jaccard < 0.6). The measured recall against
    datatrove is a bench figure (bench/bench_minhash.py)."""
    from curate.jobs.dedup_minhash import MinHashConfig, minhash_dedup_job

    rng = np.random.default_rng(0)
    t = pq.read_table(corpus.pool)
    rows = [r for r in t.to_pylist() if len(r["text"].split()) >= 200][:400]
    originals = rows[:100]
    assert len(originals) == 100, "the corpus should hold 100 documents of 200 words or more"
    variants = [
        {**r, "id": f"near-{i}-{k}", "text": near_duplicate_edit(r["text"], k, rng)}
        for i, r in enumerate(originals)
        for k in range(4)
    ] + [{**r, "id": f"near-{i}-case", "text": r["text"].upper()} for i, r in enumerate(originals[:20])]
    pool = tmp_path / "pool"
    pool.mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=t.schema), pool / "a.parquet")
    pq.write_table(pa.Table.from_pylist(variants, schema=t.schema), pool / "b.parquet")
    run_job(minhash_dedup_job(MinHashConfig(input=str(pool), output=str(tmp_path / "out"))), workers=2)
    kept = pq.read_table(tmp_path / "out")
    kept_ids = set(kept.column("id").to_pylist())
    removed = {r["id"] for r in rows + variants} - kept_ids
    text_of = {r["id"]: r["text"] for r in rows + variants}
    original_of = {v["id"]: originals[int(v["id"].split("-")[1])]["text"] for v in variants}
    close = [v["id"] for v in variants if shingle_jaccard(v["text"], original_of[v["id"]]) >= 0.95]
    assert len(close) >= 150, "most planted edits should stay within Jaccard 0.95 of their original"
    recall = sum(i in removed for i in close) / len(close)
    assert recall >= 0.9, recall
    heads = [
        i
        for i, n in zip(
            kept.column("id").to_pylist(), kept.column("minhash_cluster_size").to_pylist(), strict=True
        )
        if n > 1
    ]
    for doc in removed - {v["id"] for v in variants}:  # the real text's own near-duplicates
        assert max(shingle_jaccard(text_of[doc], text_of[h]) for h in heads) >= 0.6, doc
    sizes = dict(
        zip(kept.column("id").to_pylist(), kept.column("minhash_cluster_size").to_pylist(), strict=True)
    )
    assert all(sizes[o["id"]] >= 2 for o in originals if o["id"] in kept_ids)


def test_minhash_cli(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    pool, _, _ = _planted(corpus, tmp_path / "pool")
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
    assert "near-duplicates dropped" in res.stderr and "25 bands x 5 rows" in res.stderr
    assert "exact Jaccard >= 0.8" in res.stderr
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


def _distinct_ascii_documents(corpus, n: int, min_words: int) -> list[str]:  # type: ignore[no-untyped-def]
    """Real documents as lower-cased ASCII words, taken greedily so that under 30% of each one's
    shingles occur in those taken before: no two have a Jaccard of 0.3 or more."""
    seen: set[tuple[str, ...]] = set()
    out = []
    for text in pq.read_table(corpus.pool).column("text").to_pylist():
        words = re.findall(r"\w+", text.lower()) if text and text.isascii() else []
        if len(words) < min_words:
            continue
        sh = {tuple(words[i : i + 5]) for i in range(len(words) - 4)}
        if len(sh & seen) < 0.3 * len(sh):
            out.append(" ".join(words))
            seen |= sh
        if len(out) == n:
            break
    return out


def test_minhash_decides_on_the_exact_jaccard_at_the_threshold(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """Variants made by cutting words off the end of a document have a known Jaccard with it
    (their shingles are a subset: J = kept shingles / all). Those at 0.81-0.84 must all go and
    those at 0.74-0.78 must all stay: the signature estimate (±0.035) cannot tell them apart,
    the exact decision must. The documents are pairwise below 0.3, so no chain joins them."""
    from curate.jobs.dedup_minhash import MinHashConfig, minhash_dedup_job

    docs = _distinct_ascii_documents(corpus, 60, min_words=150)
    assert len(docs) == 60, "the corpus should hold 60 distinct ASCII documents of 150 words"
    rng = np.random.default_rng(0)
    rows, above, below = [], set(), set()
    for i, text in enumerate(docs):
        words = text.split()
        target = rng.uniform(0.81, 0.84) if i % 2 == 0 else rng.uniform(0.74, 0.78)
        cut = next(
            m for m in range(len(words)) if shingle_jaccard(text, " ".join(words[: len(words) - m])) <= target
        )
        variant = " ".join(words[: len(words) - cut])
        j = shingle_jaccard(text, variant)
        assert (0.8 < j < 0.845) if i % 2 == 0 else (0.73 < j < 0.785), j
        (above if i % 2 == 0 else below).add(f"v{i}")
        rows += [{"id": f"d{i}", "text": text}, {"id": f"v{i}", "text": variant}]
    pool = tmp_path / "pool"
    pool.mkdir()
    pq.write_table(pa.Table.from_pylist(rows[:60]), pool / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows[60:]), pool / "b.parquet")
    res = run_job(minhash_dedup_job(MinHashConfig(input=str(pool), output=str(tmp_path / "out"))), workers=2)
    kept = set(pq.read_table(tmp_path / "out").column("id").to_pylist())
    assert {r["id"] for r in rows} - kept == above
    assert res.summary["verify"] == "exact" and res.summary["linked_pairs"] == len(above)


@given(
    st.lists(
        st.lists(st.sampled_from(["a", "b", "c", "dd", "e1", "F_", "x", "y"]), min_size=1, max_size=30).map(
            lambda w: " ".join(w) + "."
        ),
        min_size=2,
        max_size=8,
    )
)
def test_pair_jaccard_matches_a_python_reference(texts: list[str]) -> None:
    """The kernel's shingle sets give the Jaccard of plain Python sets of lower-cased word
    5-grams (ASCII words: the two tokenisers agree), for every pair, across two set stores."""
    from curate import native

    a = native.shingle_sets(pa.array(texts))
    b = native.shingle_sets(pa.array(texts[::-1]))
    n = len(texts)
    ia, ib = np.repeat(np.arange(n), n), np.tile(np.arange(n), n)
    got = native.pair_jaccard(a, ia, b, n - 1 - ib)
    want = [shingle_jaccard(texts[i], texts[j]) for i, j in zip(ia, ib, strict=True)]
    assert np.array_equal(got, np.array(want))


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 30)), max_size=60))
def test_connected_components_match_union_find(edges: list[tuple[int, int]]) -> None:
    from curate.stages.dedup import connected_components

    parent: dict[int, int] = {}

    def find(x: int) -> int:
        while parent.get(x, x) != x:
            x = parent[x]
        return x

    for u, v in edges:
        ru, rv = find(u), find(v)
        parent[max(ru, rv)] = min(ru, rv)
    pairs = np.array(edges, dtype=np.int64).reshape(-1, 2) * 7  # positions need not be dense
    members, roots, sizes = connected_components(pairs)
    nodes = sorted({x for e in edges for x in e})
    assert members.tolist() == [x * 7 for x in nodes]
    assert roots.tolist() == [find(x) * 7 for x in nodes]
    count = {r: sum(find(y) == r for y in nodes) for r in map(find, nodes)}
    assert sizes.tolist() == [count[find(x)] for x in nodes]


@given(st.lists(st.integers(0, 5), min_size=0, max_size=40))
def test_bucket_pairs_join_exactly_the_documents_of_a_bucket(hashes: list[int]) -> None:
    """Every pair within small buckets, a star in large ones: in both, the components of the
    pairs are the buckets, and no pair crosses buckets."""
    from curate.stages.dedup import bucket_pairs, connected_components

    h = np.array(hashes, dtype=np.uint64)
    pos = np.arange(len(h), dtype=np.int64) * 3
    pairs = bucket_pairs(pos, h, small=4)
    assert (pairs[:, 0] < pairs[:, 1]).all() and (h[pairs[:, 0] // 3] == h[pairs[:, 1] // 3]).all()
    members, roots, _ = connected_components(pairs)
    for m, r in zip(members.tolist(), roots.tolist(), strict=True):
        assert r == pos[h == h[m // 3]].min()
    for v in set(hashes):
        size = hashes.count(v)
        inside = int((h[pairs[:, 0] // 3] == v).sum())
        assert inside == (size * (size - 1) // 2 if size <= 4 else size - 1)
