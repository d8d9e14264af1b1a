"""Reading the per-shard key spills that pass 1 writes (`engine.tasks.collect_keys`).

A decision scans every spill several times: the cut, the exact-token correction's re-cut, a
balanced cut's plain prefix and cluster pass, the report's histograms. Reading an .npz costs a
zip parse and a copy each time (a third of `select --diversity`'s decision on 98K documents),
so spills stay in memory by file version, up to a byte budget; past it they are read from disk
again, so memory stays bounded however large the pool.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict

import numpy as np

SPILL_CACHE_BYTES = 256 << 20  # ~4M rows of pass-1 keys (64 bytes a row)

_cache: OrderedDict[tuple[str, tuple[int, int, int]], dict[str, np.ndarray]] = OrderedDict()
_cached_bytes = 0
_lock = threading.Lock()


def _version(path: str) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_ino, st.st_size, st.st_mtime_ns


def read_spill(path: str) -> dict[str, np.ndarray]:
    """Every array of the spill at `path`, read-only (they may be shared with later readers)."""
    global _cached_bytes
    key = (path, _version(path))
    with _lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    for a in arrays.values():
        a.flags.writeable = False
    size = sum(a.nbytes for a in arrays.values())
    if size <= SPILL_CACHE_BYTES:
        with _lock:
            if key not in _cache:
                _cache[key] = arrays
                _cached_bytes += size
            while _cached_bytes > SPILL_CACHE_BYTES and _cache:
                _, old = _cache.popitem(last=False)
                _cached_bytes -= sum(a.nbytes for a in old.values())
    return arrays


def clear_spill_cache() -> None:
    """Drop every cached spill (tests; a long-lived process between jobs)."""
    global _cached_bytes
    with _lock:
        _cache.clear()
        _cached_bytes = 0
