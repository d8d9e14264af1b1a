"""Every command of the CLI, enumerated from the app itself, over hostile inputs: never a
traceback; either correct handling (exit 0) or exit 1 with `error:` naming the file (and the
row group and row where one is at fault).

A new command is covered without editing this file as long as its required options have names
that `OPTION_VALUES` knows; one that does not makes `test_every_command_is_covered` fail, saying
which option needs a value. Commands run in this process (`curate.cli.app.main`), one worker.
"""

from __future__ import annotations

import gzip
import json
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import typer

from curate.cli.app import app, main

# ------------------------------------------------------------------------------------ hostile inputs
CORRUPT = (  # exit 1, the file named
    "not_parquet",
    "truncated",
    "zero_bytes",
    "missing_text",
    "invalid_utf8",
    "bad_json_line",
    "truncated_gzip",
)
EMPTY = ("zero_rows", "all_null_text")  # exit 0, or exit 1 with a clean error (nothing to select)
VALID = ("dictionary", "large_string", "binary", "long_line")  # valid text: exit 0
KINDS = CORRUPT + EMPTY + VALID


def _base(texts: list[str]) -> pa.Table:
    """Real text plus the columns the commands read (scores, labels, clusters, embeddings)."""
    n = len(texts)
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return pa.table(
        {
            "id": [f"doc-{i}" for i in range(n)],
            "text": texts,
            "score": rng.normal(size=n),
            "label": [i % 2 for i in range(n)],
            "n_tokens": [max(1, len(t) // 4) for t in texts],
            "lm_loss": rng.uniform(1, 4, size=n),
            "kmeans_cluster": pa.array([i % 2 for i in range(n)], pa.int32()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 8),
            "influence_by_example": pa.FixedSizeListArray.from_arrays(pa.array(emb[:, :4].ravel()), 4),
        },
        metadata={b"curate:influence_tasks": json.dumps(["a", "a", "b", "b"]).encode()},  # for bids
    )


def _with_text(t: pa.Table, column: pa.Array) -> pa.Table:
    return t.set_column(t.schema.get_field_index("text"), pa.field("text", column.type), column)


SUFFIX = {"bad_json_line": ".jsonl", "truncated_gzip": ".jsonl.gz"}


def hostile_path(folder: Path, kind: str) -> Path:
    return folder / f"{kind}{SUFFIX.get(kind, '.parquet')}"


def write_hostile(kind: str, base: pa.Table, path: Path) -> None:
    texts = base.column("text").to_pylist()
    lines = [json.dumps({"id": r["id"], "text": r["text"], "score": r["score"]}) for r in base.to_pylist()]
    if kind == "bad_json_line":
        lines[5] = lines[5][:-3]
        path.write_text("\n".join(lines) + "\n")
    elif kind == "truncated_gzip":
        data = gzip.compress(("\n".join(lines) + "\n").encode())
        path.write_bytes(data[: len(data) // 2])
    elif kind == "not_parquet":
        path.write_bytes(b"id,text\n1,this is a CSV file with a .parquet name\n")
    elif kind == "truncated":
        pq.write_table(base, path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "zero_bytes":
        path.write_bytes(b"")
    elif kind == "missing_text":
        pq.write_table(base.drop_columns(["text"]), path)
    elif kind == "invalid_utf8":
        raw = [t.encode() for t in texts]
        raw[3] = b"bad \xff\xfe bytes " + raw[3]
        pq.write_table(_with_text(base, pa.array(raw, pa.binary()).view(pa.string())), path)
    elif kind == "zero_rows":
        pq.write_table(base.slice(0, 0), path)
    elif kind == "all_null_text":
        pq.write_table(_with_text(base, pa.nulls(base.num_rows, pa.string())), path)
    elif kind == "dictionary":
        pq.write_table(_with_text(base, pa.array(texts).dictionary_encode()), path)
    elif kind == "large_string":
        pq.write_table(_with_text(base, pa.array(texts, pa.large_string())), path)
    elif kind == "binary":
        pq.write_table(_with_text(base, pa.array([t.encode() for t in texts], pa.binary())), path)
    elif kind == "long_line":
        pq.write_table(_with_text(base, pa.array(["x" * 5_000_000, *texts[1:]])), path)
    else:
        raise AssertionError(kind)


# ------------------------------------------------------------------------------------ the commands
def commands() -> Iterator[tuple[tuple[str, ...], Any]]:
    """(command path, click command) for every leaf command of the app (typer's click types)."""

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
        if hasattr(cmd, "commands"):
            for name, sub in sorted(cmd.commands.items()):
                yield from walk(sub, (*path, name))
        else:
            yield path, cmd

    yield from walk(typer.main.get_command(app), ())


def _is_argument(param: Any) -> bool:
    return bool(param.param_type_name == "argument")


COMMANDS = dict(commands())
DATASET_OPTIONS = ("target", "raw", "positive", "negative", "data", "previous")
NO_DATASET = {
    ("demo",): "builds its own pool from this machine's text; reads no dataset",
    ("check",): "judges a stats JSON (tests/test_checks.py feeds it bad ones); reads no dataset",
    ("report",): "reads a finished run's manifest (tests/test_reports.py gives it a folder without one)",
    ("diff",): "compares two stats JSONs or run folders (tests/test_reports.py); reads no dataset",
}


@dataclass
class Fixtures:
    good: Path  # a valid dataset of the same rows
    target: Path
    importance_model: Path
    fasttext_model: Path
    lm_model: Path
    hf_model: Path


# Values for required options, by option name; `--model` depends on the command.
OPTION_VALUES: dict[str, Callable[[Fixtures, tuple[str, ...]], str]] = {
    "budget": lambda f, c: "docs:2",
    "by": lambda f, c: "score" if c == ("resample",) else "lm_loss",
    "column": lambda f, c: "score",
    "columns": lambda f, c: "score",
    "label": lambda f, c: "label",
    "model": lambda f, c: str(
        {
            ("score", "importance"): f.importance_model,
            ("score", "fasttext"): f.fasttext_model,
            ("score", "lm"): f.lm_model,
            ("score", "influence"): f.lm_model,  # trained with warm-up checkpoints
            ("train", "lora"): f.hf_model,
        }[c]
    ),
    "task": lambda f, c: f"target={f.target}",
}
# Options that keep runs small, passed whenever a command has them.
SPEED = {
    "k": "2",
    "max_iter": "2",
    "steps": "2",
    "dim": "16",
    "layers": "1",
    "heads": "1",
    "context": "16",
    "epoch": "1",
    "batch_size": None,  # each command's default
    "max_per_class": "10",
    "epochs": "1",
    "r": "2",
    "alpha": "4",
    "max_length": "16",
}
# Options a command needs one of (so not `required` to click), passed whenever it has them.
ONE_OF = {"keep_top": "50%", "columns": "score"}
# Commands that never read the text column: invalid UTF-8 in it is theirs to ignore.
TEXT_NOT_READ = {("train", "combine"): "reads only the score and label columns"}
ARTIFACT = {("importance", "fit"): "m.npz", ("train", "fasttext"): "q.bin", ("train", "combine"): "w.json"}


def argv_for(path: tuple[str, ...], cmd: Any, hostile: Path, out: Path, f: Fixtures) -> list[str]:
    """The command line that runs `path` on `hostile`."""
    if path == ("run",):
        recipe = out.parent / f"{out.name}.toml"
        recipe.write_text(
            f'[select]\npool = "{hostile}"\noutput = "{out}"\ntarget = "{f.target}"\nbudget = "docs:2"\n'
        )
        return ["run", str(recipe), "--no-progress"]
    argv = list(path)
    positional_dataset = any(_is_argument(p) and p.nargs == -1 for p in cmd.params)
    for p in cmd.params:
        name = p.name or ""
        if _is_argument(p):
            argv.append(str(hostile) if p.nargs == -1 else str(out))
            continue
        flag = p.opts[0] if p.opts[0].startswith("--") else p.opts[-1]
        if name in DATASET_OPTIONS and (p.required or not positional_dataset):
            if name == "previous":
                continue
            argv += [flag, str(f.target if positional_dataset and name == "target" else hostile)]
        elif name == "output" and p.required:
            argv += [flag, str(out.parent / f"{out.name}-{ARTIFACT.get(path, 'artifact')}")]
        elif p.required:
            if name not in OPTION_VALUES:
                raise KeyError(f"`curate {' '.join(path)}` needs --{name}: add a value to OPTION_VALUES")
            argv += [flag, OPTION_VALUES[name](f, path)]
        elif name in ONE_OF:
            argv += [flag, ONE_OF[name]]
        elif name in SPEED and SPEED[name] is not None:
            argv += [flag, SPEED[name]]  # type: ignore[list-item]
        elif name == "workers":
            argv += [flag, "1"]
        elif name == "no_progress":
            argv.append(flag)
    return argv


def run_cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """Exit status and stderr of `curate ARGV`; any exception escaping main() fails the test."""
    code = 0
    try:
        main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a traceback a user would see
        pytest.fail(f"`curate {' '.join(argv)}` raised:\n{traceback.format_exc()}")
    return code, capsys.readouterr().err


# ------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def fixtures(corpus, tmp_path_factory: pytest.TempPathFactory) -> Fixtures:  # type: ignore[no-untyped-def]
    from curate.engine.run import run_job
    from curate.jobs.importance_fit import ImportanceFitConfig, importance_fit_job
    from curate.proxy_lm import ProxyLMConfig, TrainSettings, train_proxy_lm
    from curate.stages.quality import FastTextSettings, train_fasttext

    tmp = tmp_path_factory.mktemp("conformance")
    rows = pq.read_table(corpus.pool).to_pylist()
    texts = [r["text"] for r in rows if r["domain"] == "python_docs"][:30]
    texts += [r["text"] for r in rows if r["domain"] == "python_code"][:10]
    base = _base(texts)
    for kind in KINDS:
        write_hostile(kind, base, hostile_path(tmp, kind))
    pq.write_table(base, tmp / "good.parquet")
    (tmp / "split").mkdir()
    pq.write_table(base.slice(0, 20), tmp / "split" / "a.parquet")
    (tmp / "split" / "b.jsonl").write_text("".join(json.dumps(r) + "\n" for r in base.slice(20).to_pylist()))
    imp = tmp / "imp.npz"
    run_job(
        importance_fit_job(
            ImportanceFitConfig(target=str(corpus.target), pool=str(tmp / "good.parquet"), output=str(imp))
        ),
        workers=1,
    )
    ft = tmp / "q.bin"
    train_fasttext(texts[:20], texts[20:], ft, settings=FastTextSettings(epoch=1))
    lm = tmp / "lm"
    train_proxy_lm(
        texts,
        lm,
        ProxyLMConfig(context=16, dim=16, layers=1, heads=1),
        TrainSettings(steps=2, batch_size=2, warmup=1, device="cpu", checkpoints=2),
    )
    return Fixtures(
        good=tmp / "good.parquet",
        target=corpus.target,
        importance_model=imp,
        fasttext_model=ft,
        lm_model=lm,
        hf_model=_tiny_gpt2(tmp / "gpt2", texts),
    )


def _tiny_gpt2(folder: Path, texts: list[str]) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(texts, vocab_size=300, min_frequency=2, special_tokens=["<|endoftext|>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    tok.save_pretrained(folder)
    GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=32, n_embd=16, n_layer=1, n_head=2)
    ).save_pretrained(folder)
    return folder


# ------------------------------------------------------------------------------------ tests
def test_every_command_is_covered(fixtures: Fixtures, tmp_path: Path) -> None:
    """Every command reads a dataset (or is listed in NO_DATASET), and the test can build its
    command line; the good dataset runs cleanly through each."""
    assert len(COMMANDS) >= 25
    for path, cmd in COMMANDS.items():
        if path in NO_DATASET:
            continue
        reads = any(_is_argument(p) and p.nargs == -1 for p in cmd.params) or any(
            p.name in DATASET_OPTIONS for p in cmd.params
        )
        assert reads or path == ("run",), f"`curate {' '.join(path)}` reads no dataset: add it to NO_DATASET"
        argv_for(path, cmd, fixtures.good, tmp_path / ("-".join(path) + "-out"), fixtures)


@pytest.mark.parametrize("path", [p for p in COMMANDS if p not in NO_DATASET], ids=" ".join)
def test_command_on_hostile_inputs(
    path: tuple[str, ...], fixtures: Fixtures, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    failures = []
    folder = fixtures.good.parent
    for kind in KINDS:
        hostile = hostile_path(folder, kind)
        argv = argv_for(path, COMMANDS[path], hostile, tmp_path / f"out-{kind}", fixtures)
        code, err = run_cli(argv, capsys)
        problem = None
        if code not in (0, 1):
            problem = f"exit {code}"
        elif code == 1 and not err.startswith("error: "):
            problem = "exit 1 without an `error:` line"
        elif (
            kind in CORRUPT
            and code != 1
            and (kind, path) != ("missing_text", ("inspect",))  # it describes a table without text
            and not (kind == "invalid_utf8" and path in TEXT_NOT_READ)
        ):
            problem = "a corrupt input was accepted"
        elif kind in CORRUPT and code == 1 and hostile.name not in err:
            problem = "the error does not name the file"
        elif kind == "invalid_utf8" and code == 1 and "row" not in err:
            problem = "the error does not name the row"
        elif kind in VALID and code != 0:
            problem = "valid text was refused"
        if problem:
            failures.append(f"{kind}: {problem}\n  $ curate {' '.join(argv)}\n  {err.strip()[:600]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize(
    "path",
    [p for p, c in COMMANDS.items() if any(_is_argument(x) and x.nargs == -1 for x in c.params)],
    ids=" ".join,
)
def test_several_inputs_in_order(
    path: tuple[str, ...], fixtures: Fixtures, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command that takes IN... accepts several paths (a Parquet and a JSONL file here)."""
    split = fixtures.good.parent / "split"
    argv = argv_for(path, COMMANDS[path], split / "a.parquet", tmp_path / "out", fixtures)
    i = argv.index(str(split / "a.parquet"))
    argv.insert(i + 1, str(split / "b.jsonl"))
    code, err = run_cli(argv, capsys)
    assert code == 0, f"$ curate {' '.join(argv)}\n{err}"
