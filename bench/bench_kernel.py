"""Throughput of the native hashed n-gram kernel on real text (unigram + bigram, 10k buckets).

Prints one JSON line: MB/s per core for fitting (histogram) and scoring (dot product), for
tokenising alone, and a memory-bandwidth reference (a plain pass over the same bytes), so the
gap to a bandwidth bound is visible. Run: python bench/bench_kernel.py
"""

from __future__ import annotations

import json
import platform
import time

import numpy as np

from _common import cores, real_texts
from curate import native
from curate.native import HashSpec


def best_of(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    texts = real_texts(120_000_000)
    nbytes = int(texts.buffers()[2].size)
    mb = nbytes / 1e6
    spec = HashSpec(buckets=10_000, order=2)
    weights = np.random.default_rng(0).normal(size=spec.buckets)
    data = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[:nbytes]
    out: dict[str, object] = {
        "bench": "kernel",
        "text_mb": round(mb, 1),
        "docs": len(texts),
        "cores": cores(),
        "cpu": platform.processor() or platform.machine(),
        "isa": native.isa(),
    }
    # A bandwidth reference: one read of every byte (a sum over uint64 words).
    words = data[: nbytes // 8 * 8].view(np.uint64)
    out["memory_read_mb_s"] = round(mb / best_of(lambda: words.sum()), 1)
    for threads in sorted({1, cores()}):
        tag = "1core" if threads == 1 else f"{threads}cores"
        out[f"tokenize_mb_s_{tag}"] = round(
            mb / best_of(lambda t=threads: native.token_counts(texts, threads=t)), 1
        )
        out[f"fit_mb_s_{tag}"] = round(
            mb / best_of(lambda t=threads: native.ngram_histogram(texts, spec, threads=t)), 1
        )
        out[f"score_mb_s_{tag}"] = round(
            mb / best_of(lambda t=threads: native.dot_weights(texts, weights, spec, threads=t)), 1
        )
    out["fit_mb_s_per_core"] = out["fit_mb_s_1core"]
    out["score_mb_s_per_core"] = out["score_mb_s_1core"]
    out["target_mb_s_per_core"] = 500
    print(json.dumps(out))


if __name__ == "__main__":
    main()
