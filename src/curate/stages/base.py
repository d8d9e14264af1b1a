"""The four stage interfaces. Stages never touch files: they see Arrow record batches.

- Annotator: `annotate(batch) -> {column: array}` (adds columns; map over shards)
- Filter: `keep(batch) -> FilterResult` (a mask plus per-reason drop counts)
- Fittable: `summarize(batch) -> S`, `merge(S, S) -> S` (associative), `finalize(S) -> stage`
  (`Paired`: two of them over one read)
- Selector: `keys(batch) -> SelectionKeys`, then a global `decide` over all shards' keys

Stages are frozen keyword-only dataclasses: cheap to pickle to workers, and introspectable
for recipes and docs. Heavy resources load in `setup()`, once per worker.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np
import pyarrow as pa

from curate.errors import SchemaError

S = TypeVar("S")


@dataclass
class StageContext:
    """What a worker tells a stage: cores it may use, the shard it is on (for messages)."""

    threads: int = 1
    shard: str = ""


class Stage(ABC):  # noqa: B024 - a common base; the four kinds below declare the abstract methods
    """Common to every stage: its name, the columns it reads and the columns it adds."""

    name: ClassVar[str] = "stage"

    @property
    def gpus(self) -> float:
        """GPUs one task of this stage asks a cluster executor (Ray) for: 0 for CPU stages."""
        return 0.0

    def requires(self) -> tuple[str, ...]:
        return ()

    def adds(self) -> dict[str, pa.DataType]:
        return {}

    def setup(self, ctx: StageContext) -> None:  # noqa: B027 - optional hook
        """Load heavy resources once per worker."""

    def validate(self, schema: pa.Schema, source: str = "input") -> None:
        missing = [c for c in self.requires() if c not in schema.names]
        if missing:
            raise SchemaError(
                f"{source}: stage {self.name!r} needs column(s) {', '.join(missing)}; "
                f"columns present: {', '.join(schema.names) or '(none)'}"
            )


class Annotator(Stage):
    @abstractmethod
    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        """New columns for `batch`, each with `batch.num_rows` rows."""


@dataclass
class FilterResult:
    keep: np.ndarray  # bool per row
    drops: dict[str, int] = field(default_factory=dict)  # reason -> rows dropped
    reasons: np.ndarray | None = None  # per row: why it was dropped ('' when kept), if known


class Filter(Stage):
    @abstractmethod
    def keep(self, batch: pa.RecordBatch) -> FilterResult:
        """Which rows to keep, and why the others were dropped."""


class Fittable(Stage, Generic[S]):
    @abstractmethod
    def summarize(self, batch: pa.RecordBatch) -> S:
        """A mergeable summary of one batch."""

    @abstractmethod
    def merge(self, a: S, b: S) -> S:
        """Combine two summaries; must be associative (tree-merge order is free)."""

    @abstractmethod
    def finalize(self, summary: S) -> Any:
        """The fitted result (a stage or model artifact)."""


@dataclass(frozen=True, kw_only=True)
class Paired(Fittable[tuple[Any, Any]]):
    """Fittable: two fittables summarised over the same batches, so one read serves both."""

    name: ClassVar[str] = "paired"
    first: Fittable[Any]
    second: Fittable[Any]

    def requires(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys((*self.first.requires(), *self.second.requires())))

    def summarize(self, batch: pa.RecordBatch) -> tuple[Any, Any]:
        return self.first.summarize(batch), self.second.summarize(batch)

    def merge(self, a: tuple[Any, Any], b: tuple[Any, Any]) -> tuple[Any, Any]:
        return self.first.merge(a[0], b[0]), self.second.merge(a[1], b[1])

    def finalize(self, summary: tuple[Any, Any]) -> tuple[Any, Any]:
        return self.first.finalize(summary[0]), self.second.finalize(summary[1])


@dataclass
class SelectionKeys:
    """Per-row sort keys and costs. Rows with key -inf are never selected."""

    key: np.ndarray  # float64, larger is better
    tie: np.ndarray  # uint64, smaller wins among equal keys
    cost: np.ndarray  # int64, what the budget counts (tokens, bytes or 1 per doc)


class Selector(Stage):
    @abstractmethod
    def keys(self, batch: pa.RecordBatch) -> SelectionKeys:
        """Keys for every row of the batch; deterministic per row, independent of layout."""


def with_columns(batch: pa.RecordBatch, columns: dict[str, pa.Array]) -> pa.RecordBatch:
    """`batch` plus `columns` (replacing same-named columns in place, appending new ones)."""
    for name, arr in columns.items():
        idx = batch.schema.get_field_index(name)
        batch = batch.set_column(idx, name, arr) if idx >= 0 else batch.append_column(name, arr)
    return batch
