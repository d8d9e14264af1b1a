"""Throughput of the quality and dedup stages on real text, one core each.

Prints one JSON line: MB/s per core for heuristic signals, MinHash signatures (128
permutations), exact-dedup hashing and fastText scoring (a model trained here on the same text),
and, for comparison, datasketch's MinHash when it is installed.

    python bench/bench_quality.py [--mb 40]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import real_texts


def best(fn, repeats: int = 2) -> float:  # type: ignore[no-untyped-def]
    t = float("inf")
    for _ in range(repeats):
        s = time.perf_counter()
        fn()
        t = min(t, time.perf_counter() - s)
    return t


def main() -> None:
    from curate import native
    from curate.stages.dedup import exact_hashes
    from curate.stages.quality import FastTextScorer, FastTextSettings, train_fasttext

    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=40.0)
    args = ap.parse_args()
    texts = real_texts(int(args.mb * 1e6))
    mb = texts.buffers()[2].size / 1e6
    line: dict = {"bench": "quality_stages", "text_mb": round(mb, 1), "docs": len(texts)}
    line["heuristics_mb_s_per_core"] = round(mb / best(lambda: native.heuristic_signals(texts, threads=1)), 1)
    line["minhash128_mb_s_per_core"] = round(
        mb / best(lambda: native.minhash_signatures(texts, threads=1)), 1
    )
    line["exact_hash_mb_s_per_core"] = round(mb / best(lambda: exact_hashes(texts, threads=1)), 1)
    docs = texts.to_pylist()
    half = len(docs) // 2
    with tempfile.TemporaryDirectory() as tmp:
        train_fasttext(
            docs[:half],
            docs[half:],
            Path(tmp) / "q.bin",
            settings=FastTextSettings(epoch=1),
            max_per_class=2000,
        )
        scorer = FastTextScorer(model_path=str(Path(tmp) / "q.bin"))
        batch = pa.RecordBatch.from_arrays([texts], names=["text"])
        line["fasttext_mb_s_per_core"] = round(mb / best(lambda: scorer.annotate(batch), repeats=1), 1)
    try:
        from datasketch import MinHash

        sample = docs[: max(1, len(docs) // 20)]
        sample_mb = sum(len(d.encode()) for d in sample) / 1e6

        def run_datasketch() -> None:
            for d in sample:
                words = d.lower().split()
                m = MinHash(num_perm=128)
                m.update_batch([" ".join(words[i : i + 5]).encode() for i in range(max(1, len(words) - 4))])

        line["datasketch_minhash128_mb_s_per_core"] = round(sample_mb / best(run_datasketch, repeats=1), 2)
    except ImportError:
        line["datasketch_minhash128_mb_s_per_core"] = None
    print(json.dumps(line))


if __name__ == "__main__":
    main()
