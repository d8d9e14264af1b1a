"""LESS's gradient features (METHODS §2) for curate's proxy LM: per-example gradients in batches
(torch.func: vmap over grad), Adam preconditioning from a checkpoint's moments, and a random
projection that never holds a parameters x d matrix.

The projection is a subsampled randomized Hadamard transform (SRHT): flip the signs of the
flattened gradient by a seeded Rademacher vector, zero-pad to a power of two n, apply the fast
Walsh-Hadamard transform (O(n log n), no matrix), keep d coordinates chosen by the seed, and
scale by 1/sqrt(d). E<Px, Py> = <x, y>, with the Johnson-Lindenstrauss concentration of a dense
Rademacher projection; chosen over TRAK's dense blocks because a CPU generates no d x D random
matrix per batch. The same seed gives the same projection to candidates and task examples at
every checkpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.proxy_lm import ADAM_FILE, CHECKPOINT_META, CHECKPOINTS

DEFAULT_DIM = 8192


def _torch() -> Any:
    import torch

    return torch


@dataclass
class Projection:
    """SRHT from `size` gradient coordinates to `dim` (see the module's docstring)."""

    size: int
    dim: int = DEFAULT_DIM
    seed: int = 0

    def __post_init__(self) -> None:
        torch = _torch()
        self.n = 1 << max(math.ceil(math.log2(max(self.size, 2))), math.ceil(math.log2(self.dim)))
        g = torch.Generator().manual_seed(self.seed)
        self.signs = torch.randint(0, 2, (self.size,), generator=g).float() * 2 - 1
        self.keep = torch.randperm(self.n, generator=g)[: self.dim]

    def __call__(self, x: Any) -> Any:
        """Rows of x (B x size, float32) projected to B x dim."""
        torch = _torch()
        b = x.shape[0]
        y = torch.zeros(b, self.n, dtype=torch.float32, device=x.device)
        y[:, : self.size] = x.float() * self.signs.to(x.device)
        h = 1
        while h < self.n:  # the fast Walsh-Hadamard transform, in place over the last axis
            y = y.view(b, -1, 2, h)
            y = torch.stack((y[:, :, 0] + y[:, :, 1], y[:, :, 0] - y[:, :, 1]), dim=2).view(b, self.n)
            h *= 2
        return y[:, self.keep.to(x.device)] / math.sqrt(self.dim)


def example_losses(model: Any, params: dict[str, Any], ids: Any, mask: Any) -> Any:
    """Mean next-token loss of one example (ids, mask: 1-D), as a function of the parameters."""
    torch = _torch()
    from torch.func import functional_call

    logits = functional_call(model, params, (ids[None, :-1],)).logits[0]
    ce = torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none")
    weights = mask[1:].float()
    return (ce * weights).sum() / weights.sum().clamp_min(1.0)


def per_example_gradients(model: Any, ids: Any, mask: Any, params: dict[str, Any] | None = None) -> Any:
    """B x P flattened gradients of each example's mean loss with respect to `params` (default:
    every parameter; for LoRA, the adapters), in one vmapped pass."""
    from torch.func import grad, vmap

    torch = _torch()
    plain_attention(model)
    params = params if params is not None else {k: v.detach() for k, v in model.named_parameters()}
    batched = vmap(grad(example_losses, argnums=1), in_dims=(None, None, 0, 0))
    on_cuda = ids.device.type == "cuda"  # bf16 autocast on CUDA; the gradients come back fp32
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=on_cuda):
        grads = batched(model, params, ids, mask)
    return flatten(grads, ids.shape[0]).float()


def per_example_gradients_loop(model: Any, ids: Any, mask: Any) -> Any:
    """The same, one example at a time (the reference the batched version is checked against)."""
    torch = _torch()
    from torch.func import grad

    params = {k: v.detach() for k, v in model.named_parameters()}
    one = grad(example_losses, argnums=1)
    return torch.stack([flatten(one(model, params, ids[i], mask[i]), None) for i in range(len(ids))])


def plain_attention(model: Any) -> None:
    """Attention as explicit matmuls: vmap has no batching rule for the fused CPU kernel and
    would fall back to a loop over the batch."""
    for block in getattr(model, "blocks", []):
        block.plain_attention = True


def flatten(grads: dict[str, Any], batch: int | None) -> Any:
    torch = _torch()
    parts = [g.reshape(batch, -1) if batch is not None else g.reshape(-1) for g in grads.values()]
    return torch.cat(parts, dim=-1)


def adam_features(g: Any, m: Any, v: Any, betas: tuple[float, float], eps: float) -> Any:
    """LESS's candidate feature: the Adam update direction one step after the checkpoint."""
    torch = _torch()
    b1, b2 = betas
    m2 = b1 * m + (1 - b1) * g
    v2 = b2 * v + (1 - b2) * g * g
    return m2 / torch.sqrt(v2 + eps)


def unit(x: Any) -> Any:
    torch = _torch()
    return x / torch.linalg.vector_norm(x, dim=1, keepdim=True).clamp_min(1e-12)


@dataclass
class Checkpoint:
    folder: Path
    step: int
    mean_lr: float
    betas: tuple[float, float]
    eps: float
    meta: dict[str, Any]


def checkpoints_of(warm: str | Path) -> list[Checkpoint]:
    """The warm-up checkpoints `curate train lm --checkpoints N` saved, in order."""
    from curate.errors import StageError

    root = Path(warm) / CHECKPOINTS
    found = []
    for meta_path in sorted(root.glob(f"*/{CHECKPOINT_META}")):
        meta = json.loads(meta_path.read_text())
        found.append(
            Checkpoint(
                meta_path.parent,
                int(meta["step"]),
                float(meta["mean_lr"]),
                tuple(meta["betas"]),
                float(meta["eps"]),
                meta,
            )
        )
    if not found:
        raise StageError(
            f"{warm}: no warm-up checkpoints", hint="train it with `curate train lm --checkpoints 4`"
        )
    return sorted(found, key=lambda c: c.step)


def load_moments(ckpt: Checkpoint, names: list[str]) -> tuple[Any, Any]:
    """The checkpoint's Adam moments, flattened in parameter order."""
    from safetensors.torch import load_file

    state = load_file(str(ckpt.folder / ADAM_FILE))
    torch = _torch()
    m = torch.cat([state[f"m.{n}"].reshape(-1) for n in names])
    v = torch.cat([state[f"v.{n}"].reshape(-1) for n in names])
    return m, v


@dataclass
class Loaded:
    """A checkpoint ready for gradients: the model, the parameters differentiated, the
    tokenizer (text -> ids) and the longest input."""

    model: Any
    params: dict[str, Any]
    encode: Any
    context: int


def load_for_influence(ckpt: Checkpoint, device: str) -> Loaded:
    if ckpt.meta.get("kind") == "lora":
        from curate.lora import load_lora_checkpoint

        tok, model, params = load_lora_checkpoint(ckpt.folder, ckpt.meta, device)
        cfg = model.config
        positions: Any = getattr(cfg, "n_positions", None) or getattr(cfg, "max_position_embeddings", 2048)
        context = min(int(ckpt.meta["settings"]["max_length"]), int(positions))

        def encode(text: str) -> list[int]:
            return list(tok(text, add_special_tokens=False)["input_ids"])

        return Loaded(model, params, encode, context)
    from curate.proxy_lm import load_proxy_lm

    _, model = load_proxy_lm(ckpt.folder, device)
    plain_attention(model)
    params = {k: v.detach() for k, v in model.named_parameters()}
    return Loaded(model, params, lambda text: list(text.encode("utf-8")), int(model.config.context))


def as_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy())
