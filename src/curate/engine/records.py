"""JSON-safe copies of per-shard statistics for the manifest's shard records: numpy arrays
(such as a selection's n-gram histogram) become sparse lists and come back as arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

_ARRAY = "__ndarray__"


def encode(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        flat = value.ravel()
        nz = np.flatnonzero(flat)
        return {
            _ARRAY: value.dtype.str,
            "shape": list(value.shape),
            "idx": nz.tolist(),
            "val": flat[nz].tolist(),
        }
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def decode(value: Any) -> Any:
    if isinstance(value, dict) and _ARRAY in value:
        out = np.zeros(int(np.prod(value["shape"])), dtype=np.dtype(value[_ARRAY]))
        out[np.asarray(value["idx"], dtype=np.int64)] = value["val"]
        return out.reshape(value["shape"])
    if isinstance(value, dict):
        return {k: decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode(v) for v in value]
    return value
