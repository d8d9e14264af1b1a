"""Output codec for curate's shards: write and read speed against size on real text, for no
compression, snappy, lz4 and zstd levels. Prints one JSON line.

    python bench/bench_codec.py [--mb 100]

Each codec writes the same table (a text column of real documents plus an id and two score
columns, as a scored shard holds) in 64K-row groups from one thread, as curate's writer does.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from _common import real_texts

CODECS = [("none", None), ("snappy", None), ("lz4", None), ("zstd", 1), ("zstd", 3), ("zstd", 6), ("zstd", 9)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=100.0)
    args = ap.parse_args()
    texts = real_texts(int(args.mb * 1e6))
    n = len(texts)
    rng = np.random.default_rng(0)
    table = pa.table(
        {
            "id": pa.array([f"doc-{i:08d}" for i in range(n)]),
            "text": texts.cast(pa.string()),
            "dsir_log_weight": rng.normal(size=n),
            "n_tokens": rng.integers(10, 5000, size=n),
        }
    )
    text_mb = sum(len(t.encode()) for t in texts.to_pylist() if t) / 1e6
    rows = []
    with tempfile.TemporaryDirectory(prefix="curate-codec-") as tmp:
        for codec, level in CODECS:
            path = Path(tmp) / f"{codec}-{level}.parquet"
            t0 = time.process_time()
            pq.write_table(
                table,
                path,
                compression=codec,
                compression_level=level,
                row_group_size=65536,
                use_dictionary=["id"],
            )
            write_s = time.process_time() - t0
            t0 = time.process_time()
            pq.read_table(path, use_threads=False)
            read_s = time.process_time() - t0
            size = path.stat().st_size / 1e6
            rows.append(
                {
                    "codec": codec if level is None else f"{codec}:{level}",
                    "size_mb": round(size, 1),
                    "ratio": round(text_mb / size, 2),
                    "write_mb_per_cpu_s": round(text_mb / write_s, 1),
                    "read_mb_per_cpu_s": round(text_mb / read_s, 1),
                }
            )
    print(json.dumps({"bench": "codec", "text_mb": round(text_mb, 1), "docs": n, "rows": rows}))


if __name__ == "__main__":
    main()
