"""LM scoring throughput: curate's batched scorer vs a naive loop, same model, same documents.

The naive baseline is what a first script does: tokenise one document, run one forward pass per
document (one per window for documents longer than the context), no length sorting, no padding.
curate's scorer tokenises on a background thread, sorts by length, packs token-budget batches.
Both score the same windows, so their losses must agree (the line reports the largest gap).

The model is a GPT-2-shaped transformer built here with random weights (throughput does not
depend on the weights) and a byte-level BPE tokenizer trained on the same text; `--model` scores
with any local causal-LM folder instead, `--proxy` with a `curate train lm` byte-level model.
Documents are real text (Python sources and docs, Debian docs), shuffled, cut to `--max-chars`.

    python bench/bench_lm.py [--docs 600] [--naive-docs 200] [--device auto] [--precision auto]

Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import pyarrow as pa

sys.path.insert(0, str(Path(__file__).parent))
from _common import cores, real_texts


def build_gpt2(folder: Path, texts: list[str], layers: int, width: int, context: int) -> None:
    import torch
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts[:500], vocab_size=8192, min_frequency=2, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tok.save_pretrained(folder)
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=context, n_embd=width, n_layer=layers, n_head=max(1, width // 64)
    )
    GPT2LMHeadModel(cfg).save_pretrained(folder)


def naive_losses(scorer, texts: list[str]) -> tuple[list[float], int]:  # type: ignore[no-untyped-def]
    """One forward pass per document (per window when longer than the context), no batching."""
    import torch

    from curate.stages.lm import context_length, windows

    tok, model, device = scorer._tokenizer, scorer._model, scorer._device
    window = context_length(model)
    out, scored = [], 0
    for t in texts:
        ids = tok([t], add_special_tokens=False)["input_ids"][0]
        nll, n = 0.0, 0
        for seg in windows(0, ids, window, window // 2):
            x = torch.tensor([seg.ids], device=device)
            with torch.inference_mode():
                logits = model(input_ids=x).logits[0, :-1].float()
            token_nll = torch.nn.functional.cross_entropy(logits, x[0, 1:], reduction="none")
            nll += float(token_nll[seg.first_scored - 1 :].sum())
            n += len(seg.ids) - seg.first_scored
        out.append(nll / n if n else float("nan"))
        scored += n
    return out, scored


def main() -> None:
    import numpy as np
    import torch

    from curate.stages.lm import LMScorer

    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=600)
    ap.add_argument("--naive-docs", type=int, default=200, help="documents the (slow) baseline scores")
    ap.add_argument("--max-chars", type=int, default=6000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--context", type=int, default=512)
    ap.add_argument("--model", default=None, help="a local causal-LM folder instead of the built one")
    ap.add_argument("--proxy", action="store_true", help="train a tiny `curate train lm` model instead")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--max-batch-tokens", type=int, default=None)
    args = ap.parse_args()

    texts = [t for t in real_texts(40_000_000).to_pylist() if t.strip()]
    random.Random(0).shuffle(texts)
    texts = [t[: args.max_chars] for t in texts[: args.docs]]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else Path(tmp) / "model"
        if args.proxy:
            from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm

            train_proxy_lm(
                texts,
                folder,
                ProxyLMConfig(
                    context=args.context, dim=args.width, layers=args.layers, heads=max(1, args.width // 64)
                ),
                TrainSettings(steps=1),
            )
        elif not args.model:
            build_gpt2(folder, texts, args.layers, args.width, args.context)
        scorer = LMScorer(
            model_path=str(folder),
            device=args.device,
            precision=args.precision,
            max_batch_tokens=args.max_batch_tokens,
        )
        scorer.setup(None)  # type: ignore[arg-type]
        sync = torch.cuda.synchronize if scorer._device.startswith("cuda") else (lambda: None)  # type: ignore[attr-defined]
        scorer.annotate(pa.RecordBatch.from_pydict({"text": texts[:16]}))  # warm-up
        sync()
        start = time.perf_counter()
        batched = []
        tokens = 0
        for i in range(0, len(texts), 1024):
            out = scorer.annotate(pa.RecordBatch.from_pydict({"text": texts[i : i + 1024]}))
            batched.extend(out["lm_loss"].to_pylist())
            tokens += sum(out["lm_tokens"].to_pylist())
        sync()
        curate_s = time.perf_counter() - start
        sub = texts[: args.naive_docs]
        start = time.perf_counter()
        naive, naive_tokens = naive_losses(scorer, sub)
        sync()
        naive_s = time.perf_counter() - start
        gap = float(
            np.nanmax(np.abs(np.array(naive, dtype=float) - np.array(batched[: len(sub)], dtype=float)))
        )
        params = sum(p.numel() for p in scorer._model.parameters())  # type: ignore[attr-defined]
    line = {
        "bench": "lm_scoring",
        "device": scorer._device,  # type: ignore[attr-defined]
        "gpu": torch.cuda.get_device_name() if scorer._device.startswith("cuda") else None,  # type: ignore[attr-defined]
        "precision": args.precision,
        "cores": cores(),
        "torch_threads": torch.get_num_threads(),
        "model": args.model or ("proxy-byte-lm" if args.proxy else "gpt2-random"),
        "parameters": params,
        "docs": len(texts),
        "tokens": tokens,
        "mean_tokens_per_doc": round(tokens / len(texts), 1),
        "max_batch_tokens": scorer.batch_tokens(),
        "curate_docs_per_s": round(len(texts) / curate_s, 1),
        "curate_tokens_per_s": round(tokens / curate_s),
        "naive_docs": len(sub),
        "naive_docs_per_s": round(len(sub) / naive_s, 1),
        "naive_tokens_per_s": round(naive_tokens / naive_s),
        "speedup_tokens_per_s": round((tokens / curate_s) / (naive_tokens / naive_s), 2),
        "max_loss_gap_vs_naive": gap,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
