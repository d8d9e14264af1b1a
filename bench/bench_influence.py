"""Per-example gradients for LESS features: one vmapped pass (torch.func) against a loop of one
backward per document, same proxy LM and documents. Prints one JSON line: documents per second
each way, the speed-up, the largest difference between the two (they must agree to 1e-5), and
whole `curate score influence` throughput (candidates/s, start-up and writes included).

    python bench/bench_influence.py [--dim 128] [--layers 2] [--context 256] [--docs 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cores, real_texts
from curate.influence import per_example_gradients, per_example_gradients_loop
from curate.proxy_lm import ProxyLMConfig, TrainSettings, build_model, train_proxy_lm


def batch_of(texts: list[str], context: int) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [list(t.encode()[: context + 1]) for t in texts]
    width = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), width, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return ids, mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    torch.manual_seed(0)
    texts = [t for t in real_texts(20_000_000).to_pylist() if len(t) > 300][: args.docs]
    model = build_model(
        ProxyLMConfig(context=args.context, dim=args.dim, layers=args.layers, heads=args.heads)
    ).eval()
    ids, mask = batch_of(texts, args.context)
    per_example_gradients(model, ids[:2], mask[:2])  # warm-up
    start = time.perf_counter()
    batched = torch.cat(
        [
            per_example_gradients(model, ids[i : i + args.batch], mask[i : i + args.batch])
            for i in range(0, len(ids), args.batch)
        ]
    )
    t_batched = time.perf_counter() - start
    for block in model.blocks:
        block.plain_attention = False  # the loop's best case: the fused attention kernel
    start = time.perf_counter()
    loop = per_example_gradients_loop(model, ids, mask)
    t_loop = time.perf_counter() - start
    out: dict[str, object] = {
        "bench": "influence",
        "cores": cores(),
        "parameters": int(batched.shape[1]),
        "docs": len(texts),
        "context": args.context,
        "vmap_docs_per_s": round(len(texts) / t_batched, 1),
        "loop_docs_per_s": round(len(texts) / t_loop, 1),
        "speedup": round(t_loop / t_batched, 2),
        "max_abs_diff": float((batched - loop).abs().max()),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        warm = work / "warm"
        train_proxy_lm(
            texts,
            warm,
            ProxyLMConfig(context=args.context, dim=args.dim, layers=args.layers, heads=args.heads),
            TrainSettings(steps=20, batch_size=4, warmup=2, checkpoints=4),
        )
        pool = work / "pool.parquet"
        pq.write_table(pa.table({"text": texts}), pool)
        task = work / "task.parquet"
        pq.write_table(pa.table({"text": texts[:8]}), task)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "curate.cli.main", "score", "influence", str(pool), str(work / "out"),
             "--model", str(warm), "--task", f"t={task}", "--no-progress"],
            check=True, capture_output=True,
        )  # fmt: skip
        out["command_candidates_per_s_4_checkpoints"] = round(len(texts) / (time.perf_counter() - start), 1)
    out["agree_1e-5"] = bool(np.isfinite(out["max_abs_diff"])) and float(out["max_abs_diff"]) < 1e-5  # type: ignore[arg-type]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
