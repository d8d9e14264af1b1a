"""Offline loss-based reweighting as an Annotator: log sampling weights from a loss column."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pyarrow as pa

from curate.reweight import ReweightAnnotatorSpec, log_weights
from curate.stages.base import Annotator
from curate.stages.combine import numeric_column


@dataclass(frozen=True, kw_only=True)
class ReweightLogWeight(Annotator):
    """Annotator: `reweight_log_weight` = f(h(loss)) / r with the pool's min and max loss, for
    `curate resample --by reweight_log_weight` (null where the loss is missing)."""

    name: ClassVar[str] = "reweight"
    spec: ReweightAnnotatorSpec

    def requires(self) -> tuple[str, ...]:
        return (self.spec.column,)

    def adds(self) -> dict[str, pa.DataType]:
        return {self.spec.output: pa.float64()}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        loss = numeric_column(batch, self.spec.column)
        lw = log_weights(
            loss,
            strategy=self.spec.strategy,
            temperature=self.spec.temperature,
            delta=self.spec.delta,
            lo=self.spec.lo,
            hi=self.spec.hi,
        )
        return {self.spec.output: pa.array(lw, type=pa.float64(), mask=~np.isfinite(loss))}
