"""Every map stage passes the conformance suite; artifacts round-trip without pickle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.native import HashSpec
from curate.stages.features import NgramFeaturizer
from curate.stages.importance import ImportanceModel, ImportanceScorer, NgramHistogram, NgramSample
from curate.testing import check_stage
from curate.tokens import bytes_counter, calibrate, exact_counter


@pytest.fixture(scope="module")
def batch(corpus) -> pa.RecordBatch:  # type: ignore[no-untyped-def]
    t = pq.read_table(corpus.pool).slice(0, 64)
    extra = pa.table({"id": ["n", "e"], "text": [None, ""], "domain": ["x", "x"], "source": ["x", "x"]})
    return pa.concat_tables([t, extra]).combine_chunks().to_batches()[0]


@pytest.fixture(scope="module")
def model(batch: pa.RecordBatch) -> ImportanceModel:
    spec = HashSpec(buckets=512)
    hist = NgramHistogram(spec=spec)
    half = batch.num_rows // 2
    return ImportanceModel(
        spec=spec,
        target_counts=hist.summarize(batch.slice(0, half)),
        raw_counts=hist.summarize(batch),
        min_words=20,
    )


def test_featurizer_conforms(batch: pa.RecordBatch) -> None:
    check_stage(NgramFeaturizer(spec=HashSpec(buckets=1000)), batch)


@pytest.mark.parametrize("counter", ["estimate", "cl100k"])
def test_importance_scorer_conforms(batch: pa.RecordBatch, model: ImportanceModel, counter: str) -> None:
    c = bytes_counter(4.0, "test") if counter == "estimate" else exact_counter("cl100k")
    check_stage(ImportanceScorer(model=model, counter=c), batch)


def test_calibrated_estimate_is_exact_in_total_on_its_sample(corpus) -> None:  # type: ignore[no-untyped-def]
    """The estimate's total over its own calibration sample equals cl100k's total, up to the
    per-document rounding up (< 1 token each); least squares alone was a few % off."""
    texts = pq.read_table(corpus.pool, columns=["text"]).column("text").combine_chunks()
    estimate = calibrate(texts)
    assert not estimate.exact
    exact = int(exact_counter("cl100k").count(texts).sum())
    est = int(estimate.count(texts).sum())
    assert exact <= est < exact + len(texts)


def test_histogram_merge_is_associative(batch: pa.RecordBatch) -> None:
    h = NgramHistogram(spec=HashSpec(buckets=300))
    a, b, c = (h.summarize(batch.slice(i * 20, 20)) for i in range(3))
    assert np.array_equal(h.merge(h.merge(a, b), c), h.merge(a, h.merge(b, c)))
    assert np.array_equal(h.merge(h.merge(a, b), c), h.summarize(batch.slice(0, 60)))


def _sample_reference(units: list[list[str | None]], s: NgramSample) -> list[str]:
    """The calibration sample by its definition, flat: each unit's non-empty texts among its
    first `sample_docs` rows that end within the unit's byte cap (always its first), then the
    texts of all units in order that end within the sample's caps (always the first)."""
    picked: list[str] = []
    for unit in units:
        head = [t for t in unit[: s.sample_docs] if t]
        used = 0
        for i, t in enumerate(head):
            used += len(t.encode())
            if i and s.unit_sample_bytes is not None and used > s.unit_sample_bytes:
                break
            picked.append(t)
    out: list[str] = []
    used = 0
    for t in picked[: s.max_sample]:
        used += len(t.encode())
        if out and s.max_sample_bytes is not None and used > s.max_sample_bytes:
            break
        out.append(t)
    return out


@settings(max_examples=60, deadline=None)
@given(
    units=st.lists(
        st.lists(st.one_of(st.none(), st.text(alphabet="ab é\n", max_size=12)), max_size=6),
        min_size=1,
        max_size=6,
    ),
    caps=st.tuples(st.integers(1, 5), st.integers(1, 12), st.one_of(st.none(), st.integers(1, 20))),
    data=st.data(),
)
def test_calibration_sample_is_its_definition_in_any_merge_order(units, caps, data) -> None:  # type: ignore[no-untyped-def]
    """However the units' summaries are merged (left fold, right fold, any pairing), the sample
    is the flat definition's: the byte caps keep merges associative."""
    docs, max_docs, max_bytes = caps
    s = NgramSample(
        spec=HashSpec(buckets=64),
        sample_docs=docs,
        max_sample=max_docs,
        unit_sample_bytes=8,
        max_sample_bytes=max_bytes,
    )
    parts = [s.summarize(pa.record_batch({"text": pa.array(u, pa.string())})) for u in units]
    while len(parts) > 1:  # merge a random adjacent pair, keeping the order
        i = data.draw(st.integers(0, len(parts) - 2))
        parts[i : i + 2] = [s.merge(parts[i], parts[i + 1])]
    expected = _sample_reference(units, s)
    assert parts[0].sample == expected
    assert parts[0].sample_sizes == [len(t.encode()) for t in expected]


def test_importance_weights_match_definition(batch: pa.RecordBatch, model: ImportanceModel) -> None:
    """ℓ_i = Σ_j x_ij log_diff_j (METHODS §1.2); under per-chunk, the mean of the document's
    128-word chunks: rescaled to a 128-word chunk when longer, the plain sum when shorter (one
    short chunk, as DSIR's chunking makes it)."""
    from curate import native
    from curate.stages.importance import ngram_count

    texts = batch.column("text")
    indptr, idx, cnt = native.ngram_features(texts, model.spec)
    ld = model.log_diff
    raw = np.array(
        [
            float((cnt[indptr[i] : indptr[i + 1]] * ld[idx[indptr[i] : indptr[i + 1]]]).sum())
            for i in range(len(texts))
        ]
    )
    sum_model = ImportanceModel(**{**model.__dict__, "length_norm": "sum"})
    w_sum, ntok = sum_model.log_weights(texts)
    ok = ~np.isnan(w_sum)
    assert np.allclose(w_sum[ok], raw[ok])
    w_chunk, _ = model.log_weights(texts)
    ref = ngram_count(np.array([128]), 2)[0]
    n = ngram_count(ntok[ok], 2)
    assert np.allclose(w_chunk[ok], np.where(n > ref, raw[ok] / n * ref, raw[ok]))
    assert (n < ref).any() and (n > ref).any(), "the batch should hold documents on both sides of a chunk"
    assert np.isnan(w_sum[ntok < 20]).all()


def test_model_round_trip_is_pickle_free(tmp_path: Path, model: ImportanceModel) -> None:
    path = model.save(tmp_path / "imp.npz")
    with np.load(path, allow_pickle=False) as z:
        assert set(z.files) == {"log_diff", "target_counts", "raw_counts", "metadata"}
    meta = json.loads((tmp_path / "imp.npz.json").read_text())
    assert meta["format"] == "curate.importance/1" and meta["hash"]["buckets"] == 512
    back = ImportanceModel.load(path)
    assert np.array_equal(back.log_diff, model.log_diff)
    assert back.min_words == 20 and back.spec == model.spec
