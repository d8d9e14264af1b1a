"""Per-example gradients for LESS features, batched (layer taps, curate's default for the proxy
LM, and vmap over torch.func.grad) against a loop of one backward per document, same proxy LM and
documents. Prints one JSON line: documents per second each way, the speed-up, the largest difference between the two (they must agree to 1e-5), and
whole `curate score influence` throughput (candidates/s, start-up and writes included).

The ceiling: one plain batched forward and backward of the summed losses (the fused attention
kernel, no per-example gradients) computes strictly less than any per-example method does, so
`ceiling_speedup` (its documents/s over the loop's) bounds what batching can buy on this machine.

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
from curate.per_example import (
    per_example_gradients,
    per_example_gradients_loop,
    plain_attention,
    vmap_gradients,
)
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


def batched_backward_seconds(
    model: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, batch: int
) -> float:
    """Seconds for plain batched forward+backward passes over the documents (the ceiling)."""
    plain_attention(model, False)  # the fused kernel, as the loop and the taps use
    start = time.perf_counter()
    for i in range(0, len(ids), batch):
        x, m = ids[i : i + batch], mask[i : i + batch].float()
        logits = model(x[:, :-1]).logits
        ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        loss = ((ce * m[:, 1:]).sum(1) / m[:, 1:].sum(1).clamp_min(1.0)).sum()
        model.zero_grad()
        loss.backward()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--context", type=int, default=256)
    ap.add_argument("--docs", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--command-docs", type=int, default=256, help="candidates for the whole command")
    args = ap.parse_args()
    torch.manual_seed(0)
    long_texts = [t for t in real_texts(20_000_000).to_pylist() if len(t) > 300]
    texts = long_texts[: args.docs]
    model = build_model(
        ProxyLMConfig(context=args.context, dim=args.dim, layers=args.layers, heads=args.heads)
    ).eval()
    ids, mask = batch_of(texts, args.context)

    def batched_by(method):  # type: ignore[no-untyped-def]
        return torch.cat(
            [
                method(model, ids[i : i + args.batch], mask[i : i + args.batch])
                for i in range(0, len(ids), args.batch)
            ]
        )

    methods = {
        "taps": lambda: batched_by(per_example_gradients),  # the proxy LM's default: layer taps
        "vmap": lambda: batched_by(vmap_gradients),
        "loop": lambda: per_example_gradients_loop(model, ids, mask),
        "ceiling": lambda: batched_backward_seconds(model, ids, mask, args.batch),
    }
    for method in (per_example_gradients, vmap_gradients, per_example_gradients_loop):
        method(model, ids[:2], mask[:2])  # warm-up
    best = dict.fromkeys(methods, float("inf"))
    grads = {}
    for _ in range(args.repeats):  # interleaved, best of each: this machine's speed drifts
        for name, run in methods.items():
            start = time.perf_counter()
            grads[name] = run()
            best[name] = min(best[name], time.perf_counter() - start)
    batched, vmapped, loop = grads["taps"], grads["vmap"], grads["loop"]
    t_batched, t_vmap, t_loop, t_ceiling = best["taps"], best["vmap"], best["loop"], best["ceiling"]
    out: dict[str, object] = {
        "bench": "influence",
        "cores": cores(),
        "parameters": int(batched.shape[1]),
        "docs": len(texts),
        "context": args.context,
        "batch": args.batch,
        "taps_docs_per_s": round(len(texts) / t_batched, 1),
        "vmap_docs_per_s": round(len(texts) / t_vmap, 1),
        "loop_docs_per_s": round(len(texts) / t_loop, 1),
        "speedup": round(t_loop / t_batched, 2),
        "speedup_vmap": round(t_loop / t_vmap, 2),
        "batched_backward_docs_per_s": round(len(texts) / t_ceiling, 1),
        "ceiling_speedup": round(t_loop / t_ceiling, 2),
        "max_abs_diff": max(float((batched - loop).abs().max()), float((vmapped - loop).abs().max())),
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
        candidates = long_texts[: args.command_docs]
        pq.write_table(pa.table({"text": candidates}), pool)
        task = work / "task.parquet"
        pq.write_table(pa.table({"text": texts[:8]}), task)
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "curate.cli.main", "score", "influence", str(pool), str(work / "out"),
             "--model", str(warm), "--task", f"t={task}", "--no-progress"],
            check=True, capture_output=True,
        )  # fmt: skip
        out["command_candidates"] = len(candidates)
        out["command_candidates_per_s_4_checkpoints"] = round(
            len(candidates) / (time.perf_counter() - start), 1
        )
    out["agree_1e-5"] = bool(np.isfinite(out["max_abs_diff"])) and float(out["max_abs_diff"]) < 1e-5  # type: ignore[arg-type]
    print(json.dumps(out))


if __name__ == "__main__":
    main()
