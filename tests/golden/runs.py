"""Golden runs: every command on the committed golden corpus, and digests of what each writes.

The digests in `digests.json` are the output bytes' content (Parquet rows and schema, npz
arrays, model files) of each run; `tests/test_golden.py` checks that the code still writes
them. Outputs of runs that train or score with torch (`Run.tolerant`) are compared with a
tolerance on their floats instead: torch's matrix kernels (oneDNN picks its blocking by the
CPU's caches) round differently from one machine to the next, by ~1e-6 relative. A change that means to alter an output regenerates them, by hand and never by a test:

    python tests/golden/runs.py --update      # or: make golden

Runs are in this process with one worker and one torch thread, in order (later runs read
earlier ones' outputs).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus"
DIGESTS = HERE / "digests.json"


@dataclass(frozen=True)
class Run:
    name: str
    command: str  # split on spaces; {pool}, {target} and {w} (the work folder) are filled in
    outputs: str = ""  # what it writes, relative to the work folder, space-separated
    tolerant: bool = False  # torch arithmetic: floats compared within FLOAT_RTOL, the rest exactly

    @property
    def argv(self) -> list[str]:
        return self.command.split()


RUNS: tuple[Run, ...] = (
    Run("select", "select {pool} {w}/sel --target {target} --budget 20K --group-by domain", "sel"),
    Run(
        "select-prefilter-diversity",
        "select {pool} {w}/seldiv --target {target} --budget docs:30 --dedup exact --diversity 4",
        "seldiv",
    ),
    Run(
        "select-minhash",
        "select {pool} {w}/selmh --target {target} --budget bytes:60K --dedup minhash --top-k",
        "selmh",
    ),
    Run("importance-fit", "importance fit --target {target} --raw {pool} -o {w}/imp.npz", "imp.npz"),
    Run("score-importance", "score importance --model {w}/imp.npz {pool} {w}/scored", "scored"),
    Run("resample", "resample {w}/scored {w}/resampled --by dsir_log_weight --budget 10K", "resampled"),
    Run(
        "resample-top-k", "resample {w}/scored {w}/topk --by dsir_log_weight --budget docs:9 --top-k", "topk"
    ),
    Run("featurize", "featurize {pool} {w}/feat --buckets 512", "feat"),
    Run("dedup-exact", "dedup exact {pool} {w}/dx", "dx"),
    Run("dedup-minhash", "dedup minhash {pool} {w}/dm", "dm"),
    Run(
        "train-fasttext",
        "train fasttext --positive {target} --negative {pool} -o {w}/q.bin --epoch 3",
        "q.bin",
    ),
    Run("score-fasttext", "score fasttext --model {w}/q.bin {pool} {w}/ft", "ft"),
    Run(
        "filter-threshold",
        "filter threshold {w}/ft {w}/ftop --column fasttext_quality --keep-top 30% --rejected {w}/frej",
        "ftop frej",
    ),
    Run("score-heuristics", "score heuristics {pool} {w}/heur", "heur"),
    Run("filter-gopher", "filter gopher {pool} {w}/gopher --rejected {w}/gopher-rej", "gopher gopher-rej"),
    Run("filter-c4", "filter c4 {w}/heur {w}/c4", "c4"),
    Run("filter-fineweb", "filter fineweb {pool} {w}/fineweb", "fineweb"),
    Run(
        "score-combine",
        "score combine {w}/heur {w}/comb --columns gopher_words,fineweb_line_punct_ratio --weights 1,-0.5",
        "comb",
    ),
    Run(
        "train-combine",
        "train combine {w}/heur -o {w}/w.json --columns gopher_mean_word_length,c4_sentences --label label",
    ),
    Run("score-combine-learned", "score combine {w}/heur {w}/comb2 --weights-file {w}/w.json", "comb2"),
    Run(
        "train-lm",
        "train lm --data {target} -o {w}/lm --steps 20 --dim 16 --layers 1 --heads 2 --context 32 "
        "--batch-size 4 --threads 1 --device cpu --checkpoints 2",
        "lm",
        tolerant=True,
    ),
    Run(
        "score-lm",
        "score lm --model {w}/lm {pool} {w}/lmscored --device cpu --el2n",
        "lmscored",
        tolerant=True,
    ),
    Run("reweight", "reweight {w}/lmscored {w}/rw --by lm_loss", "rw", tolerant=True),
    Run(
        "score-influence",
        "score influence {pool} {w}/inf --model {w}/lm --task docs={target} --task code={pool}/part-00000.parquet "
        "--dim 64 --device cpu",
        "inf",
        tolerant=True,
    ),
    Run("bids", "bids {w}/inf {w}/bids --budget docs:12", "bids", tolerant=True),
    Run("embed", "embed {pool} {w}/emb --dim 32", "emb"),
    Run("cluster", "cluster {w}/emb {w}/cl --k 4", "cl"),
    Run("diversify", "diversify {w}/cl {w}/div --budget docs:20 --group-by domain", "div"),
    Run(
        "diversify-refine",
        "diversify {w}/cl {w}/div2 --budget docs:10 --previous {w}/div --score-column label",
        "div2",
    ),
    Run("inspect", "inspect {w}/sel --json"),
    Run("run", "run {w}/recipe.toml", "recipe-out"),
)
# Commands with no golden run, and why.
NOT_RUN = {
    ("demo",): "its pool is this machine's own text by design (tests/test_cli.py runs it)",
    ("check",): "writes nothing: it judges a stats JSON (tests/test_checks.py)",
    (
        "report",
    ): "its page shows the run's timings; tests/test_reports.py checks it rebuilds --report's bytes",
    ("diff",): "writes nothing: it prints what moved between two stats (tests/test_reports.py)",
    ("train", "lora"): "needs a Hugging Face model folder; tests/test_influence.py builds a tiny Llama",
}
RECIPE = """[[step]]
run = "score importance"
model = "{w}/imp.npz"
input = "{pool}"
output = "{w}/recipe-scored"

[[step]]
run = "resample"
input = "{w}/recipe-scored"
output = "{w}/recipe-out"
by = "dsir_log_weight"
budget = "docs:12"
"""
SKIP_FILES = ("_manifest.json", "_curate_work")
STATS = "_stats"  # each run's --stats-json, checked against the documented schema


# ------------------------------------------------------------------------------------ digests
def _json_value(v: Any) -> Any:
    if isinstance(v, bytes):
        return v.hex()
    raise TypeError(type(v).__name__)


def _array_digest(h: Any, name: str, a: Any) -> None:
    import numpy as np

    h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
    h.update(np.ascontiguousarray(a).tobytes())


def file_digest(path: Path) -> str:
    """Content digest: Parquet by schema and rows (not bytes, which carry the writer's version),
    npz and safetensors by arrays, anything else by bytes."""
    h = hashlib.sha256()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        h.update(json.dumps([[f.name, str(f.type)] for f in t.schema]).encode())
        h.update(json.dumps(t.to_pydict(), default=_json_value, sort_keys=True).encode())
    elif path.suffix == ".npz":
        import numpy as np

        with np.load(path, allow_pickle=False) as z:
            for k in sorted(set(z.files) - {"metadata"}):  # metadata: provenance, with paths
                _array_digest(h, k, z[k])
    elif path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        for k, a in sorted(load_file(str(path)).items()):
            _array_digest(h, k, a)
    else:
        h.update(path.read_bytes())
    return h.hexdigest()[:20]


# Tolerant digests: the exact digest of everything but float values (schema, ids, texts, which
# rows, null masks, list lengths), and per float column or array its count of NaN and infinite
# values and, in each of BUCKETS groups of positions (by a hash of the position, so values that
# trade rows show), the sum of the values and of their magnitudes. A group's sum is compared
# within FLOAT_RTOL of its sum of magnitudes. Between five of torch's kernel choices (oneDNN at
# SSE4.1, AVX2, AVX-512 or off; ATen at AVX2 or AVX-512) a group moved 1.4e-5 at most (an AdamW
# moment of a layer norm), 35x below; training at a learning rate 1% off moves one 2x above.
FLOAT_RTOL = 5e-4
BUCKETS = 8


def float_sums(values: Any) -> list[float]:
    """[count, NaN, +inf, -inf, then per bucket: sum, sum of magnitudes]."""
    import numpy as np

    v = np.asarray(values, dtype=np.float64).ravel()
    counts = [v.size, int(np.isnan(v).sum()), int((v == np.inf).sum()), int((v == -np.inf).sum())]
    v = np.where(np.isfinite(v), v, 0.0)
    bucket = (np.arange(v.size, dtype=np.uint64) * np.uint64(2654435761) >> np.uint64(15)) % np.uint64(
        BUCKETS
    )
    sums = np.bincount(bucket.astype(np.intp), weights=v, minlength=BUCKETS)
    magnitudes = np.bincount(bucket.astype(np.intp), weights=np.abs(v), minlength=BUCKETS)
    return [*counts, *(float(x) for pair in zip(sums, magnitudes, strict=True) for x in pair)]


def _split_column(name: str, col: Any, h: Any, floats: dict[str, list[float]]) -> None:
    import pyarrow as pa
    import pyarrow.compute as pc

    col = col.combine_chunks()
    nested = (
        pa.types.is_list(col.type)
        or pa.types.is_large_list(col.type)
        or pa.types.is_fixed_size_list(col.type)
    )
    if nested and pa.types.is_floating(col.type.value_type):
        h.update(json.dumps(pc.list_value_length(col).to_pylist()).encode())
        col = pc.list_flatten(col)
    if not pa.types.is_floating(col.type):
        h.update(json.dumps(col.to_pylist(), default=_json_value).encode())
        return
    h.update(json.dumps(col.is_null().to_pylist()).encode())
    floats[name] = float_sums(col.fill_null(0).to_numpy(zero_copy_only=False))


def tolerant_digest(path: Path) -> dict[str, Any]:
    """`file_digest`'s content with float values summarised as `float_sums`."""
    import numpy as np

    h = hashlib.sha256()
    floats: dict[str, list[float]] = {}
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        t = pq.read_table(path)
        h.update(json.dumps([[f.name, str(f.type)] for f in t.schema]).encode())
        for name in t.column_names:
            _split_column(name, t[name], h, floats)
        return {"exact": h.hexdigest()[:20], "floats": floats}
    if path.suffix == ".safetensors":
        from safetensors.numpy import load_file

        arrays = load_file(str(path))
    elif path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in set(z.files) - {"metadata"}}
    else:
        return {"exact": file_digest(path), "floats": {}}
    for k, a in sorted(arrays.items()):
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        if np.issubdtype(a.dtype, np.floating):
            floats[k] = float_sums(a)
        else:
            h.update(np.ascontiguousarray(a).tobytes())
    return {"exact": h.hexdigest()[:20], "floats": floats}


def tolerant_mismatch(expected: dict[str, Any], got: dict[str, Any]) -> str:
    """Why two tolerant digests differ, or "" when they agree."""
    if expected["exact"] != got["exact"] or set(expected["floats"]) != set(got["floats"]):
        return f"non-float content {expected['exact']} -> {got['exact']}"
    for name, want in sorted(expected["floats"].items()):
        have = got["floats"][name]
        if want[:4] != have[:4]:
            return f"{name}: count, NaN, +inf, -inf {want[:4]} -> {have[:4]}"
        for b in range(4, len(want), 2):
            scale = max(want[b + 1], have[b + 1]) * FLOAT_RTOL + 1e-30
            off = max(abs(want[b] - have[b]), abs(want[b + 1] - have[b + 1])) / scale
            if off > 1.0:
                return f"{name}: a group's sums {want[b : b + 2]} -> {have[b : b + 2]} ({off:.0f}x the tolerance)"
    return ""


def files_of(root: Path) -> Iterator[Path]:
    if root.is_file():
        yield root
        return
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        hidden = any(part.startswith((*SKIP_FILES, ".")) for part in rel.parts)
        if p.is_file() and not hidden and p.suffix != ".json":  # .json: timings, paths, versions
            yield p


def command_paths() -> dict[tuple[str, ...], Any]:
    """Every leaf command of the app, by its path."""
    import typer

    from curate.cli.app import app

    found: dict[tuple[str, ...], Any] = {}

    def walk(cmd: Any, path: tuple[str, ...]) -> None:
        if hasattr(cmd, "commands"):
            for name, sub in cmd.commands.items():
                walk(sub, (*path, name))
        else:
            found[path] = cmd

    walk(typer.main.get_command(app), ())
    return found


def option_names(argv: list[str]) -> set[str]:
    commands = command_paths()
    for n in (2, 1):
        if tuple(argv[:n]) in commands:
            return {p.name for p in commands[tuple(argv[:n])].params}
    raise KeyError(argv[:2])


def run_all(work: Path) -> dict[str, dict[str, Any]]:
    """Run every golden command in `work`; the digests of what each wrote."""
    import torch

    from curate.cli.app import main

    torch.set_num_threads(1)
    os.environ["HF_HUB_OFFLINE"] = "1"
    fill = {"pool": str(CORPUS / "pool"), "target": str(CORPUS / "target.parquet"), "w": str(work)}
    (work / "recipe.toml").write_text(RECIPE.format(**fill))
    (work / STATS).mkdir(exist_ok=True)
    out: dict[str, dict[str, str]] = {}
    for run in RUNS:
        argv = [a.format(**fill) for a in run.argv]
        params = option_names(argv)
        argv += ["--workers", "1"] if "workers" in params and "--workers" not in argv else []
        argv += ["--no-progress"] if "no_progress" in params else []
        if "stats_json" in params and "--stats-json" not in argv:  # for the schema check
            argv += ["--stats-json", str(work / STATS / f"{run.name}.json")]
        try:
            main(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):
                raise AssertionError(f"golden run {run.name} failed: curate {' '.join(argv)}") from exc
        digests: dict[str, Any] = {}
        for name in run.outputs.split():
            root = work / name
            for f in files_of(root):
                digests[str(f.relative_to(work))] = tolerant_digest(f) if run.tolerant else file_digest(f)
        out[run.name] = digests
    return out


# torch's CPU kernels are chosen by the CPU's vector unit (AVX2, AVX-512) and round differently;
# pinning them to AVX2 (on every x86 machine CI may use) and MKL to its reproducible mode makes
# the digests the same on any of them. The runs happen in a child process so that the pins hold.
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "1",
    "HF_HUB_OFFLINE": "1",
}


def schema_gaps(folder: Path) -> list[str]:
    """Every stats field a golden run wrote that the documented schema does not name."""
    from curate.stats import undocumented

    gaps = []
    for path in sorted(folder.glob("*.json")):
        gaps += [f"{path.stem}: {g}" for g in undocumented(json.loads(path.read_text()))]
    return gaps


def changes(expected: dict[str, dict[str, Any]], got: dict[str, dict[str, Any]]) -> list[str]:
    out = [f"runs added or removed: {sorted(set(got) ^ set(expected))}"] if set(got) != set(expected) else []
    for run in sorted(set(got) & set(expected)):
        for name in sorted(set(got[run]) | set(expected[run])):
            want, have = expected[run].get(name), got[run].get(name)
            if isinstance(want, dict) and isinstance(have, dict):
                why = tolerant_mismatch(want, have)
                out += [f"{run}: {name}: {why}"] if why else []
            elif want != have:
                out.append(f"{run}: {name}: {want} -> {have}")
    return out


def main() -> None:
    import tempfile

    if sys.argv[1:] not in (["--update"], ["--check"]):
        raise SystemExit("usage: python tests/golden/runs.py --update | --check")
    if any(os.environ.get(k) != v for k, v in PINNED_ENV.items()):
        import subprocess

        code = subprocess.run(
            [sys.executable, __file__, *sys.argv[1:]], env={**os.environ, **PINNED_ENV}
        ).returncode
        raise SystemExit(code)
    import contextlib

    with (
        tempfile.TemporaryDirectory(prefix="curate-golden-") as tmp,
        open(os.devnull, "w") as quiet,
        contextlib.redirect_stdout(quiet),
        contextlib.redirect_stderr(quiet),
    ):
        digests = run_all(Path(tmp))
        undocumented = schema_gaps(Path(tmp) / STATS)
    if sys.argv[1] == "--update":
        text = json.dumps(digests, indent=1, sort_keys=True)
        text = re.sub(r"\[\s+([^\[\]{}]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m[1]) + "]", text)
        DIGESTS.write_text(text + "\n")  # float sums one list a line
        print(f"wrote {DIGESTS}: {sum(len(v) for v in digests.values())} files from {len(digests)} runs")
        return
    if undocumented:
        print(
            "stats fields missing from curate.stats (docs/stats.md):\n" + "\n".join(undocumented),
            file=sys.stderr,
        )
        raise SystemExit(1)
    diff = changes(json.loads(DIGESTS.read_text()), digests)
    print("outputs changed:\n" + "\n".join(diff) if diff else "golden outputs unchanged", file=sys.stderr)
    raise SystemExit(1 if diff else 0)


if __name__ == "__main__":
    main()
