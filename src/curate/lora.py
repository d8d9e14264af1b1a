"""LESS's warm-up for a local Hugging Face causal LM (METHODS §2.1): LoRA adapters trained with
peft on a sample, saving at N evenly spaced points the adapter weights, AdamW's moments of the
LoRA parameters and the mean learning rate since the previous checkpoint (safetensors + JSON).

LESS's settings are the defaults: r 128, alpha 512, dropout 0.1 on q/k/v/o_proj (GPT-2's fused
c_attn and c_proj where those are absent), lr 2e-5 with a linear schedule and 3% warm-up, no
weight decay, batch 1 with 32 accumulation steps, 4 epochs, AdamW (0.9, 0.999, 1e-8).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from curate.errors import MissingDependencyError, StageError
from curate.proxy_lm import ADAM_FILE, CHECKPOINT_META, CHECKPOINTS, checkpoint_steps

ADAPTER_FILE = "adapter.safetensors"
LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
GPT2_TARGETS = ("c_attn", "c_proj")


@dataclass(frozen=True)
class LoraSettings:
    r: int = 128
    alpha: int = 512
    dropout: float = 0.1
    target_modules: tuple[str, ...] = ()  # empty: LLAMA_TARGETS, else GPT2_TARGETS, found in the model
    lr: float = 2e-5
    warmup_ratio: float = 0.03
    epochs: int = 4
    accumulation: int = 32
    max_length: int = 2048
    checkpoints: int = 4
    seed: int = 0
    device: str = "cpu"


def _peft() -> Any:
    try:
        import peft
    except ImportError:
        raise MissingDependencyError("LoRA needs peft", hint="pip install peft") from None
    return peft


def load_base(path: str, device: str) -> tuple[Any, Any]:
    """(tokenizer, model) of a local HF causal LM, with eager attention (torch.func's vmap has
    no batching rule for the fused kernels)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).is_dir():
        raise StageError(f"{path}: no such model folder", hint="pass a local Hugging Face causal-LM folder")
    try:
        tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model: Any = AutoModelForCausalLM.from_pretrained(
            path, local_files_only=True, attn_implementation="eager"
        )
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: cannot load a causal LM ({exc})") from exc
    return tok, model.to(device)


def targets_of(model: Any, asked: tuple[str, ...]) -> list[str]:
    """The module names LoRA wraps; asked ones must each match a module, by its last name part."""
    present = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if asked:
        missing = [t for t in asked if t not in present]
        if missing:
            linear = sorted(n for n in present if n and not n.isdigit())
            raise StageError(
                f"LoRA target modules {', '.join(missing)} match nothing in the model",
                hint=f"module names present: {', '.join(linear[:30])}",
            )
        return list(asked)
    for family in (LLAMA_TARGETS, GPT2_TARGETS):
        if all(t in present for t in family):
            return list(family)
    raise StageError("no attention projections to put LoRA on; name them with --target-modules")


def wrap(model: Any, settings: LoraSettings, targets: list[str]) -> Any:
    peft = _peft()
    from transformers.pytorch_utils import Conv1D

    # GPT-2's projections are Conv1D (weights stored transposed): peft must be told so.
    conv = any(isinstance(m, Conv1D) and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    config = peft.LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=targets,
        fan_in_fan_out=conv,
    )
    with warnings.catch_warnings():  # peft calls a transformers API that warns of its renaming
        warnings.simplefilter("ignore", FutureWarning)
        return peft.get_peft_model(model, config)


def trainable(model: Any) -> dict[str, Any]:
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def _encode(tok: Any, texts: list[str], max_length: int) -> list[list[int]]:
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    return [row[:max_length] for row in ids if len(row) >= 2]


def train_lora(texts: list[str], base: str, folder: str | Path, settings: LoraSettings) -> dict[str, Any]:
    """Train the adapters and save the checkpoints; the training's figures."""
    import torch

    torch.manual_seed(settings.seed)
    tok, model = load_base(base, settings.device)
    targets = targets_of(model, settings.target_modules)
    model = wrap(model, settings, targets)
    docs = _encode(tok, texts, settings.max_length)
    if not docs:
        raise StageError("train lora: no document has 2 or more tokens")
    params = trainable(model)
    opt = torch.optim.AdamW(params.values(), lr=settings.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    steps = settings.epochs * math.ceil(len(docs) / settings.accumulation)
    warm = max(1, round(settings.warmup_ratio * steps))

    def lr_at(step: int) -> float:
        if step < warm:
            return settings.lr * (step + 1) / warm
        return settings.lr * max(0.0, (steps - step) / max(1, steps - warm))

    saves = checkpoint_steps(steps, settings.checkpoints)
    rng = np.random.default_rng(settings.seed)
    model.train()
    step, lr_sum, lr_count, last = 0, 0.0, 0, float("nan")
    for _ in range(settings.epochs):
        order = rng.permutation(len(docs))
        for i, j in enumerate(order):
            ids = torch.tensor(docs[j], device=settings.device)[None]
            loss = model(input_ids=ids, labels=ids).loss / settings.accumulation
            loss.backward()
            last = float(loss.detach()) * settings.accumulation
            if (i + 1) % settings.accumulation and i + 1 != len(order):
                continue
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            opt.step()
            opt.zero_grad(set_to_none=True)
            lr_sum, lr_count = lr_sum + lr_at(step), lr_count + 1
            if step in saves:
                where = Path(folder) / CHECKPOINTS / f"{saves.index(step):02d}"
                save_lora_checkpoint(model, opt, where, step, lr_sum / lr_count, base, settings, targets)
                lr_sum, lr_count = 0.0, 0
            step += 1
    return {
        "docs": len(docs),
        "steps": steps,
        "targets": targets,
        "parameters": sum(p.numel() for p in params.values()),
        "final_loss": last,
    }


def save_lora_checkpoint(
    model: Any,
    opt: Any,
    folder: Path,
    step: int,
    mean_lr: float,
    base: str,
    settings: LoraSettings,
    targets: list[str],
) -> None:
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    params = trainable(model)
    save_file({n: p.detach().contiguous().cpu() for n, p in params.items()}, str(folder / ADAPTER_FILE))
    moments = {}
    for n, p in params.items():
        state = opt.state.get(p, {})
        moments[f"m.{n}"] = state.get("exp_avg", p.detach().new_zeros(p.shape)).detach().contiguous().cpu()
        moments[f"v.{n}"] = state.get("exp_avg_sq", p.detach().new_zeros(p.shape)).detach().contiguous().cpu()
    save_file(moments, str(folder / ADAM_FILE))
    group = opt.param_groups[0]
    meta = {
        "kind": "lora",
        "step": step,
        "mean_lr": mean_lr,
        "betas": list(group["betas"]),
        "eps": group["eps"],
        "base": str(Path(base).resolve()),
        "targets": targets,
        "settings": {**asdict(settings), "target_modules": targets},
    }
    (folder / CHECKPOINT_META).write_text(json.dumps(meta, indent=2) + "\n")


def load_lora_checkpoint(folder: Path, meta: dict[str, Any], device: str) -> tuple[Any, Any, dict[str, Any]]:
    """(tokenizer, model with the checkpoint's adapters, the LoRA parameters by name)."""
    from safetensors.torch import load_file

    tok, model = load_base(meta["base"], device)
    s = meta["settings"]
    settings = LoraSettings(r=s["r"], alpha=s["alpha"], dropout=0.0, target_modules=tuple(meta["targets"]))
    model = wrap(model, settings, list(meta["targets"]))
    state = load_file(str(folder / ADAPTER_FILE))
    params = trainable(model)
    if set(state) != set(params):
        raise StageError(f"{folder / ADAPTER_FILE}: its adapters do not match the base model {meta['base']}")
    with __import__("torch").no_grad():
        for n, p in params.items():
            p.copy_(state[n].to(p.device))
    model.eval()
    return tok, model, {n: p.detach() for n, p in params.items()}
