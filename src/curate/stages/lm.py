"""Language-model scores: per-document mean token cross-entropy, perplexity, EL2N (METHODS §7).

A local Hugging Face causal-LM folder is loaded once per worker (offline, `local_files_only`).
Documents are tokenised without special tokens; the first token of a document has no
prediction, so a document of n tokens scores n − 1. Long documents are scored in strided
windows of the model's context: each window scores only the tokens that the previous windows
did not, with the overlap as context, so no token is counted twice. Windows are sorted by length
and packed into batches of at most `max_batch_tokens` (padded length x rows); padding is masked,
so a document's loss does not depend on its batch. fp32 on CPU, bf16 autocast on CUDA; a CUDA
out-of-memory error splits the batch in two and retries.

EL2N per token is ||softmax(z) − e_y||₂ with ||p − e_y||² = Σp² − 2p_y + 1 and
Σp² = exp(LSE(2z) − 2·LSE(z)), so no vocabulary-sized probability buffer is kept per token;
the document score is the mean over its scored tokens.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa

from curate.errors import StageError
from curate.stages.base import Annotator, StageContext
from curate.stages.lm_models import _torch, check_model_folder, context_length, load_causal_lm, resolve_device
from curate.types import TEXT

__all__ = ["LMScorer", "check_model_folder", "context_length", "load_causal_lm", "resolve_device"]

LM_LOSS, LM_PERPLEXITY, LM_TOKENS, LM_EL2N = "lm_loss", "lm_perplexity", "lm_tokens", "lm_el2n"


T = TypeVar("T")
Collated = tuple[Any, Any, Any]  # (input ids, attention mask, scored-position mask), CPU tensors


def prefetch(items: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Yield `items` computed ahead on a background thread (at most `depth` waiting)."""
    q: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(entry: tuple[bool, Any]) -> bool:
        while not stop.is_set():
            try:
                q.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put((True, item)):
                    return
            put((True, done))
        except BaseException as exc:  # handed to the consumer, raised there
            put((False, exc))

    thread = threading.Thread(target=produce, name="curate-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            ok, item = q.get()
            if not ok:
                raise item
            if item is done:
                return
            yield item
    finally:
        stop.set()
        thread.join()


@dataclass
class Segment:
    doc: int
    ids: list[int]
    first_scored: int  # positions < first_scored are context only


def windows(doc: int, ids: list[int], window: int, stride: int) -> list[Segment]:
    """Strided windows scoring every token from position 1 exactly once."""
    if len(ids) <= window:
        return [Segment(doc, ids, 1)]
    out = []
    scored_to = 1  # next position that still needs a prediction
    start = 0
    while scored_to < len(ids):
        end = min(start + window, len(ids))
        out.append(Segment(doc, ids[start:end], scored_to - start))
        scored_to = end
        if end == len(ids):
            break
        start = end - (window - stride)
    return out


def split_head(model: Any) -> tuple[Callable[[Any, Any], Any], Callable[[Any], Any]] | None:
    """(backbone, head) with head(backbone(ids, mask)) == model(ids, mask).logits, checked on a probe.

    Scoring then applies the vocabulary projection only where a loss is needed. Models whose
    forward does more than that projection (logit soft-capping, scaling) fail the probe and are
    scored through their plain forward."""
    torch = _torch()
    if hasattr(model, "curate_split"):
        return model.curate_split()
    base = getattr(model, "base_model", None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if base is None or base is model or head is None:
        return None

    def backbone(ids: Any, attention: Any) -> Any:
        return base(input_ids=ids, attention_mask=attention).last_hidden_state

    device = next(model.parameters()).device
    vocab = int(getattr(model.config, "vocab_size", 2) or 2)
    probe = (torch.arange(8, device=device) * 7919 % vocab)[None]
    ones = torch.ones_like(probe)
    try:
        with torch.inference_mode():
            full = model(input_ids=probe, attention_mask=ones).logits.float()
            parts = head(backbone(probe, ones)).float()
    except (AttributeError, TypeError, RuntimeError):
        return None
    if full.shape != parts.shape or not torch.allclose(full, parts, atol=1e-4, rtol=1e-4):
        return None
    return backbone, head


def collate(chunk: list[Segment], pin: bool) -> Collated:
    """Right-padded id, attention and scored-position tensors for one batch of windows."""
    torch = _torch()
    width = max(len(s.ids) for s in chunk)
    ids = np.zeros((len(chunk), width), np.int64)
    lengths = np.fromiter((len(s.ids) for s in chunk), np.int64, len(chunk))
    first = np.fromiter((s.first_scored for s in chunk), np.int64, len(chunk))
    for r, s in enumerate(chunk):
        ids[r, : len(s.ids)] = s.ids
    pos = np.arange(width)
    attention = pos[None, :] < lengths[:, None]
    scored = attention & (pos[None, :] >= first[:, None])
    out = (torch.from_numpy(ids), torch.from_numpy(attention.astype(np.int64)), torch.from_numpy(scored))
    return tuple(t.pin_memory() for t in out) if pin else out


_LOADED: dict[tuple[str, str, int], Any] = {}


def _stamp(folder: str) -> int:
    """The newest modification time in a model folder: a model rewritten in place reloads."""
    import os

    try:
        return max((e.stat().st_mtime_ns for e in os.scandir(folder) if e.is_file()), default=0)
    except OSError:
        return 0


@dataclass(frozen=True, kw_only=True)
class LMScorer(Annotator):
    """Annotator: lm_loss, lm_perplexity, lm_tokens (and lm_el2n) per document."""

    name: ClassVar[str] = "lm"
    model_path: str
    device: str = "auto"
    max_batch_tokens: int | None = None  # None: 2,048 on CPU (cache-sized), 16,384 on CUDA
    window: int | None = None
    stride: int | None = None
    el2n: bool = False
    sort_group: int = 512  # documents tokenised, length-sorted and batched together
    precision: str = "auto"  # auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16

    @property
    def gpus(self) -> float:
        return 0.0 if self.device == "cpu" else 1.0  # auto: one where the cluster has GPUs

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise StageError(f"unknown precision {self.precision!r}; allowed: auto, fp32, bf16, fp16")

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def batch_tokens(self) -> int:
        """Padded tokens per forward pass: on CPU throughput peaks at a couple of thousand (larger
        batches leave the cache; see docs/lm.md), GPUs want many more to stay busy."""
        if self.max_batch_tokens:
            return self.max_batch_tokens
        return 16_384 if getattr(self, "_device", "cpu").startswith("cuda") else 2_048

    def adds(self) -> dict[str, pa.DataType]:
        cols = {LM_LOSS: pa.float64(), LM_PERPLEXITY: pa.float64(), LM_TOKENS: pa.int64()}
        if self.el2n:
            cols[LM_EL2N] = pa.float64()
        return cols

    def __getstate__(self) -> dict[str, Any]:  # the loaded model stays in its worker
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_model", None) is not None:
            return
        device = resolve_device(self.device)
        # Once per process: a worker (local or a Ray worker) keeps the model across its shards.
        key = (self.model_path, device, _stamp(self.model_path))
        if key not in _LOADED:
            _LOADED.clear()  # one model per process at a time
            _LOADED[key] = load_causal_lm(self.model_path, device)
        tokenizer, model = _LOADED[key]
        object.__setattr__(self, "_device", device)
        object.__setattr__(self, "_tokenizer", tokenizer)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_split", split_head(model))
        object.__setattr__(self, "oom_splits", 0)

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        self.setup(StageContext())
        texts = batch.column(TEXT).to_pylist()
        n = len(texts)
        tok = self._tokenizer  # type: ignore[attr-defined]
        present = [i for i, t in enumerate(texts) if t]
        window = self.window or context_length(self._model)  # type: ignore[attr-defined]
        stride = self.stride or max(1, window // 2)
        if stride > window:
            raise StageError(f"stride {stride} is longer than the window {window}: tokens would go unscored")

        pin = self._device.startswith("cuda")  # type: ignore[attr-defined]

        def prepared(group: list[int]) -> list[tuple[list[Segment], Collated]]:
            encoded = tok([texts[i] for i in group], add_special_tokens=False)["input_ids"]
            segments = [
                s for i, ids in zip(group, encoded, strict=True) for s in windows(i, ids, window, stride)
            ]
            return [(chunk, collate(chunk, pin)) for chunk in self._batches(segments)]

        groups = [present[i : i + self.sort_group] for i in range(0, len(present), self.sort_group)]
        nll = np.zeros(n)
        count = np.zeros(n, np.int64)
        el2n = np.zeros(n)
        # The next group is tokenised, sorted and padded on a thread while this one runs on the
        # model; the tokenizers and torch both release the GIL, so the two overlap.
        for ready in prefetch(map(prepared, groups)):
            for chunk, tensors in ready:
                self._score(chunk, tensors, nll, count, el2n)
        with np.errstate(invalid="ignore", divide="ignore"):
            loss = nll / count
            el2n_mean = el2n / count
        missing = count == 0
        out = {
            LM_LOSS: pa.array(loss, pa.float64(), mask=missing),
            LM_PERPLEXITY: pa.array(np.exp(np.minimum(loss, 700)), pa.float64(), mask=missing),
            LM_TOKENS: pa.array(count, pa.int64()),
        }
        if self.el2n:
            out[LM_EL2N] = pa.array(el2n_mean, pa.float64(), mask=missing)
        return out

    def _batches(self, segments: list[Segment]) -> list[list[Segment]]:
        """Length-sorted batches whose padded size stays within max_batch_tokens."""
        budget = self.batch_tokens()
        order = sorted(segments, key=lambda s: len(s.ids))
        out: list[list[Segment]] = []
        cur: list[Segment] = []
        for seg in order:
            if len(seg.ids) < 2 and seg.first_scored >= len(seg.ids):
                continue  # a one-token document: nothing to predict
            if cur and len(seg.ids) * (len(cur) + 1) > budget:
                out.append(cur)
                cur = []
            cur.append(seg)
        if cur:
            out.append(cur)
        return out

    def _score(
        self,
        chunk: list[Segment],
        tensors: Collated | None,
        nll: np.ndarray,
        count: np.ndarray,
        el2n: np.ndarray,
    ) -> None:
        torch = _torch()
        try:
            self._forward(chunk, tensors or collate(chunk, False), nll, count, el2n)
        except torch.cuda.OutOfMemoryError:
            if len(chunk) == 1:
                raise StageError(
                    "CUDA out of memory on a single window", hint="lower --max-batch-tokens or the window"
                ) from None
            torch.cuda.empty_cache()
            object.__setattr__(self, "oom_splits", self.oom_splits + 1)  # type: ignore[attr-defined]
            half = len(chunk) // 2
            self._score(chunk[:half], None, nll, count, el2n)
            self._score(chunk[half:], None, nll, count, el2n)

    def _forward(
        self, chunk: list[Segment], tensors: Collated, nll: np.ndarray, count: np.ndarray, el2n: np.ndarray
    ) -> None:
        torch = _torch()
        device = self._device  # type: ignore[attr-defined]
        ids, attention, scored = (t.to(device, non_blocking=True) for t in tensors)
        precision = (
            self.precision if self.precision != "auto" else ("bf16" if device.startswith("cuda") else "fp32")
        )
        autocast = (
            torch.autocast(
                device.split(":")[0], dtype=torch.bfloat16 if precision == "bf16" else torch.float16
            )
            if precision in ("bf16", "fp16")
            else torch.autocast(device.split(":")[0], enabled=False)
        )
        model = self._model  # type: ignore[attr-defined]
        split = self._split  # type: ignore[attr-defined]
        with torch.inference_mode(), autocast:
            if split:
                hidden = split[0](ids, attention)
            else:
                logits = model(input_ids=ids, attention_mask=attention).logits
        with torch.inference_mode():
            mask = scored[:, 1:]
            rows, cols = mask.nonzero(as_tuple=True)
            targets = ids[:, 1:][rows, cols]
            row_nll = torch.zeros(len(chunk), dtype=torch.float64, device=device)
            row_el2n = torch.zeros(len(chunk), dtype=torch.float64, device=device)
            # Logits only at scored positions (not pads, not window overlaps), in slices: the LM head
            # and its log-sum-exp are most of a small model's work; on CPU a slice of ~1M fp32
            # logits stays in cache (measured 1.3x faster than 32M-logit slices), GPUs take 64M.
            vocab = int(getattr(model.config, "vocab_size", 0) or 65_536)
            step = max(1, (1 << (26 if device.startswith("cuda") else 20)) // vocab)
            for t0 in range(0, len(rows), step):
                r, c, y = rows[t0 : t0 + step], cols[t0 : t0 + step], targets[t0 : t0 + step]
                if split:
                    with autocast:
                        z = split[1](hidden[r, c])
                    z = z.float()
                else:
                    z = logits[r, c].float()
                lse = torch.logsumexp(z, dim=-1)
                z_y = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
                row_nll.index_add_(0, r, (lse - z_y).double())
                if self.el2n:
                    sum_p2 = torch.exp(torch.logsumexp(2 * z, dim=-1) - 2 * lse)
                    p_y = torch.exp(z_y - lse)
                    row_el2n.index_add_(0, r, torch.sqrt(torch.clamp(sum_p2 - 2 * p_y + 1, min=0.0)).double())
            per_row_nll = row_nll.cpu().numpy()
            per_row_el2n = row_el2n.cpu().numpy()
            per_row_count = mask.sum(1).cpu().numpy()
        for r, s in enumerate(chunk):
            nll[s.doc] += per_row_nll[r]
            count[s.doc] += int(per_row_count[r])
            el2n[s.doc] += per_row_el2n[r]
