"""The compiled kernel agrees exactly with the pure-Python reference, on every Arrow layout."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from curate import native
from curate.native import HashSpec
from tests import reference as ref

# Text that exercises the tokeniser: ASCII words and punctuation, separators, Latin-1 and Greek
# and Cyrillic case pairs, CJK, emoji, Unicode spaces and punctuation, and raw invalid bytes.
ALPHABET = st.sampled_from(
    [
        *list("abcXYZ019_ .,;!?-'\"\t\n()[]"),
        "É",
        "é",
        "ß",
        "Ā",
        "Ω",
        "ω",
        "Д",
        "Ё",
        "中",
        "文",
        "😀",
        "\xa0",
        "\u3000",
        "—",
        "“",
        "”",
        "…",
        "¡",
        "²",
        "×",
    ]
)
TEXTS = st.lists(st.text(alphabet=ALPHABET, max_size=60), min_size=0, max_size=12)
RAW_BYTES = st.lists(st.binary(max_size=40), min_size=0, max_size=10)


def as_binary_strings(docs: list[bytes]) -> pa.Array:
    """A string-typed array over arbitrary bytes (Arrow does not validate a view cast)."""
    return pa.array(docs, type=pa.binary()).view(pa.string())


def reference_hist(docs: list[bytes], spec: HashSpec) -> np.ndarray:
    h = np.zeros(spec.buckets, np.int64)
    for d in docs:
        for b in ref.ngram_buckets(
            d, buckets=spec.buckets, order=spec.order, lowercase=spec.lowercase, seed=spec.seed
        ):
            h[b] += 1
    return h


SPECS = st.builds(
    HashSpec,
    buckets=st.sampled_from([1, 7, 64, 10_000, 2**31 + 11]),
    order=st.integers(1, 4),
    lowercase=st.booleans(),
    seed=st.integers(0, 2**64 - 1),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=TEXTS, spec=SPECS)
def test_histogram_and_counts_match_reference(texts: list[str], spec: HashSpec) -> None:
    docs = [t.encode() for t in texts]
    arr = pa.array(texts, type=pa.string())
    if spec.buckets <= 10_000:
        assert np.array_equal(native.ngram_histogram(arr, spec, threads=2), reference_hist(docs, spec))
    counts = native.token_counts(arr, lowercase=spec.lowercase, threads=2)
    assert counts.tolist() == [len(ref.tokens(d, spec.lowercase)) for d in docs]


@settings(max_examples=150, deadline=None)
@given(docs=RAW_BYTES, spec=SPECS)
def test_invalid_utf8_matches_reference(docs: list[bytes], spec: HashSpec) -> None:
    arr = as_binary_strings(docs)
    indptr, indices, counts = native.ngram_features(arr, spec, threads=1)
    for i, d in enumerate(docs):
        expected: dict[int, int] = {}
        for b in ref.ngram_buckets(
            d, buckets=spec.buckets, order=spec.order, lowercase=spec.lowercase, seed=spec.seed
        ):
            expected[b] = expected.get(b, 0) + 1
        got = dict(
            zip(
                indices[indptr[i] : indptr[i + 1]].tolist(),
                counts[indptr[i] : indptr[i + 1]].tolist(),
                strict=True,
            )
        )
        assert got == expected


@settings(max_examples=100, deadline=None)
@given(texts=TEXTS, seed=st.integers(0, 2**64 - 1))
def test_dot_product_is_sum_of_bucket_weights(texts: list[str], seed: int) -> None:
    spec = HashSpec(buckets=97, order=2, seed=seed)
    w = np.random.default_rng(0).normal(size=97)
    sums, ntok = native.dot_weights(pa.array(texts), w, spec, threads=2)
    for i, t in enumerate(texts):
        buckets = ref.ngram_buckets(t.encode(), buckets=97, order=2, seed=seed)
        assert sums[i] == pytest.approx(float(sum(w[b] for b in buckets)), abs=1e-9)
        assert ntok[i] == len(ref.tokens(t.encode()))


def test_token_hash_matches_reference() -> None:
    for data in [b"", b"a", b"abcdefgh", b"abcdefghi", "straße".encode(), bytes(range(256))]:
        for seed in (0, 1, 2**63):
            assert native.hash_token_bytes(data, seed) == ref.token_hash(data, seed)


@settings(max_examples=60, deadline=None)
@given(
    texts=st.lists(st.one_of(st.none(), st.text(alphabet=ALPHABET, max_size=40)), max_size=20),
    start=st.integers(0, 5),
)
def test_layouts_nulls_and_slices_agree(texts: list[str | None], start: int) -> None:
    spec = HashSpec(buckets=50)
    base = pa.array(texts, type=pa.string())
    expected = native.ngram_features(base.slice(start), spec)
    variants = [
        base.cast(pa.large_string()).slice(start),
        base.cast(pa.string_view()).slice(start),
        pa.chunked_array([base.slice(start, 3), base.slice(start + 3)])
        if len(texts) > start + 3
        else base.slice(start),
    ]
    for v in variants:
        got = native.ngram_features(v, spec)
        for a, b in zip(got, expected, strict=True):
            assert np.array_equal(a, b)
    # nulls count as empty documents
    counts = native.token_counts(base.slice(start))
    assert all(counts[i] == 0 for i, t in enumerate(texts[start:]) if t is None)


def test_polars_string_view_export() -> None:
    texts = ["Hello, world!", "Ωmega straße", "", "long text " * 20]
    s = pl.Series("text", texts)
    arrow = pa.array(texts)
    spec = HashSpec(buckets=1000)
    assert np.array_equal(native.ngram_histogram(s, spec), native.ngram_histogram(arrow, spec))
    assert np.array_equal(native.token_counts(s), native.token_counts(arrow))


def test_real_text_threads_agree(python_source_texts: list[str]) -> None:
    arr = pa.array(python_source_texts, type=pa.large_string())
    spec = HashSpec(buckets=10_000)
    h1 = native.ngram_histogram(arr, spec, threads=1)
    h2 = native.ngram_histogram(arr, spec, threads=2)
    assert np.array_equal(h1, h2)
    assert h1.sum() == native.ngram_features(arr, spec, threads=2)[2].sum()
    # spot-check a real module against the reference
    doc = python_source_texts[0][:5000].encode()
    assert np.array_equal(native.ngram_histogram(pa.array([doc.decode()]), spec), reference_hist([doc], spec))


def test_rejects_non_string_arrays() -> None:
    with pytest.raises(ValueError, match="expected an Arrow string"):
        native.token_counts(pa.array([1, 2, 3]))


def test_string_hashes_are_seeded_and_stable() -> None:
    arr = pa.array(["a", "b", None, ""])
    h0 = native.string_hashes(arr, seed=0)
    assert h0[2] == h0[3]
    assert h0[0] != h0[1]
    assert not np.array_equal(h0, native.string_hashes(arr, seed=1))
    assert int(h0[0]) == ref.token_hash(b"a", 0)


@settings(max_examples=80, deadline=None)
@given(texts=TEXTS, ngram=st.integers(1, 5), seed=st.integers(0, 2**64 - 1))
def test_minhash_matches_reference(texts: list[str], ngram: int, seed: int) -> None:
    sig = native.minhash_signatures(
        pa.array(texts, pa.string()), num_perm=16, ngram=ngram, seed=seed, threads=2
    )
    assert sig.shape == (len(texts), 16) and sig.dtype == np.uint32
    for i, t in enumerate(texts):
        assert sig[i].tolist() == ref.minhash(t.encode(), num_perm=16, ngram=ngram, seed=seed)


def test_minhash_estimates_jaccard_on_real_text(python_source_texts: list[str]) -> None:
    words = python_source_texts[3].split()[:600]
    a = " ".join(words)
    b = " ".join(words[:450] + ["inserted"] * 3 + words[450:560])  # an edit and a cut
    sa = {tuple(x.encode() for x in words[i : i + 5]) for i in range(len(words) - 4)}
    wb = b.split()
    sb = {tuple(x.encode() for x in wb[i : i + 5]) for i in range(len(wb) - 4)}
    true_j = len(sa & sb) / len(sa | sb)
    sig = native.minhash_signatures(pa.array([a, b]), num_perm=512, ngram=5)
    est = float((sig[0] == sig[1]).mean())
    assert abs(est - true_j) < 0.06, (est, true_j)


# Long documents: the kernel reads 64-byte windows, classifying ASCII ones 8-16 bytes at a time
# and hashing short tokens a word at a time; these cross windows with long tokens (over 8 bytes,
# over 64), runs of separators and punctuation, and non-ASCII characters at any offset.
PIECES = st.sampled_from(
    ["the", "Quick", "BROWN_fox", "x" * 9, "y" * 70, "12345678", "1234567890123", " ", "  \n\t", ".", "...",
     "--->", "(", ")", "\x7f", "\x00", "é", "Ωmega", "中文", "😀", "\xa0", "—", "a", "Z_", "__init__"]
)  # fmt: skip
LONG_TEXTS = st.lists(st.lists(PIECES, max_size=120).map("".join), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=LONG_TEXTS, spec=SPECS)
def test_long_documents_across_windows_match_reference(texts: list[str], spec: HashSpec) -> None:
    arr = pa.array(texts, type=pa.string())
    indptr, indices, counts = native.ngram_features(arr, spec, threads=1)
    for i, t in enumerate(texts):
        d = t.encode()
        assert native.token_counts(pa.array([t]), lowercase=spec.lowercase, threads=1)[0] == len(
            ref.tokens(d, spec.lowercase)
        )
        expected: dict[int, int] = {}
        for b in ref.ngram_buckets(
            d, buckets=spec.buckets, order=spec.order, lowercase=spec.lowercase, seed=spec.seed
        ):
            expected[b] = expected.get(b, 0) + 1
        got = dict(
            zip(
                indices[indptr[i] : indptr[i + 1]].tolist(),
                counts[indptr[i] : indptr[i + 1]].tolist(),
                strict=True,
            )
        )
        assert got == expected
    for t in texts:  # MinHash shingles drop punctuation: the words-only path
        sig = native.minhash_signatures(
            pa.array([t]), num_perm=16, ngram=3, seed=spec.seed % 1000, threads=1
        )[0]
        assert sig.tolist() == ref.minhash(t.encode(), num_perm=16, ngram=3, seed=spec.seed % 1000)
