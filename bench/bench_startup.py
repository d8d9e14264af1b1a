"""Start-up cost of every command: CPU seconds from process start to the moment it would begin
reading data (the entry of `run_job`, or of `inspect_dataset`), and of `--help`. Prints one JSON
line. Target: every command under 0.15 CPU-s. Run with the dev extras installed:

    python bench/bench_startup.py

A probe process runs the real CLI with `run_job` replaced by a stub that reports the process's
CPU time (user + system, `resource.getrusage`) and exits; nothing else is changed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import compile_curate

PROBE = r"""
import os, resource, sys
def stop(*a, **k):
    r = resource.getrusage(resource.RUSAGE_SELF)
    print("CPU", r.ru_utime + r.ru_stime, file=sys.__stderr__)
    os._exit(0)
import curate.engine.run, curate.inspect
curate.engine.run.run_job = stop
curate.inspect.inspect_dataset = stop
sys.argv = ["curate", *sys.argv[1:]]
from curate.cli.main import main
main()
"""


def cpu_of(argv: list[str], probe: bool = True) -> float:
    code = (
        PROBE
        if probe
        else "import resource,sys\nfrom curate.cli.main import main\nsys.argv=['curate',*sys.argv[1:]]\ntry:\n    main()\nexcept SystemExit:\n    pass\nr=resource.getrusage(resource.RUSAGE_SELF)\nprint('CPU', r.ru_utime + r.ru_stime, file=sys.__stderr__)"
    )
    best = float("inf")
    for _ in range(3):  # the least of three: start-up is noisy on a shared machine
        res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
        lines = [x for x in res.stderr.splitlines() if x.startswith("CPU ")]
        if not lines:
            raise RuntimeError(f"curate {' '.join(argv)} did not reach its job:\n{res.stderr[-2000:]}")
        best = min(best, float(lines[-1].split()[1]))
    return round(best, 3)


def baseline(imports: str = "") -> float:
    """CPU seconds of a bare Python process importing `imports` (least of three)."""
    code = f"{imports}\nimport resource; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)"
    runs = [
        float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout)
        for _ in range(3)
    ]
    return round(min(runs), 3)


def main() -> None:
    compile_curate()  # commands start as an installed curate's do (bytecode, not source)
    from curate.testing import build_corpus

    with tempfile.TemporaryDirectory(prefix="curate-startup-") as tmp:
        t = Path(tmp)
        c = build_corpus(t / "c", max_bytes_per_domain=80_000, shards=2)
        pool, target = str(c.pool), str(c.target)

        def run(*a: str) -> None:
            res = subprocess.run([sys.executable, "-m", "curate.cli.app", *a], capture_output=True, text=True)
            if res.returncode:
                raise RuntimeError(f"curate {' '.join(a)}: {res.stderr[-2000:]}")

        run("importance", "fit", "--target", target, "--raw", pool, "-o", str(t / "m.npz"))
        run(
            "train",
            "fasttext",
            "--positive",
            target,
            "--negative",
            pool,
            "-o",
            str(t / "q.bin"),
            "--epoch",
            "1",
        )
        run("train", "lm", "--data", target, "-o", str(t / "lm"), "--steps", "2", "--dim", "16", "--layers", "1",
            "--heads", "2", "--context", "16", "--no-progress")  # fmt: skip
        run("score", "importance", "--model", str(t / "m.npz"), pool, str(t / "scored"))
        out = str(t / "out")
        commands = {
            "select": ["select", pool, out, "--target", target, "--budget", "10K"],
            "importance fit": [
                "importance",
                "fit",
                "--target",
                target,
                "--raw",
                pool,
                "-o",
                str(t / "m2.npz"),
            ],
            "score importance": ["score", "importance", "--model", str(t / "m.npz"), pool, out],
            "score heuristics": ["score", "heuristics", pool, out],
            "score fasttext": ["score", "fasttext", "--model", str(t / "q.bin"), pool, out],
            "score lm": ["score", "lm", "--model", str(t / "lm"), pool, out],
            "resample": ["resample", str(t / "scored"), out, "--by", "dsir_log_weight", "--budget", "10K"],
            "featurize": ["featurize", pool, out],
            "dedup exact": ["dedup", "exact", pool, out],
            "dedup minhash": ["dedup", "minhash", pool, out],
            "filter gopher": ["filter", "gopher", pool, out],
            "filter threshold": [
                "filter",
                "threshold",
                str(t / "scored"),
                out,
                "--column",
                "dsir_log_weight",
                "--keep-top",
                "10%",
            ],
            "embed": ["embed", pool, out],
            "cluster": ["cluster", pool, out, "--k", "2"],
            "diversify": ["diversify", pool, out, "--budget", "docs:5"],
            "reweight": ["reweight", pool, out, "--by", "n_tokens"],
            "train fasttext": [
                "train",
                "fasttext",
                "--positive",
                target,
                "--negative",
                pool,
                "-o",
                str(t / "q2.bin"),
            ],
            "train lm": ["train", "lm", "--data", target, "-o", str(t / "lm2")],
            "inspect": ["inspect", pool],
        }
        to_read = {name: cpu_of(argv) for name, argv in commands.items()}
        help_s = {
            "curate --help": cpu_of(["--help"], probe=False),
            "select --help": cpu_of(["select", "--help"], probe=False),
        }
    # What reading Parquet needs whatever the tool: Python, numpy and pyarrow with its compute and
    # parquet modules. curate's own start-up is what a command costs beyond that.
    readers = baseline("import numpy, pyarrow, pyarrow.compute, pyarrow.parquet")
    overhead = {k: round(v - readers, 3) for k, v in to_read.items()}
    worst = max(overhead, key=lambda k: overhead[k])
    print(
        json.dumps(
            {
                "bench": "startup",
                "python_cpu_s": baseline(),
                "numpy_pyarrow_cpu_s": readers,
                "help_cpu_s": help_s,
                "to_first_read_cpu_s": to_read,
                "curate_overhead_cpu_s": overhead,
                "worst_overhead": {worst: overhead[worst]},
                "target_overhead_cpu_s": 0.15,
                "commands_over_target": sorted(k for k, v in overhead.items() if v > 0.15),
            }
        )
    )


if __name__ == "__main__":
    main()
