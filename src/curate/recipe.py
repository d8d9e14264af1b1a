"""TOML recipes: the same plans as the CLI, for CI data jobs.

    [select]                      # one `curate select`
    pool = "pool/"
    output = "out/"
    target = "wiki.parquet"
    budget = "10B"

or a sequence of steps, each one CLI command:

    [[step]]
    run = "importance fit"        # importance fit | score importance | resample | featurize | select
    target = "wiki.parquet"
    raw = "pool/"
    output = "imp.npz"

Paths are relative to the recipe's folder. Keys are strict: an unknown key is an error that
names it, says where it is, and suggests the closest allowed key.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curate.errors import RecipeError, did_you_mean

_PATH_KEYS = {"pool", "output", "target", "raw", "model", "input", "stats_json", "tokenizer", "quality"}


def _select_keys() -> dict[str, type]:
    from curate.select import SelectConfig

    return {f.name: f.type for f in dataclasses.fields(SelectConfig)}  # type: ignore[misc]


STEP_KEYS: dict[str, dict[str, tuple[type, ...]]] = {
    "importance fit": {
        "target": (str,),
        "raw": (str,),
        "output": (str,),
        "seed": (int,),
        "tokenizer": (str,),
        "text_column": (str,),
        "target_text_column": (str,),
        "length_norm": (str,),
        "min_words": (int,),
        "buckets": (int,),
        "order": (int,),
        "target_laplace": (float, int),
        "raw_features": (str, int),
    },
    "score importance": {
        "model": (str,),
        "input": (str,),
        "output": (str,),
        "tokenizer": (str,),
        "text_column": (str,),
        "id_column": (str,),
    },
    "resample": {
        "input": (str,),
        "output": (str,),
        "by": (str,),
        "budget": (str,),
        "seed": (int,),
        "top_k": (bool,),
        "temperature": (float, int),
        "tokens_column": (str,),
        "policy": (str,),
        "text_column": (str,),
        "id_column": (str,),
    },
    "featurize": {
        "input": (str,),
        "output": (str,),
        "buckets": (int,),
        "order": (int,),
        "lowercase": (bool,),
        "text_column": (str,),
    },
}
REQUIRED = {
    "importance fit": ("target", "raw", "output"),
    "score importance": ("model", "input", "output"),
    "resample": ("input", "output", "by", "budget"),
    "featurize": ("input", "output"),
    "select": ("pool", "output", "target", "budget"),
}
SELECT_TYPES: dict[str, tuple[type, ...]] = {
    "pool": (str,),
    "output": (str,),
    "target": (str,),
    "budget": (str,),
    "seed": (int,),
    "tokenizer": (str,),
    "text_column": (str,),
    "id_column": (str,),
    "target_text_column": (str,),
    "group_by": (str,),
    "buckets": (int,),
    "order": (int,),
    "lowercase": (bool,),
    "length_norm": (str,),
    "ref_words": (int,),
    "min_words": (int,),
    "target_laplace": (float, int),
    "raw_features": (str, int),
    "top_k": (bool,),
    "temperature": (float, int),
    "policy": (str,),
    "batch_size": (int,),
    "stats_json": (str,),
    "dedup": (str,),
    "quality": (str,),
    "quality_keep": (str,),
    "diversity": (int,),
    "diversity_allocation": (str,),
}


@dataclass
class Step:
    kind: str
    params: dict[str, Any]
    where: str


@dataclass
class Recipe:
    path: Path
    steps: list[Step]

    def execute(self, *, workers: int = 0, overwrite: bool = False, no_progress: bool = False) -> list[Any]:
        results = []
        for step in self.steps:
            results.append(_RUNNERS[step.kind](step.params, workers, overwrite, no_progress))
        return results


def _check(
    table: dict[str, Any], allowed: dict[str, tuple[type, ...]], where: str, kind: str
) -> dict[str, Any]:
    for key, value in table.items():
        if key not in allowed:
            raise RecipeError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}",
                hint=f"allowed keys for {kind}: {', '.join(sorted(allowed))}",
            )
        types = allowed[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            names = " or ".join(t.__name__ for t in types)
            raise RecipeError(f"{where}.{key}: expected {names}, got {type(value).__name__} {value!r}")
    missing = [k for k in REQUIRED[kind] if k not in table]
    if missing:
        raise RecipeError(f"{where}: missing required key(s) {', '.join(missing)} for {kind}")
    return dict(table)


def _resolve_paths(params: dict[str, Any], base: Path) -> dict[str, Any]:
    out = dict(params)
    for k in _PATH_KEYS & out.keys():
        v = out[k]
        if k == "tokenizer" and v.lower() in {"cl100k", "o200k", "cl100k_base", "o200k_base"}:
            continue
        if isinstance(v, str) and v != "-" and not Path(v).is_absolute():
            out[k] = str(base / v)
    return out


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: no such recipe") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from exc
    base = path.parent
    steps: list[Step] = []
    top = {"select", "step"}
    for key in data:
        if key not in top:
            raise RecipeError(
                f"{path}: unknown table {key!r}{did_you_mean(key, top)}",
                hint="a recipe has [select] or [[step]] tables",
            )
    if "select" in data:
        if not isinstance(data["select"], dict):
            raise RecipeError(f"{path}: [select] must be a table")
        params = _check(data["select"], SELECT_TYPES, f"{path}: [select]", "select")
        steps.append(Step("select", _resolve_paths(params, base), f"{path}: [select]"))
    for i, raw in enumerate(data.get("step", [])):
        where = f"{path}: [[step]] #{i + 1}"
        if not isinstance(raw, dict) or "run" not in raw:
            raise RecipeError(
                f"{where}: needs a `run` key", hint=f"run = one of: {', '.join([*STEP_KEYS, 'select'])}"
            )
        kind = raw["run"]
        rest = {k: v for k, v in raw.items() if k != "run"}
        if kind == "select":
            params = _check(rest, SELECT_TYPES, where, "select")
        elif kind in STEP_KEYS:
            params = _check(rest, STEP_KEYS[kind], where, kind)
        else:
            raise RecipeError(
                f"{where}.run: unknown step {kind!r}{did_you_mean(kind, [*STEP_KEYS, 'select'])}"
            )
        steps.append(Step(kind, _resolve_paths(params, base), where))
    if not steps:
        raise RecipeError(f"{path}: the recipe has no [select] or [[step]] table")
    return Recipe(path=path, steps=steps)


# ---------------------------------------------------------------------------------- runners
def _run_select(p: dict[str, Any], workers: int, overwrite: bool, no_progress: bool) -> Any:
    from curate.cli import render
    from curate.select import SelectConfig, select

    p = dict(p)
    stats = p.pop("stats_json", None)
    if "raw_features" in p:
        p["raw_features"] = str(p["raw_features"])
    if "temperature" in p:
        p["temperature"] = float(p["temperature"])
    if "target_laplace" in p:
        p["target_laplace"] = float(p["target_laplace"])
    progress = render.RichProgress(not no_progress)
    try:
        res = select(SelectConfig(**p), workers=workers, overwrite=overwrite, progress=progress)
    finally:
        progress.close()
    render.select_report(res.summary)
    if stats:
        import json

        from curate.io.outputs import write_bytes_atomic

        write_bytes_atomic(Path(stats), json.dumps(res.summary, indent=2, sort_keys=True).encode())
    return res


def _run_fit(p: dict[str, Any], workers: int, overwrite: bool, no_progress: bool) -> Any:
    from curate.executors.local import resolve_workers
    from curate.io.inputs import discover
    from curate.select import FitConfig, fit_importance

    p = dict(p)
    output = p.pop("output")
    raw = p.pop("raw")
    if "raw_features" in p:
        p["raw_features"] = str(p["raw_features"])
    from curate.progress import NoProgress

    cfg = FitConfig(pool=raw, **p)
    model = fit_importance(
        cfg,
        discover(raw),
        discover(cfg.target),
        workers=resolve_workers(workers),
        progress=NoProgress(),
        timings={},
    )
    return model.save(output)


def _run_score(p: dict[str, Any], workers: int, overwrite: bool, no_progress: bool) -> Any:
    from curate.io.inputs import Columns
    from curate.pipeline import Pipeline
    from curate.runner import run_map
    from curate.select import counter_from_model
    from curate.stages.importance import ImportanceModel, ImportanceScorer

    m = ImportanceModel.load(p["model"])
    stage = ImportanceScorer(model=m, counter=counter_from_model(m, p.get("tokenizer")))
    cols = Columns(text=p.get("text_column", "text"), id=p.get("id_column"))
    return run_map(
        Pipeline(stages=(stage,)), p["input"], p["output"], columns=cols, workers=workers, overwrite=overwrite
    )


def _run_resample(p: dict[str, Any], workers: int, overwrite: bool, no_progress: bool) -> Any:
    from curate.budget import parse_budget
    from curate.io.inputs import Columns
    from curate.runner import run_resample
    from curate.stages.resample import GumbelTopK

    sel = GumbelTopK(
        by=p["by"],
        budget=parse_budget(p["budget"]),
        seed=p.get("seed", 0),
        top_k=p.get("top_k", False),
        temperature=float(p.get("temperature", 1.0)),
        policy=p.get("policy", "cover"),
        tokens_column=p.get("tokens_column", "n_tokens"),
    )
    cols = Columns(text=p.get("text_column", "text"), id=p.get("id_column"))
    return run_resample(sel, p["input"], p["output"], columns=cols, workers=workers, overwrite=overwrite)


def _run_featurize(p: dict[str, Any], workers: int, overwrite: bool, no_progress: bool) -> Any:
    from curate.io.inputs import Columns
    from curate.native import HashSpec
    from curate.pipeline import Pipeline
    from curate.runner import run_map
    from curate.stages.features import NgramFeaturizer

    spec = HashSpec(
        buckets=p.get("buckets", 10_000), order=p.get("order", 2), lowercase=p.get("lowercase", True)
    )
    cols = Columns(text=p.get("text_column", "text"))
    return run_map(
        Pipeline(stages=(NgramFeaturizer(spec=spec),)),
        p["input"],
        p["output"],
        columns=cols,
        workers=workers,
        overwrite=overwrite,
    )


_RUNNERS: dict[str, Callable[[dict[str, Any], int, bool, bool], Any]] = {
    "select": _run_select,
    "importance fit": _run_fit,
    "score importance": _run_score,
    "resample": _run_resample,
    "featurize": _run_featurize,
}
