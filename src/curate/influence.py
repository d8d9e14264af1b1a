"""LESS's gradient features (METHODS §2): Adam preconditioning from a checkpoint's moments and a
random projection that never holds a parameters x d matrix (per-example gradients come from
curate.per_example).

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
        if x.device.type == "cpu":  # one row at a time: its 2^k floats stay in cache (7x faster)
            for row in y.split(1):
                fwht_(row)
        else:
            fwht_(y)
        return y[:, self.keep.to(x.device)] / math.sqrt(self.dim)


def fwht_(y: Any) -> None:
    """The fast Walsh-Hadamard transform of each row of y (b x n, n a power of two), in place.
    Two butterfly levels per pass over memory (radix 4); the same additions in the same order as
    the radix-2 transform, so the result is bit-identical to it."""
    torch = _torch()
    b, n = y.shape
    h = 1
    while h < n:
        if 4 * h <= n:
            q0, q1, q2, q3 = y.view(b, -1, 4, h).unbind(2)
            s01, d01, s23, d23 = q0 + q1, q0 - q1, q2 + q3, q2 - q3
            torch.add(s01, s23, out=q0)
            torch.add(d01, d23, out=q1)
            torch.sub(s01, s23, out=q2)
            torch.sub(d01, d23, out=q3)
            h *= 4
        else:
            lo, hi = y.view(b, -1, 2, h).unbind(2)
            total = lo + hi
            hi.sub_(lo).neg_()
            lo.copy_(total)
            h *= 2


def adam_features(g: Any, m: Any, v: Any, betas: tuple[float, float], eps: float) -> Any:
    """LESS's candidate feature: the Adam update direction one step after the checkpoint,
    m' / sqrt(v' + eps). In place on fresh B x P buffers: two allocations instead of seven."""
    b1, b2 = betas
    m2 = g * (1 - b1)
    m2 += b1 * m
    v2 = g * (1 - b2)
    v2.mul_(g)
    v2 += b2 * v
    v2 += eps
    return m2.div_(v2.sqrt_())


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
    params = {k: v.detach() for k, v in model.named_parameters()}
    return Loaded(model, params, lambda text: list(text.encode("utf-8")), int(model.config.context))


def as_numpy(x: Any) -> np.ndarray:
    return np.asarray(x.detach().cpu().numpy())
