"""Loading the models LM scoring runs (a local Hugging Face causal-LM folder, or a proxy LM from
`curate train lm`), the device they run on, and a cheap check of a model folder that needs no
torch. Split from `curate.stages.lm` (the scorer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curate.errors import MissingDependencyError, StageError


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("LM scoring needs torch", hint="pip install 'curate[lm]'") from exc
    return torch


def resolve_device(device: str) -> str:
    torch = _torch()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise StageError(
            f"--device {device}: CUDA is not available on this machine",
            hint="use --device cpu, or --device auto to fall back to the CPU",
        )
    if device != "cpu" and not device.startswith("cuda"):
        raise StageError(f"unknown device {device!r}; allowed: auto, cpu, cuda, cuda:N")
    return device


def check_model_folder(path: str) -> None:
    """A cheap check (no torch import, no weights loaded) that `path` holds a model to score
    with, so a command fails at once and clearly; the scorer loads it in its workers."""
    folder = Path(path)
    if not folder.is_dir():
        raise StageError(
            f"{path}: no such model folder",
            hint="pass a local Hugging Face causal-LM folder or one written by `curate train lm`",
        )
    from curate.proxy_lm import is_proxy_lm

    if not is_proxy_lm(folder) and not (folder / "config.json").is_file():
        raise StageError(
            f"{path}: not a model folder (no config.json or curate_lm.json)",
            hint="pass a local Hugging Face causal-LM folder or one written by `curate train lm`",
        )


def load_causal_lm(path: str, device: str) -> tuple[Any, Any]:
    """(tokenizer, model) from a local folder, with errors that say what was found."""
    folder = Path(path)
    if not folder.is_dir():
        raise StageError(
            f"{path}: no such model folder",
            hint="pass a local Hugging Face causal-LM folder or one written by `curate train lm`",
        )
    from curate.proxy_lm import is_proxy_lm, load_proxy_lm

    if is_proxy_lm(folder):
        return load_proxy_lm(folder, device)
    try:
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            "LM scoring needs transformers", hint="pip install 'curate[lm]'"
        ) from exc
    try:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise StageError(f"{path}: not a model folder ({exc})") from exc
    arch = ", ".join(getattr(config, "architectures", None) or [config.model_type])
    try:
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            folder, local_files_only=True, output_loading_info=True
        )
        model, info = loaded
    except (OSError, ValueError) as exc:
        raise StageError(
            f"{path}: not a causal language model (found {arch})",
            hint="pass a causal LM such as GPT-2 or Llama",
        ) from exc
    missing = list(info.get("missing_keys", []))
    if missing:
        # e.g. an encoder checkpoint whose LM head would be freshly initialised: its scores would be noise
        raise StageError(
            f"{path}: not a causal language model checkpoint (found {arch}; {len(missing)} weights of the LM "
            f"are missing, e.g. {missing[0]})",
            hint="pass a causal LM folder saved with its language-modelling head",
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError, TypeError) as exc:
        raise StageError(f"{path}: no usable tokenizer in the model folder ({exc})") from exc
    model.eval()
    model.to(device)
    return tokenizer, model


def context_length(model: Any) -> int:
    cfg = model.config
    for name in ("n_positions", "max_position_embeddings", "n_ctx", "seq_length"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 1:
            return v
    return 1024
