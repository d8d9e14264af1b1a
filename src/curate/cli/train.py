"""`curate train fasttext|combine|lm`: the models scorers use."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from curate.cli import render
from curate.cli.options import (
    Device,
    ExecutorOpt,
    NoProgress,
    RayAddress,
    Seed,
    Sidecars,
    StatsJson,
    TextColumn,
    Workers,
    choice,
    execute,
    names,
    source,
    train_app,
)


@train_app.command("fasttext")
def train_fasttext(
    positive: Annotated[str, typer.Option(help="High-quality examples (dataset), labelled __label__hq.")],
    negative: Annotated[str, typer.Option(help="Pool examples (dataset), labelled __label__cc.")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Model file to write (.bin, with a .json sidecar).")
    ],
    max_per_class: Annotated[
        int | None, typer.Option(help="Cap on documents per class (DCLM: ~200K).", min=10)
    ] = None,
    balance: Annotated[
        str,
        typer.Option(
            help="How the classes are made equal: oversample (every document up to "
            "--max-per-class; the smaller class's training documents repeated in turn, so a small "
            "target keeps all the negatives) or downsample (DCLM: both cut to the smaller class).",
        ),
    ] = "oversample",
    holdout: Annotated[
        float, typer.Option(help="Share of each class held out for accuracy and AUC.", min=0.0, max=0.5)
    ] = 0.1,
    epoch: Annotated[int, typer.Option(help="Training epochs (DCLM: 5).", min=1)] = 5,
    lr: Annotated[float, typer.Option(help="Learning rate (DCLM: 0.1).", min=1e-6)] = 0.1,
    dim: Annotated[int, typer.Option(help="Vector size (DCLM: 100).", min=1)] = 100,
    word_ngrams: Annotated[int, typer.Option(help="Word n-gram features (DCLM: 2).", min=1)] = 2,
    threads: Annotated[
        int, typer.Option(help="Training threads (1 is reproducible; more is faster).", min=1)
    ] = 1,
    seed: Seed = 0,
    text_column: TextColumn = "text",
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    stats_json: StatsJson = None,
    no_progress: NoProgress = False,
) -> None:
    """Train a DCLM-style fastText quality classifier: balanced classes, held-out accuracy/AUC.

    With a small target (a few hundred positives against a large pool), the default oversampling
    keeps every negative: on a target of 84 documents whose domain is 2.5% of the pool, the
    top-N precision over the pool rose from 0.13 (downsample) to 0.65 (bench/bench_fasttext_small.py).
    """
    from curate.jobs.train_fasttext import TrainFastTextConfig, train_fasttext_job

    config = TrainFastTextConfig(
        positive=positive,
        negative=negative,
        output=str(output),
        max_per_class=max_per_class,
        balance=balance,
        holdout=holdout,
        epoch=epoch,
        lr=lr,
        dim=dim,
        word_ngrams=word_ngrams,
        threads=threads,
        seed=seed,
        text_column=text_column,
    )
    r = execute(
        train_fasttext_job(config), workers=workers, no_progress=no_progress, stats_json=stats_json
    ).summary
    render.kv_table(
        f"fastText model {output}",
        [
            (
                "trained on",
                f"{r['train_docs']['hq']:,} hq + {r['train_docs']['cc']:,} cc lines "
                f"({r['distinct_train_docs']['hq']:,} + {r['distinct_train_docs']['cc']:,} distinct documents; {r['balance']})",
            ),
            ("held out", f"{r['holdout_docs']['hq']:,} hq + {r['holdout_docs']['cc']:,} cc"),
            ("held-out accuracy", f"{r['holdout_accuracy']:.4f} (at p=0.5)"),
            ("held-out AUC", f"{r['holdout_auc']:.4f}"),
            ("settings", ", ".join(f"{k}={v}" for k, v in r["settings"].items())),
        ],
    )


@train_app.command("combine")
def train_combine(
    input: Annotated[
        list[str],
        typer.Argument(
            metavar="IN",
            help="Labelled dataset with the score columns and a label column (several in order).",
        ),
    ],
    output: Annotated[Path, typer.Option("-o", "--output", help="Weights file to write (JSON).")],
    columns: Annotated[str, typer.Option(help="Score columns, comma-separated.")],
    label: Annotated[str, typer.Option(help="Label column: 0/1 (e.g. target vs pool) or any number.")],
    lower_is_better: Annotated[str | None, typer.Option(help="Columns whose low values are good.")] = None,
    normalisation: Annotated[str, typer.Option(help="zscore or rank.")] = "zscore",
    seed: Seed = 0,
    workers: Workers = 0,
    executor: ExecutorOpt = "local",
    ray_address: RayAddress = None,
    text_column: TextColumn = "text",
    sidecar: Sidecars = None,
    stats_json: StatsJson = None,
    no_progress: NoProgress = False,
) -> None:
    """Learn combination weights from a labelled set (scikit-learn), saved with their normalisation."""
    from curate.jobs.train_combine import TrainCombineConfig, train_combine_job

    choice("--normalisation", normalisation, ("zscore", "rank"))
    config = TrainCombineConfig(
        input=source(input),
        output=str(output),
        columns=names(columns),
        label=label,
        lower_is_better=names(lower_is_better),
        normalisation=normalisation,  # type: ignore[arg-type]
        seed=seed,
        sidecars=tuple(sidecar or ()),
        text_column=text_column,
    )
    res = execute(train_combine_job(config), workers=workers, no_progress=no_progress, stats_json=stats_json)
    s = res.summary
    render.kv_table(
        f"weights {output}",
        [
            *((c, f"{x:+.4f}") for c, x in s["weights"].items()),
            (
                "fit",
                ", ".join(
                    f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["fit"].items()
                ),
            ),
        ],
    )


@train_app.command("lm")
def train_lm(
    data: Annotated[str, typer.Option(help="Target documents (dataset) the model learns.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Model folder to write.")],
    context: Annotated[int, typer.Option(help="Context in bytes (the scorer's window).", min=8)] = 256,
    dim: Annotated[int, typer.Option(help="Model width.", min=8)] = 128,
    layers: Annotated[int, typer.Option(help="Transformer blocks.", min=1)] = 4,
    heads: Annotated[int, typer.Option(help="Attention heads (must divide --dim).", min=1)] = 4,
    steps: Annotated[int, typer.Option(help="Optimiser steps.", min=1)] = 2000,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Windows per step.", min=1)] = 32,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (AdamW, warm-up then cosine).", min=1e-7)
    ] = 1e-3,
    holdout: Annotated[
        float, typer.Option(help="Share of documents held out for the loss report.", min=0.0, max=0.5)
    ] = 0.05,
    device: Device = "auto",
    threads: Annotated[
        int | None, typer.Option(help="CPU threads for torch (default: torch's choice).", min=1)
    ] = None,
    seed: Seed = 0,
    checkpoints: Annotated[
        int,
        typer.Option(
            help="Also save this many evenly spaced warm-up checkpoints (weights, Adam moments, the "
            "mean learning rate since the previous one) under OUTPUT/checkpoints/, for "
            "`curate score influence` (LESS uses 4). Train it on a random 5% of the pool, e.g. "
            "`curate resample POOL SAMPLE --by <any numeric column> --budget 5% --temperature 1e9` (at that temperature the seeded noise alone decides).",
            min=0,
        ),
    ] = 0,
    no_progress: NoProgress = False,
    text_column: TextColumn = "text",
    stats_json: StatsJson = None,
) -> None:
    """Train a small byte-level causal transformer on target text, for `curate score lm`.

    Pure torch and no downloads: the tokenizer is UTF-8 bytes, so the folder holds just
    model.safetensors and curate_lm.json. The defaults (0.8M parameters, 2,000 steps of 32 x 256
    bytes) train in a few minutes on a laptop CPU; score with
    `curate score lm --model OUTPUT IN OUT` (lm_loss is then nats per byte)."""
    from curate.jobs.train_lm import TrainLMConfig, train_lm_job

    config = TrainLMConfig(
        data=data,
        output=str(output),
        context=context,
        dim=dim,
        layers=layers,
        heads=heads,
        steps=steps,
        train_batch=batch_size,
        lr=lr,
        holdout=holdout,
        device=device,
        threads=threads,
        seed=seed,
        checkpoints=checkpoints,
        text_column=text_column,
    )
    r = execute(train_lm_job(config), workers=1, no_progress=no_progress, stats_json=stats_json).summary
    render.kv_table(
        f"proxy LM {output}",
        [
            ("trained on", f"{r['train_docs']:,} documents, {r['train_bytes']:,} bytes"),
            ("held out", f"{r['holdout_docs']:,} documents"),
            ("parameters", f"{r['parameters']:,}"),
            ("steps", f"{r['steps']:,} in {r['seconds']:.1f} s on {r['device']}"),
            (
                "held-out loss",
                f"{r['holdout_loss_before']:.3f} -> {r['holdout_loss_after']:.3f} nats/byte "
                f"({r['holdout_loss_after'] / math.log(2):.3f} bits/byte)",
            ),
            ("last train loss", f"{r['final_train_loss']:.3f}"),
        ],
    )


@train_app.command("lora")
def train_lora(
    model: Annotated[Path, typer.Option(help="A local Hugging Face causal-LM folder (the base model).")],
    data: Annotated[str, typer.Option(help="The warm-up sample (LESS: a random 5% of the pool).")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Folder for the checkpoints.")],
    checkpoints: Annotated[
        int, typer.Option(help="Evenly spaced checkpoints (LESS: 4, one per epoch).", min=1)
    ] = 4,
    epochs: Annotated[int, typer.Option(help="Passes over the sample.", min=1)] = 4,
    r: Annotated[int, typer.Option("--r", help="LoRA rank.", min=1)] = 128,
    alpha: Annotated[int, typer.Option(help="LoRA alpha.", min=1)] = 512,
    dropout: Annotated[float, typer.Option(help="LoRA dropout.", min=0.0, max=0.9)] = 0.1,
    target_modules: Annotated[
        str | None,
        typer.Option(
            help="Modules to adapt, comma-separated [default: q/k/v/o_proj, or GPT-2's c_attn,c_proj]."
        ),
    ] = None,
    lr: Annotated[
        float, typer.Option(help="Peak learning rate (linear schedule, 3% warm-up).", min=1e-9)
    ] = 2e-5,
    accumulation: Annotated[
        int, typer.Option(help="Documents per optimiser step (batch 1 each).", min=1)
    ] = 32,
    max_length: Annotated[int, typer.Option(help="Tokens of each document trained on.", min=2)] = 2048,
    seed: Seed = 0,
    device: Device = "cpu",
    no_progress: NoProgress = False,
    text_column: TextColumn = "text",
    stats_json: StatsJson = None,
) -> None:
    """LESS's warm-up: train LoRA adapters on a sample and save checkpoints (adapter weights,
    AdamW's moments of the LoRA parameters, the mean learning rate since the previous one;
    safetensors + JSON) for `curate score influence --model OUTPUT`. LESS's settings are the
    defaults (METHODS §2.1)."""
    from curate.jobs.train_lora import TrainLoraConfig, train_lora_job
    from curate.lora import LoraSettings
    from curate.stages.lm import resolve_device

    settings = LoraSettings(
        r=r,
        alpha=alpha,
        dropout=dropout,
        target_modules=names(target_modules),
        lr=lr,
        epochs=epochs,
        accumulation=accumulation,
        max_length=max_length,
        checkpoints=checkpoints,
        seed=seed,
        device=resolve_device(device),
    )
    config = TrainLoraConfig(
        data=data, model=str(model), output=str(output), settings=settings, text_column=text_column
    )
    r_ = execute(train_lora_job(config), workers=1, no_progress=no_progress, stats_json=stats_json).summary
    render.kv_table(
        f"LoRA warm-up {output}",
        [
            ("trained on", f"{r_['docs']:,} documents, {r_['steps']:,} optimiser steps"),
            ("adapters", f"{', '.join(r_['targets'])}: {r_['parameters']:,} parameters"),
            ("checkpoints", f"{r_['checkpoints']} under {output}/checkpoints/"),
            ("last loss", f"{r_['final_loss']:.3f}"),
        ],
    )
