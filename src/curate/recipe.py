"""TOML recipes: the CLI's commands as steps, for CI data jobs.

    [[step]]
    run = "score importance"     # any command: select, dedup minhash, filter gopher, ...
    model = "imp.npz"            # its options, in snake case (--ngram-order: ngram_order)
    input = "pool/"              # IN (a string or a list), OUT is `output`, POOL is `pool`
    output = "scored/"

`checks = ["kl_reduction >= 0.2", ...]` on a step judges its stats JSON once it has run (see
curate.checks): a failed check stops the recipe with exit 3, the step's outputs kept.
`[select]` is a shorthand for one `run = "select"` step. A step's keys are exactly its command's
options, read from the command itself, so a new option is a recipe key with no change here.
Keys are strict: an unknown key is an error naming the step and the key, with the closest one.
Paths are relative to the recipe's folder. Each step runs its command, so it resumes like it.
"""

from __future__ import annotations

import json
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from curate.errors import RecipeError, did_you_mean

# Parameters that name files or folders (resolved against the recipe's folder).
PATH_PARAMS = {
    "input",
    "pool",
    "path",
    "output",
    "target",
    "raw",
    "positive",
    "negative",
    "data",
    "previous",
    "model",
    "rejected",
    "weights_file",
    "cluster_scores",
    "stats_json",
    "report",
    "summary_md",
    "quality",
    "tokenizer",
    "recipe",
}
ENCODINGS = {"cl100k", "o200k", "cl100k_base", "o200k_base"}
RUN_FLAGS = (
    "workers",
    "overwrite",
    "no_progress",
    "keep_going",
    "executor",
    "ray_address",
)  # passed to each step
RECIPE_DEFAULTS = ("executor", "ray_address")  # top-level keys: each step's, unless it sets its own


def commands() -> dict[str, Any]:
    """Every leaf command of the CLI by its name ("score importance"), as click commands."""
    import typer

    from curate.cli.app import app

    found: dict[str, Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found[" ".join(path)] = cmd

    walk(typer.main.get_command(app), ())
    found.pop("run", None)  # a recipe does not run recipes
    return found


@dataclass
class Step:
    kind: str
    argv: list[str]
    where: str
    command: Any
    checks: list[str] = field(default_factory=list)


@dataclass
class Recipe:
    path: Path
    steps: list[Step]
    defaults: dict[str, str] = field(default_factory=dict)  # top-level executor, ray_address

    def execute(
        self,
        *,
        workers: int = 0,
        overwrite: bool = False,
        no_progress: bool = False,
        keep_going: bool = False,
        executor: str | None = None,
        ray_address: str | None = None,
    ) -> list[int]:
        """Run the steps in order; their exit statuses. A step that ends non-zero (--keep-going
        left shards out) does not stop the recipe, which then exits 1 at the end."""
        import typer

        flags = {
            "workers": workers,
            "overwrite": overwrite,
            "no_progress": no_progress,
            "keep_going": keep_going,
            "executor": executor or self.defaults.get("executor"),
            "ray_address": ray_address or self.defaults.get("ray_address"),
        }
        from curate.checks import FAILED_CHECK_EXIT
        from curate.cli import publish

        codes = []
        for step in self.steps:
            argv = step.argv + _run_flags(step.command, flags, step.argv)
            # A command with --check judges the checks itself (its report and summary show
            # them); for the others the recipe judges the step's stats JSON afterwards.
            own = step.checks and any(p.name == "check" for p in step.command.params)
            if own:
                argv += [a for c in step.checks for a in ("--check", c)]
            with tempfile.TemporaryDirectory(prefix="curate-recipe-") as tmp:
                stats = _stats_path(argv, Path(tmp)) if step.checks and not own else None
                if stats is not None and "--stats-json" not in argv:
                    argv += ["--stats-json", str(stats)]
                publish.STEP_COMMAND = ["curate", *step.kind.split(), *argv]
                try:
                    code = step.command.main(
                        args=argv, prog_name=f"curate {step.kind}", standalone_mode=False
                    )
                finally:
                    publish.STEP_COMMAND = None
                if code == FAILED_CHECK_EXIT:
                    raise typer.Exit(FAILED_CHECK_EXIT)
                codes.append(int(code or 0))
                if stats is not None and not code:
                    from curate.cli.options import judge

                    if judge(json.loads(stats.read_text()), step.checks):
                        raise typer.Exit(FAILED_CHECK_EXIT)
        if any(codes):
            raise typer.Exit(1)
        return codes


def _stats_path(argv: list[str], tmp: Path) -> Path:
    """The step's own --stats-json, or one in `tmp`."""
    if "--stats-json" in argv:
        return Path(argv[argv.index("--stats-json") + 1])
    return tmp / "stats.json"


def _checks(table: dict[str, Any], command: Any, where: str) -> list[str]:
    from curate.checks import check_syntax

    value = table.pop("checks", [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(c, str) for c in items):
        raise RecipeError(f'{where}.checks: expected a list of check strings, e.g. ["kl_reduction >= 0.2"]')
    if items and not any(p.name == "stats_json" for p in command.params):
        raise RecipeError(f"{where}.checks: this command writes no stats JSON to check")
    for c in items:
        check_syntax(c, f"{where}.checks")
    return items


def _run_flags(command: Any, flags: dict[str, Any], argv: list[str]) -> list[str]:
    out: list[str] = []
    for p in command.params:
        if p.name in RUN_FLAGS and not any(o in argv for o in p.opts) and flags[p.name]:
            out += [p.opts[0]] if p.is_flag else [p.opts[0], str(flags[p.name])]
    return out


def _keys(command: Any) -> dict[str, Any]:
    """Recipe key -> click parameter: each parameter's name, and its long flags in snake case."""
    keys: dict[str, Any] = {}
    for p in command.params:
        if p.name in ("help",):
            continue
        keys[p.name] = p
        for opt in getattr(p, "opts", []) + getattr(p, "secondary_opts", []):
            if opt.startswith("--") and opt not in getattr(p, "secondary_opts", []):
                keys.setdefault(opt[2:].replace("-", "_"), p)
    return keys


def _resolve(name: str, value: str, base: Path) -> str:
    from curate.io.stores import is_uri

    if name not in PATH_PARAMS or value == "-" or Path(value).is_absolute() or is_uri(value):
        return value
    if name == "tokenizer" and value.lower() in ENCODINGS:
        return value
    return str(base / value)


def _argv(kind: str, command: Any, table: dict[str, Any], base: Path, where: str) -> list[str]:
    """The command line a step's table stands for, checked by the command's own parser."""
    keys = _keys(command)
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in keys:
            raise RecipeError(
                f"{where}: unknown key {key!r}{did_you_mean(key, keys)}",
                hint=f"keys of {kind}: {', '.join(sorted(p.name for p in command.params if p.name != 'help'))}",
            )
        values[keys[key].name] = (key, value)
    options: list[str] = []
    for p in command.params:
        if p.name not in values:
            continue
        key, value = values[p.name]
        if p.param_type_name == "argument":
            items = value if isinstance(value, list) else [value]
            if not all(isinstance(v, str) for v in items) or (p.nargs == 1 and isinstance(value, list)):
                raise RecipeError(
                    f"{where}.{key}: expected {'a path or a list of paths' if p.nargs != 1 else 'a path'}"
                )
            continue
        flag = p.opts[0] if p.opts[0].startswith("--") else p.opts[-1]
        if p.is_flag:
            if not isinstance(value, bool):
                raise RecipeError(f"{where}.{key}: expected true or false, got {value!r}")
            if value:
                options.append(flag)
            elif p.secondary_opts:
                options.append(p.secondary_opts[0])
            continue
        if isinstance(value, bool | dict | list):
            raise RecipeError(
                f"{where}.{key}: expected a string or a number, got {type(value).__name__} {value!r}"
            )
        options += [flag, _resolve(p.name, str(value), base) if isinstance(value, str) else str(value)]
    # Positionals in the command's order (IN... before OUT); options after them.
    ordered: list[str] = []
    for p in command.params:
        if p.param_type_name == "argument" and p.name in values:
            key, value = values[p.name]
            items = value if isinstance(value, list) else [value]
            ordered += [_resolve(p.name, v, base) for v in items]
    argv = ordered + options
    _check_parses(kind, command, argv, where, {keys[k].name: k for k in table})
    return argv


def _check_parses(kind: str, command: Any, argv: list[str], where: str, key_of: dict[str, str]) -> None:
    """Let the command's parser judge the step now, before any step runs."""
    from typer._click import exceptions as click_exceptions

    try:
        command.make_context(f"curate {kind}", list(argv), resilient_parsing=False)
    except click_exceptions.MissingParameter as exc:
        name = (exc.param.name if exc.param is not None else None) or "?"
        raise RecipeError(f"{where}: {kind} needs key {name!r} ({exc.format_message()})") from None
    except click_exceptions.BadParameter as exc:
        name = (exc.param.name if exc.param is not None else None) or "?"
        raise RecipeError(f"{where}.{key_of.get(name, name)}: {exc.format_message()}") from None
    except click_exceptions.UsageError as exc:
        raise RecipeError(f"{where}: {exc.format_message()}") from None


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise RecipeError(f"{path}: no such recipe") from exc
    except tomllib.TOMLDecodeError as exc:
        raise RecipeError(f"{path}: not valid TOML ({exc})") from exc
    top = {"select", "step", *RECIPE_DEFAULTS}
    defaults = {k: data.pop(k) for k in RECIPE_DEFAULTS if k in data}
    for key, value in defaults.items():
        if not isinstance(value, str):
            raise RecipeError(f'{path}: {key} must be a string, e.g. {key} = "ray"')
    if defaults.get("executor", "local") not in ("local", "ray"):
        raise RecipeError(f"{path}: executor must be local or ray, got {defaults['executor']!r}")
    for key in data:
        if key not in top:
            raise RecipeError(
                f"{path}: unknown table {key!r}{did_you_mean(key, top)}",
                hint="a recipe has [select] or [[step]] tables, and optionally executor and ray_address keys",
            )
    known = commands()
    tables: list[tuple[str, str, dict[str, Any]]] = []
    if "select" in data:
        if not isinstance(data["select"], dict):
            raise RecipeError(f"{path}: [select] must be a table")
        tables.append(("select", f"{path}: [select]", dict(data["select"])))
    for i, raw in enumerate(data.get("step", [])):
        where = f"{path}: [[step]] #{i + 1}"
        if not isinstance(raw, dict) or "run" not in raw:
            raise RecipeError(f"{where}: needs a `run` key", hint=f"run = one of: {', '.join(sorted(known))}")
        kind = raw["run"]
        if kind not in known:
            raise RecipeError(
                f"{where}.run: unknown step {kind!r}{did_you_mean(str(kind), known)}",
                hint=f"a step runs one command: {', '.join(sorted(known))}",
            )
        tables.append((kind, f"{where} ({kind})", {k: v for k, v in raw.items() if k != "run"}))
    if not tables:
        raise RecipeError(f"{path}: the recipe has no [select] or [[step]] table")
    steps = []
    for kind, where, t in tables:
        checks = _checks(t, known[kind], where)
        steps.append(Step(kind, _argv(kind, known[kind], t, path.parent, where), where, known[kind], checks))
    return Recipe(path=path, steps=steps, defaults=defaults)
