"""`curate inspect`: what a dataset holds, cheaply (metadata where possible)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from curate.io.inputs import Columns, DatasetSpec, describe, discover, iter_batches, read_schema, shard_schema
from curate.io.outputs import MANIFEST
from curate.tokens import exact_counter


def inspect_dataset(
    path: DatasetSpec,
    *,
    text_column: str = "text",
    sample: int = 3,
    tokenizer: str | None = None,
    sidecars: tuple[str, ...] = (),
) -> dict[str, Any]:
    shards = discover(path)
    cols = Columns(text=text_column, sidecars=sidecars)
    schema = read_schema(shards[0])
    has_text = text_column in schema.names
    if has_text:
        schema = shard_schema(shards[0], cols)  # canonical, with the sidecars' columns
    counter = exact_counter(tokenizer) if tokenizer else None
    rows = 0
    text_bytes = 0
    nulls = 0
    tokens = 0
    have_n_tokens = "n_tokens" in schema.names
    samples: list[dict[str, Any]] = []
    for s in shards:
        columns = (
            None
            if len(samples) < sample
            else ([text_column] if has_text else []) + (["n_tokens"] if have_n_tokens else [])
        )
        for b in iter_batches(s, cols, columns=columns) if has_text else _plain(s):
            rows += b.num_rows
            if has_text:
                t = b.column("text")
                nulls += t.null_count
                text_bytes += int(pc.sum(pc.binary_length(t)).as_py() or 0)
                if counter is not None:
                    tokens += int(counter.count(t).sum())
            if have_n_tokens and counter is None:
                tokens += int(pc.sum(b.column("n_tokens")).as_py() or 0)
            if len(samples) < sample:
                for r in b.slice(0, sample - len(samples)).to_pylist():
                    samples.append(
                        {
                            k: (v[:300] + "…" if isinstance(v, str) and len(v) > 300 else v)
                            for k, v in r.items()
                        }
                    )
    info: dict[str, Any] = {
        "path": describe(path),
        "shards": len(shards),
        "bytes_on_disk": sum(s.size for s in shards),
        "schema": [(f.name, str(f.type)) for f in schema],
        "rows": rows,
        "text_bytes": text_bytes if has_text else None,
        "null_text": nulls if has_text else None,
        "tokens": tokens if (counter is not None or have_n_tokens) else None,
        "token_counter": counter.describe() if counter else ("n_tokens column" if have_n_tokens else None),
        "sample": samples,
    }
    manifest = Path(path) / MANIFEST if isinstance(path, str) else None
    if manifest is not None and manifest.exists():
        state = json.loads(manifest.read_text())
        info["manifest"] = {"complete": bool(state.get("complete")), "summary": state.get("summary")}
    return info


def _plain(shard: Any) -> Any:
    from curate.io.inputs import iter_raw_batches

    yield from iter_raw_batches(shard)


__all__ = ["inspect_dataset", "pa"]
