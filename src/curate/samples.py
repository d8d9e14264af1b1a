"""A few documents a job kept and dropped (per reason), for the run's report.

Workers take the first `PER_SHARD` rows of each kind from each shard they write; the driver
keeps the first `PER_RUN` of each kind in shard order, so the sample does not depend on the
worker count. Texts are cut to `MAX_CHARS` here, never escaped: escaping is the HTML writer's.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pyarrow as pa

from curate.types import ID, TEXT

PER_SHARD = 3
PER_RUN = 6
MAX_CHARS = 600
KEPT = "kept"


def take(batch: pa.RecordBatch, into: list[dict[str, Any]], limit: int = PER_SHARD) -> None:
    """Append up to `limit - len(into)` of the batch's first rows as {id, text, chars}."""
    room = limit - len(into)
    if room <= 0 or batch.num_rows == 0 or TEXT not in batch.schema.names:
        return
    head = batch.slice(0, room)
    texts = head.column(TEXT).to_pylist()
    ids = head.column(ID).to_pylist() if ID in head.schema.names else [None] * len(texts)
    for doc_id, text in zip(ids, texts, strict=True):
        text = text if isinstance(text, str) else ""
        into.append(
            {"id": None if doc_id is None else str(doc_id), "text": text[:MAX_CHARS], "chars": len(text)}
        )


class ShardSamples:
    """A shard's samples: its first kept rows and its first dropped rows per reason."""

    def __init__(self) -> None:
        self.kept: list[dict[str, Any]] = []
        self.dropped: dict[str, list[dict[str, Any]]] = {}

    def keep(self, batch: pa.RecordBatch) -> None:
        take(batch, self.kept)

    def drop(self, batch: pa.RecordBatch, reason: str) -> None:
        take(batch, self.dropped.setdefault(reason, []))

    def to_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "dropped": {k: v for k, v in self.dropped.items() if v}}


def merge(per_shard: Iterable[dict[str, Any] | None], limit: int = PER_RUN) -> dict[str, Any]:
    """The run's samples from its shards' (in shard order): the first `limit` of each kind."""
    kept: list[dict[str, Any]] = []
    dropped: dict[str, list[dict[str, Any]]] = {}
    for s in per_shard:
        if not s:
            continue
        kept.extend(s.get("kept", [])[: max(limit - len(kept), 0)])
        for reason, docs in s.get("dropped", {}).items():
            have = dropped.setdefault(reason, [])
            have.extend(docs[: max(limit - len(have), 0)])
    return {"kept": kept, "dropped": dropped}
