"""A small byte-level causal transformer that trains here, for perplexity-toward-target scoring.

Pure torch, no downloads: the tokenizer is the UTF-8 bytes of the text (vocabulary 256), so a
model is just `model.safetensors` (weights) plus `curate_lm.json` (architecture and provenance).
Loading never unpickles: safetensors holds tensors only and the JSON is validated before use.

Training streams random windows of `context + 1` bytes from the target documents joined by a
blank line, with AdamW, linear warm-up then cosine decay, and gradient clipping; a seeded hash
holds out a share of the documents, and the report gives held-out loss (nats per byte) before and
after training. The scorer (`curate.stages.lm`) loads these folders as it loads Hugging Face ones.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from curate.errors import MissingDependencyError, StageError

CONFIG_FILE, WEIGHTS_FILE = "curate_lm.json", "model.safetensors"
FORMAT = "curate-proxy-lm"
FORMAT_VERSION = 1
DOC_SEPARATOR = b"\n\n"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("the proxy LM needs torch", hint="pip install 'curate[lm]'") from exc
    return torch


def is_proxy_lm(folder: str | Path) -> bool:
    return (Path(folder) / CONFIG_FILE).is_file()


class ByteTokenizer:
    """The UTF-8 bytes of a text are its token ids; the call shape of a Hugging Face tokenizer."""

    vocab_size = 256

    def __call__(self, texts: Sequence[str], add_special_tokens: bool = False) -> dict[str, list[list[int]]]:
        return {"input_ids": [list(t.encode("utf-8")) for t in texts]}


@dataclass(frozen=True)
class ProxyLMConfig:
    context: int = 256
    dim: int = 128
    layers: int = 4
    heads: int = 4
    mlp_ratio: int = 4
    vocab_size: int = 256

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise StageError(f"proxy LM: dim {self.dim} is not a multiple of heads {self.heads}")
        for name in ("context", "dim", "layers", "heads", "mlp_ratio"):
            if getattr(self, name) < 1:
                raise StageError(f"proxy LM: {name} must be at least 1")
        if self.vocab_size != 256:
            raise StageError("proxy LM: only the byte vocabulary (256) is supported")

    @property
    def n_positions(self) -> int:  # the name the scorer looks up for the context length
        return self.context


def build_model(config: ProxyLMConfig) -> Any:
    torch = _torch()
    nn = torch.nn
    F = torch.nn.functional

    class Block(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            d = config.dim
            self.ln1 = nn.LayerNorm(d)
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.ln2 = nn.LayerNorm(d)
            self.up = nn.Linear(d, config.mlp_ratio * d)
            self.down = nn.Linear(config.mlp_ratio * d, d)
            self.plain_attention = False  # explicit matmuls (for torch.func.vmap, curate.influence)

        def forward(self, x: Any) -> Any:
            b, t, d = x.shape
            q, k, v = self.qkv(self.ln1(x)).view(b, t, 3, config.heads, d // config.heads).unbind(2)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            if self.plain_attention:
                scores = (q @ k.transpose(-1, -2)) / math.sqrt(d // config.heads)
                causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
                a = scores.masked_fill(~causal, float("-inf")).softmax(-1) @ v
            else:
                a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, d))
            return x + self.down(F.gelu(self.up(self.ln2(x))))

    class ProxyLM(nn.Module):  # type: ignore[name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.config = config
            self.embed = nn.Embedding(config.vocab_size, config.dim)
            self.pos = nn.Embedding(config.context, config.dim)
            self.blocks = nn.ModuleList(Block() for _ in range(config.layers))
            self.ln_f = nn.LayerNorm(config.dim)
            for p in self.parameters():
                if p.dim() == 2:
                    nn.init.normal_(p, std=0.02)
            for block in self.blocks:  # residual projections scaled down with depth (GPT-2)
                nn.init.normal_(block.proj.weight, std=0.02 / math.sqrt(2 * config.layers))
                nn.init.normal_(block.down.weight, std=0.02 / math.sqrt(2 * config.layers))

        def hidden(self, input_ids: Any, attention_mask: Any = None) -> Any:
            # Causal attention with right padding: real positions never see the pads after them,
            # so attention_mask is accepted for the scorer's call shape and not needed.
            t = input_ids.shape[1]
            if t > config.context:
                raise StageError(f"proxy LM: {t} tokens exceed the model's context {config.context}")
            x = self.embed(input_ids) + self.pos(torch.arange(t, device=input_ids.device))
            for block in self.blocks:
                x = block(x)
            return self.ln_f(x)

        def head(self, hidden: Any) -> Any:
            return F.linear(hidden, self.embed.weight)  # tied to the input embedding

        def curate_split(self) -> tuple[Any, Any]:  # lets the scorer project only scored positions
            return self.hidden, self.head

        def forward(self, input_ids: Any, attention_mask: Any = None) -> Any:
            return SimpleNamespace(logits=self.head(self.hidden(input_ids)))

    return ProxyLM()


def save_proxy_lm(model: Any, folder: str | Path, provenance: dict[str, Any]) -> None:
    """Write weights and config atomically (temporary names, then rename)."""
    from safetensors.torch import save_file

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(weights, str(tmp), metadata={"format": FORMAT})
    tmp.replace(out / WEIGHTS_FILE)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": asdict(model.config),
        "tokenizer": "utf-8 bytes",
        "training": provenance,
    }
    tmp = out / (CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(out / CONFIG_FILE)


def load_proxy_lm(folder: str | Path, device: str = "cpu") -> tuple[ByteTokenizer, Any]:
    """(tokenizer, model) from a folder written by `save_proxy_lm`, with errors naming the file."""
    folder = Path(folder)
    cfg_path = folder / CONFIG_FILE
    try:
        meta = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StageError(f"{cfg_path}: unreadable proxy-LM config ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise StageError(f"{cfg_path}: not a curate proxy-LM config (format {meta.get('format')!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise StageError(
            f"{cfg_path}: format version {meta.get('format_version')} (this curate reads {FORMAT_VERSION})"
        )
    try:
        config = ProxyLMConfig(**meta["architecture"])
    except (KeyError, TypeError) as exc:
        raise StageError(f"{cfg_path}: bad architecture block ({exc})") from exc
    weights_path = folder / WEIGHTS_FILE
    if not weights_path.is_file():
        raise StageError(f"{folder}: {WEIGHTS_FILE} is missing next to {CONFIG_FILE}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise StageError(f"{weights_path}: unreadable weights ({exc})") from exc
    model = build_model(config)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise StageError(f"{weights_path}: weights do not match {CONFIG_FILE} ({exc})") from exc
    model.eval()
    model.to(device)
    return ByteTokenizer(), model


CHECKPOINTS = "checkpoints"  # warm-up checkpoints for influence (curate.influence)
CHECKPOINT_META = "checkpoint.json"
ADAM_FILE = "adam.safetensors"


def save_checkpoint(model: Any, optimizer: Any, folder: Path, step: int, mean_lr: float) -> None:
    """Weights, Adam moments and the mean learning rate since the previous checkpoint (safetensors
    and JSON, never pickle)."""
    from safetensors.torch import save_file

    save_proxy_lm(model, folder, {"checkpoint_step": step})
    moments: dict[str, Any] = {}
    group = optimizer.param_groups[0]
    for name, p in model.named_parameters():
        state = optimizer.state.get(p, {})
        zeros = p.detach().new_zeros(p.shape)
        moments[f"m.{name}"] = state.get("exp_avg", zeros).detach().contiguous().cpu()
        moments[f"v.{name}"] = state.get("exp_avg_sq", zeros).detach().contiguous().cpu()
    save_file(moments, str(folder / ADAM_FILE))
    meta = {"step": step, "mean_lr": mean_lr, "betas": list(group["betas"]), "eps": group["eps"]}
    (folder / CHECKPOINT_META).write_text(json.dumps(meta, indent=2) + "\n")


def checkpoint_steps(steps: int, count: int) -> list[int]:
    """The last step of each of `count` evenly spaced stretches of training."""
    return sorted({max(1, round(steps * (c + 1) / count)) - 1 for c in range(count)}) if count else []


@dataclass(frozen=True)
class TrainSettings:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    weight_decay: float = 0.1
    holdout: float = 0.05
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    checkpoints: int = 0  # warm-up checkpoints (weights, Adam moments, mean lr) for influence


@dataclass
class TrainReport:
    train_docs: int
    holdout_docs: int
    train_bytes: int
    parameters: int
    steps: int
    seconds: float
    holdout_loss_before: float
    holdout_loss_after: float
    final_train_loss: float
    curve: list[tuple[int, float]] = field(default_factory=list)


def _held_out(text: str, seed: int, share: float) -> bool:
    h = hashlib.blake2b(text.encode("utf-8"), digest_size=8, key=seed.to_bytes(8, "little")).digest()
    return int.from_bytes(h, "little") / 2**64 < share


def _stream(texts: Sequence[str]) -> np.ndarray:
    return np.frombuffer(DOC_SEPARATOR.join(t.encode("utf-8") for t in texts), dtype=np.uint8)


def _holdout_loss(model: Any, data: np.ndarray, context: int, max_windows: int = 64) -> float:
    """Mean loss (nats/byte) over up to max_windows non-overlapping windows of the held-out stream."""
    torch = _torch()
    n = min(max_windows, (len(data) - 1) // context)
    if n < 1:
        return float("nan")
    device = next(model.parameters()).device
    x = torch.from_numpy(data[: n * context + 1].astype(np.int64)).to(device)
    inputs, targets = x[:-1].view(n, context), x[1:].view(n, context)
    model.eval()
    total = 0.0
    with torch.inference_mode():
        for i in range(0, n, 16):
            logits = model(inputs[i : i + 16]).logits
            total += float(
                torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), targets[i : i + 16].reshape(-1), reduction="sum"
                )
            )
    model.train()
    return total / (n * context)


def train_proxy_lm(
    texts: Sequence[str],
    folder: str | Path,
    config: ProxyLMConfig = ProxyLMConfig(),
    settings: TrainSettings = TrainSettings(),
    on_step: Callable[[int], None] | None = None,
) -> TrainReport:
    """Train on `texts` and save to `folder`; on CPU reproducible given the seed and thread count."""
    torch = _torch()
    docs = [t for t in texts if t]
    held = [t for t in docs if _held_out(t, settings.seed, settings.holdout)]
    train = [t for t in docs if not _held_out(t, settings.seed, settings.holdout)]
    train_data, held_data = _stream(train), _stream(held)
    if len(train_data) < config.context + 2:
        raise StageError(
            f"train lm: {len(train_data):,} training bytes, fewer than one window of {config.context + 1}",
            hint="pass more target text or a smaller --context",
        )
    if settings.threads:
        torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model = build_model(config).to(settings.device)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": settings.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=settings.lr,
        betas=(0.9, 0.95),
    )

    def lr_at(step: int) -> float:
        if step < settings.warmup:
            return settings.lr * (step + 1) / settings.warmup
        progress = (step - settings.warmup) / max(1, settings.steps - settings.warmup)
        return settings.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

    before = _holdout_loss(model, held_data, config.context)
    rng = np.random.default_rng(settings.seed)
    data = torch.from_numpy(train_data.astype(np.int64)).to(settings.device)
    offsets = torch.arange(config.context + 1, device=settings.device)
    curve: list[tuple[int, float]] = []
    start = time.perf_counter()
    loss_value = float("nan")
    model.train()
    saves = checkpoint_steps(settings.steps, settings.checkpoints)
    lr_sum, lr_count = 0.0, 0
    for step in range(settings.steps):
        starts = torch.from_numpy(
            rng.integers(0, len(train_data) - config.context - 1, settings.batch_size)
        ).to(settings.device)
        window = data[starts[:, None] + offsets]
        logits = model(window[:, :-1]).logits
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), window[:, 1:].reshape(-1)
        )
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lr_sum, lr_count = lr_sum + lr_at(step), lr_count + 1
        if step in saves:
            where = Path(folder) / CHECKPOINTS / f"{saves.index(step):02d}"
            save_checkpoint(model, opt, where, step, lr_sum / lr_count)
            lr_sum, lr_count = 0.0, 0
        loss_value = float(loss.detach())
        if step % max(1, settings.steps // 20) == 0 or step == settings.steps - 1:
            curve.append((step, loss_value))
        if on_step:
            on_step(step)
    seconds = time.perf_counter() - start
    after = _holdout_loss(model, held_data, config.context)
    model.eval()
    report = TrainReport(
        train_docs=len(train),
        holdout_docs=len(held),
        train_bytes=len(train_data),
        parameters=sum(p.numel() for p in model.parameters()),
        steps=settings.steps,
        seconds=seconds,
        holdout_loss_before=before,
        holdout_loss_after=after,
        final_train_loss=loss_value,
        curve=curve,
    )
    provenance = {
        "settings": asdict(settings),
        **{k: v for k, v in asdict(report).items() if k != "curve"},
    }
    save_proxy_lm(model, folder, provenance)
    return report
