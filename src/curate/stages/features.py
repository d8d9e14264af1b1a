"""Per-document hashed n-gram features as list columns, for downstream tools."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curate import native
from curate.native import HashSpec
from curate.stages.base import Annotator, StageContext
from curate.types import NGRAM_BUCKETS, NGRAM_COUNTS, TEXT


@dataclass(frozen=True, kw_only=True)
class NgramFeaturizer(Annotator):
    """Annotator: `ngram_buckets` (sorted unique bucket ids) and `ngram_counts` per document."""

    name: ClassVar[str] = "featurize"
    spec: HashSpec = field(default_factory=HashSpec)
    threads: int = 1

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {NGRAM_BUCKETS: pa.large_list(pa.uint32()), NGRAM_COUNTS: pa.large_list(pa.uint32())}

    def setup(self, ctx: StageContext) -> None:
        object.__setattr__(self, "threads", max(1, ctx.threads))

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        indptr, indices, counts = native.ngram_features(batch.column(TEXT), self.spec, threads=self.threads)
        offsets = pa.array(indptr.astype(np.int64))
        return {
            NGRAM_BUCKETS: pa.LargeListArray.from_arrays(offsets, pa.array(indices, pa.uint32())),
            NGRAM_COUNTS: pa.LargeListArray.from_arrays(offsets, pa.array(counts, pa.uint32())),
        }
