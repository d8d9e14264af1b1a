"""Gumbel top-k resampling without replacement to a budget (METHODS §1.4 and §10).

key_i = log w_i + G_i, with G_i = -log(-log u_i) and u_i = (hash64(seed, id_i) + 0.5) / 2^64,
so the draw depends only on (seed, id, weight): not on shard layout, worker count or order.
The selection is the shortest prefix, in key order, whose cost reaches the budget ("cover");
"under" stops before the crossing document. Per-shard prefixes merged and cut again give the
exact global prefix (§10.5), which is how the executor runs it with memory O(selected).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.budget import Budget
from curate.errors import SchemaError
from curate.stages.base import Fittable, SelectionKeys, Selector
from curate.tokens import utf8_lengths
from curate.types import ID, N_TOKENS, TEXT

Policy = Literal["cover", "under"]
POLICIES: tuple[str, ...] = ("cover", "under")
_TWO64 = float(2**64)
# A salt so that the same seed gives independent streams for noise and for id fingerprints.
_NOISE_SALT = 0x5EED_0F_6A_B8E1


def document_ids(batch: pa.RecordBatch, *, seed: int = 0) -> np.ndarray:
    """A 64-bit fingerprint per row: of `id` when present (any type), else of the text."""
    if ID in batch.schema.names:
        col = batch.column(ID)
        if not (
            pa.types.is_string(col.type) or pa.types.is_large_string(col.type) or pa.types.is_binary(col.type)
        ):
            col = pc.cast(col, pa.string())
    elif TEXT in batch.schema.names:
        col = batch.column(TEXT)
    else:
        raise SchemaError("rows need an `id` or a `text` column to be sampled reproducibly")
    return native.string_hashes(col, seed=seed)


def hash_uniform(ids: np.ndarray, seed: int) -> np.ndarray:
    """A uniform in (0, 1) per hashed id: reproducible and independent of processing order."""
    mixed = _mix(ids ^ np.uint64((seed * 0x9E3779B97F4A7C15 + _NOISE_SALT) % 2**64))
    u = (mixed.astype(np.float64) + 0.5) / _TWO64
    return np.clip(u, 1e-300, 1 - 2**-53)  # float64 rounding of values near 2^64


def gumbel_noise(ids: np.ndarray, seed: int) -> np.ndarray:
    """Gumbel(0, 1) noise from hashed ids: reproducible and independent of processing order."""
    return -np.log(-np.log(hash_uniform(ids, seed)))


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser over uint64 arrays."""
    x = x.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


@dataclass(frozen=True, kw_only=True)
class GumbelTopK(Selector):
    """Selector: weighted sampling without replacement on a log-weight column, to a budget.

    Rows whose weight is null or NaN are never selected. `top_k` drops the noise (deterministic
    top-k, DSIR's ablation). `temperature` divides the log weights first (1 = DSIR).
    """

    name: ClassVar[str] = "resample"
    by: str
    budget: Budget
    seed: int = 0
    top_k: bool = False
    temperature: float = 1.0
    policy: Policy = "cover"
    tokens_column: str = N_TOKENS

    def requires(self) -> tuple[str, ...]:
        cols = [self.by]
        if self.budget.unit in ("tokens", "fraction"):
            cols.append(self.tokens_column)
        if self.budget.unit == "bytes":
            cols.append(TEXT)
        return tuple(cols)

    def cost(self, batch: pa.RecordBatch) -> np.ndarray:
        if self.budget.unit in ("tokens", "fraction"):
            col = batch.column(self.tokens_column)
            return np.asarray(pc.fill_null(col, 0).to_numpy(zero_copy_only=False), dtype=np.int64)
        if self.budget.unit == "bytes":
            return utf8_lengths(batch.column(TEXT))
        return np.ones(batch.num_rows, np.int64)

    def keys(self, batch: pa.RecordBatch) -> SelectionKeys:
        col = batch.column(self.by)
        if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type)):
            raise SchemaError(
                f"column {self.by!r} has type {col.type}; resampling needs a numeric log-weight column"
            )
        logw = np.asarray(
            pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64
        )
        ids = document_ids(batch)
        key = logw / self.temperature
        if not self.top_k:
            key = key + gumbel_noise(ids, self.seed)
        key = np.where(np.isfinite(key), key, -np.inf)
        return SelectionKeys(key=key, tie=ids, cost=self.cost(batch))


def order_by_key(key: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Indices sorted by (key desc, tie asc)."""
    return np.lexsort((tie, -key))


def prefix_mask(
    key: np.ndarray, tie: np.ndarray, cost: np.ndarray, budget: float, policy: str = "cover"
) -> np.ndarray:
    """Boolean mask of the budget prefix in (key desc, tie asc) order; -inf keys never count.

    cover: every item whose better-ranked items cost less than the budget (reaches >= budget);
    under: every item that still fits (total stays <= budget).
    """
    n = len(key)
    mask = np.zeros(n, dtype=bool)
    if n == 0:
        return mask
    order = order_by_key(key, tie)
    eligible = np.isfinite(key[order])
    c = np.where(eligible, cost[order], 0).astype(np.float64)
    before = np.cumsum(c) - c
    if policy == "cover":
        take = before < budget
    elif policy == "under":
        take = before + c <= budget
    elif policy == "local":
        take = before <= budget
    else:
        raise ValueError(f"unknown policy {policy!r}")
    take &= eligible
    mask[order[take]] = True
    return mask


# ------------------------------------------------------------------------- seeded text sample
@dataclass
class TextSample:
    """The sampled rows' texts and keys (their hash uniforms), or `overflow` past the cap."""

    texts: list[pa.Array]
    keys: list[np.ndarray]
    share: float
    rows: int = 0  # rows seen, sampled or not
    nbytes: int = 0
    overflow: bool = False


@dataclass(frozen=True, kw_only=True)
class HashTextSample(Fittable[TextSample]):
    """Fittable: the texts of the rows whose id hashes below `share` (so the sample depends on
    neither the order nor the layout of the rows), held up to `max_bytes` of text."""

    name: ClassVar[str] = "text_sample"
    share: float
    salt: int
    max_bytes: int

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def chosen(self, batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
        """(rows in the sample, their keys)."""
        u = hash_uniform(document_ids(batch), self.salt)
        rows = np.flatnonzero(u < self.share)
        return rows, u[rows]

    def summarize(self, batch: pa.RecordBatch) -> TextSample:
        rows, keys = self.chosen(batch)
        texts = pc.cast(batch.column(TEXT).take(rows), pa.large_string())
        return TextSample([texts], [keys], self.share, batch.num_rows, texts.nbytes)

    def merge(self, a: TextSample, b: TextSample) -> TextSample:
        nbytes, rows = a.nbytes + b.nbytes, a.rows + b.rows
        if a.overflow or b.overflow or nbytes > self.max_bytes:
            return TextSample([], [], self.share, rows, nbytes, overflow=True)
        return TextSample(a.texts + b.texts, a.keys + b.keys, self.share, rows, nbytes)

    def finalize(self, summary: TextSample) -> TextSample:
        return summary
