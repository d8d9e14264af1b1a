"""DSIR importance weights: bag-of-hashed-n-gram models of the target and the raw pool.

log_diff_j = log(p_j + 1e-8) - log(q_j + 1e-8), with p the target's bucket distribution
(optionally add-alpha smoothed) and q the raw pool's; a document's log importance weight is
sum_j x_ij * log_diff_j (METHODS §1.2), computed by the native kernel without materialising x.

Length treatment (METHODS §1.7): the raw sum grows with document length, so by default a long
document's weight is rescaled to a fixed reference length: `per-chunk` = (sum / n_ngrams) *
min(n_ngrams, n_ngrams of a `ref_words`-word chunk), i.e. the mean of the weights of the
document's 128-word chunks, and for a document shorter than a chunk its plain sum (it is one
short chunk, as the paper's chunking makes it; scaling it up to a full chunk made short
documents as decisive as long ones and let long off-target documents into selections toward
short entries). This keeps the weights on the scale of the paper's chunks, where Gumbel noise
still matters.
`sum` is DSIR's raw sum. See docs/selecting.md for the measurement behind the default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa

from curate import arrow_ops, native
from curate.errors import StageError
from curate.native import HashSpec
from curate.stages.base import Annotator, Fittable, StageContext
from curate.tokens import TokenCounter
from curate.types import DSIR_LOG_WEIGHT, N_TOKENS, TEXT

LengthNorm = Literal["per-chunk", "sum"]
LENGTH_NORMS: tuple[str, ...] = ("per-chunk", "sum")
ARTIFACT_FORMAT = "curate.importance/1"
EPS = 1e-8


def ngram_count(n_tokens: np.ndarray, order: int) -> np.ndarray:
    """Number of n-grams of orders 1..order in documents of n_tokens tokens."""
    n = np.asarray(n_tokens, dtype=np.int64)
    return sum(np.maximum(n - k + 1, 0) for k in range(1, order + 1))  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True)
class NgramHistogram(Fittable[np.ndarray]):
    """Fittable: the summed bucket histogram of a corpus (target or raw)."""

    name: ClassVar[str] = "ngram_histogram"
    spec: HashSpec = field(default_factory=HashSpec)
    threads: int = 1

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def summarize(self, batch: pa.RecordBatch) -> np.ndarray:
        return native.ngram_histogram(batch.column(TEXT), self.spec, threads=self.threads)

    def merge(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return a + b

    def finalize(self, summary: np.ndarray) -> np.ndarray:
        return summary


@dataclass
class HistogramSummary:
    """A corpus' bucket histogram, its documents and bytes, and a few of its texts (for
    calibrating a token estimate)."""

    hist: np.ndarray
    docs: int = 0
    bytes: int = 0
    sample: list[str] = field(default_factory=list)
    sample_sizes: list[int] = field(default_factory=list)  # UTF-8 bytes of each sampled text
    sample_full: bool = False  # a text met the byte cap: nothing after it joins the sample


@dataclass(frozen=True, kw_only=True)
class NgramSample(Fittable[HistogramSummary]):
    """Fittable: the histogram of `NgramHistogram` plus counts and, with `sample_docs`, the
    non-empty texts among each batch's first `sample_docs` rows, those that end within
    `unit_sample_bytes` (always the first); merged in order, the texts that end within
    `max_sample` texts and `max_sample_bytes` UTF-8 bytes. The byte caps bound what calibration
    costs on a pool of long documents (1,000 books would be ~300 MB through BPE)."""

    name: ClassVar[str] = "ngram_sample"
    spec: HashSpec = field(default_factory=HashSpec)
    threads: int = 1
    sample_docs: int = 0
    max_sample: int = 1_000
    unit_sample_bytes: int | None = None
    max_sample_bytes: int | None = None

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def summarize(self, batch: pa.RecordBatch) -> HistogramSummary:
        texts = batch.column(TEXT)
        lengths = arrow_ops.binary_length(texts)
        summary = HistogramSummary(
            hist=native.ngram_histogram(texts, self.spec, threads=self.threads),
            docs=batch.num_rows,
            bytes=arrow_ops.total(lengths),
        )
        if self.sample_docs:
            sizes = arrow_ops.fill_null(lengths.slice(0, self.sample_docs), 0).to_numpy()
            rows = np.flatnonzero(sizes > 0)
            n, _ = _prefix(sizes[rows].tolist(), len(rows), self.unit_sample_bytes)
            n, summary.sample_full = _prefix(sizes[rows[:n]].tolist(), self.max_sample, self.max_sample_bytes)
            rows = rows[:n]
            # only the sampled rows as Python strings: a whole batch would cost more than its histogram
            head = texts.slice(0, int(rows[-1]) + 1).to_pylist() if n else []
            summary.sample, summary.sample_sizes = [head[i] for i in rows], sizes[rows].tolist()
        return summary

    def merge(self, a: HistogramSummary, b: HistogramSummary) -> HistogramSummary:
        sample, sizes, full = a.sample, a.sample_sizes, a.sample_full
        if not full and b.sample:
            sizes = a.sample_sizes + b.sample_sizes
            n, full = _prefix(sizes, self.max_sample, self.max_sample_bytes)
            # b met its own cap inside this prefix: later texts stay out here too (associative)
            full = full or (b.sample_full and n == len(sizes))
            sample, sizes = (a.sample + b.sample)[:n], sizes[:n]
        return HistogramSummary(
            hist=a.hist + b.hist,
            docs=a.docs + b.docs,
            bytes=a.bytes + b.bytes,
            sample=sample,
            sample_sizes=sizes,
            sample_full=full,
        )

    def finalize(self, summary: HistogramSummary) -> np.ndarray:
        return summary.hist


def _prefix(sizes: list[int], max_docs: int, max_bytes: int | None) -> tuple[int, bool]:
    """How many of `sizes` (in order) end within `max_docs` texts and `max_bytes` bytes (always
    the first), and whether a cap stopped it (nothing after them may join)."""
    n = min(len(sizes), max_docs)
    if max_bytes is None or n == 0:
        return n, False
    ends = np.cumsum(sizes[:n])
    within = max(1, int(np.searchsorted(ends, max_bytes, side="right")))
    return min(n, within), within < len(sizes)


@dataclass(frozen=True, kw_only=True)
class ImportanceModel:
    """A fitted DSIR estimator; saved as npz (arrays) with JSON metadata, never pickle."""

    spec: HashSpec
    target_counts: np.ndarray
    raw_counts: np.ndarray
    target_laplace: float = 0.0
    length_norm: LengthNorm = "per-chunk"
    ref_words: int = 128
    min_words: int = 100
    bytes_per_token: float = 0.0  # calibrated token estimate for the raw pool (0: none)
    tokens_per_word: float = 0.0
    token_calibration: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.length_norm not in LENGTH_NORMS:
            raise StageError(f"unknown length_norm {self.length_norm!r}; allowed: {', '.join(LENGTH_NORMS)}")

    # ------------------------------------------------------------------ distributions
    @property
    def target_dist(self) -> np.ndarray:
        c = self.target_counts.astype(np.float64) + self.target_laplace
        return c / max(c.sum(), 1e-300)

    @property
    def raw_dist(self) -> np.ndarray:
        c = self.raw_counts.astype(np.float64)
        return c / max(c.sum(), 1e-300)

    @property
    def log_diff(self) -> np.ndarray:
        return np.log(self.target_dist + EPS) - np.log(self.raw_dist + EPS)

    # ------------------------------------------------------------------ scoring
    def log_weights(
        self, texts: pa.Array, *, threads: int = 1, log_diff: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(log weight, tokens) per document; NaN where the document is null, empty or too short."""
        ld = self.log_diff if log_diff is None else log_diff
        sums, ntok = native.dot_weights(texts, ld, self.spec, threads=threads)
        return self.normalized(sums, ntok), ntok

    def normalized(self, sums: np.ndarray, ntok: np.ndarray) -> np.ndarray:
        """Log weights from the documents' summed log ratios and token counts (length treatment,
        NaN below min_words)."""
        ngrams = ngram_count(ntok, self.spec.order)
        if self.length_norm == "per-chunk":
            ref = float(ngram_count(np.array([self.ref_words]), self.spec.order)[0])
            with np.errstate(invalid="ignore", divide="ignore"):
                # a document shorter than a chunk is one short chunk: its sum, never scaled up
                weights = sums / ngrams * np.minimum(ngrams, ref)
        else:
            weights = sums.copy()
        weights[(ntok < max(self.min_words, 1))] = np.nan
        return weights

    # ------------------------------------------------------------------ artifact
    def metadata(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "kernel_version": native.KERNEL_VERSION,
            "hash": {
                "buckets": self.spec.buckets,
                "order": self.spec.order,
                "lowercase": self.spec.lowercase,
                "seed": self.spec.seed,
            },
            "target_laplace": self.target_laplace,
            "length_norm": self.length_norm,
            "ref_words": self.ref_words,
            "min_words": self.min_words,
            "bytes_per_token": self.bytes_per_token,
            "tokens_per_word": self.tokens_per_word,
            "token_calibration": self.token_calibration,
            "target_features": int(self.target_counts.sum()),
            "raw_features": int(self.raw_counts.sum()),
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        """Write `<path>` (npz: log_diff, target_counts, raw_counts, metadata) and `<path>.json`."""
        from curate.io.outputs import write_bytes_atomic

        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = self.metadata()
        import io

        buf = io.BytesIO()
        np.savez(
            buf,
            log_diff=self.log_diff,
            target_counts=self.target_counts,
            raw_counts=self.raw_counts,
            metadata=np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        )
        write_bytes_atomic(path, buf.getvalue())
        write_bytes_atomic(path.with_name(path.name + ".json"), json.dumps(meta, indent=2).encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> ImportanceModel:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                meta = json.loads(bytes(z["metadata"]).decode())
                target_counts = np.asarray(z["target_counts"], dtype=np.int64)
                raw_counts = np.asarray(z["raw_counts"], dtype=np.int64)
        except FileNotFoundError as exc:
            raise StageError(
                f"{path}: no such importance model", hint="create one with `curate importance fit`"
            ) from exc
        except (OSError, ValueError, KeyError) as exc:
            raise StageError(
                f"{path}: not a curate importance model ({exc})",
                hint="create one with `curate importance fit`",
            ) from exc
        if meta.get("format") != ARTIFACT_FORMAT:
            raise StageError(f"{path}: unsupported importance model format {meta.get('format')!r}")
        if meta.get("kernel_version") != native.KERNEL_VERSION:
            raise StageError(
                f"{path}: fitted with kernel version {meta.get('kernel_version')}, this curate has {native.KERNEL_VERSION}",
                hint="refit the model: hashes differ between kernel versions",
            )
        h = meta["hash"]
        return cls(
            spec=HashSpec(buckets=h["buckets"], order=h["order"], lowercase=h["lowercase"], seed=h["seed"]),
            target_counts=target_counts,
            raw_counts=raw_counts,
            target_laplace=meta["target_laplace"],
            length_norm=meta["length_norm"],
            ref_words=meta["ref_words"],
            min_words=meta["min_words"],
            bytes_per_token=meta["bytes_per_token"],
            tokens_per_word=meta.get("tokens_per_word", 0.0),
            token_calibration=meta["token_calibration"],
            provenance=meta.get("provenance", {}),
        )


@dataclass(frozen=True, kw_only=True)
class ImportanceScorer(Annotator):
    """Annotator: `dsir_log_weight` (null when not selectable) and `n_tokens`; with `embedder`
    (a HashedEmbedder), also its `embedding`, from the same tokenisation when their hashing
    differs only in size (`native.fusable`)."""

    name: ClassVar[str] = "importance"
    model: ImportanceModel
    counter: TokenCounter
    threads: int = 1
    embedder: Any = None

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        extra = self.embedder.adds() if self.embedder is not None else {}
        return {DSIR_LOG_WEIGHT: pa.float64(), N_TOKENS: pa.int64(), **extra}

    def setup(self, ctx: StageContext) -> None:
        object.__setattr__(self, "threads", max(1, ctx.threads))
        if getattr(self, "_log_diff", None) is None:  # set up once per process, not per shard
            object.__setattr__(self, "_log_diff", self.model.log_diff)
        if self.embedder is not None:
            self.embedder.setup(ctx)

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        texts = batch.column(TEXT)
        log_diff = getattr(self, "_log_diff", None)
        ld = self.model.log_diff if log_diff is None else log_diff
        extra: dict[str, pa.Array] = {}
        emb = self.embedder
        if emb is not None and native.fusable(self.model.spec, emb.spec):
            sums, words, vectors = native.score_and_embed(
                texts, ld, self.model.spec, emb.idf, emb.spec, dim=emb.dim, nnz=emb.nnz, proj_seed=emb.seed,
                threads=self.threads,
            )  # fmt: skip
            weights = self.model.normalized(sums, words)
            extra = emb.columns(vectors)
        else:
            weights, words = self.model.log_weights(texts, threads=self.threads, log_diff=ld)
            extra = emb.annotate(batch) if emb is not None else {}
        tokens = self.counter.count(texts, words=words)
        valid = arrow_ops.fill_null(arrow_ops.greater(arrow_ops.binary_length(texts), 0), False)
        valid = valid.to_numpy(zero_copy_only=False)
        weights[~valid] = np.nan
        return {
            DSIR_LOG_WEIGHT: pa.array(weights, mask=np.isnan(weights), type=pa.float64()),
            N_TOKENS: pa.array(tokens, type=pa.int64()),
            **extra,
        }
