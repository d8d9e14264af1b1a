"""The n-gram kernel alone, in C++ with symbols, on real text: where its time goes.

Builds bench/kernel_harness.cpp against src/native/kernel.hpp with the wheel's optimisation
flags plus -g, writes this machine's real text to a scratch folder, and prints one JSON line:
MB/s on one core for tokenising with token hashes only, for the fit's histogram, and for the
score's dot product, for the score with `select --diversity`'s hashed embedding, and the
tokeniser's share of the fit. With --perf [MODE] it also records that mode (default: fit)
under `perf` and prints the hottest source lines (to stderr), which Python-level profilers
cannot show: the wheel's module is stripped and runs the kernel on a std::thread.

    python bench/profile_kernel.py [--mb 30] [--perf [fit|score|embed|tokenise]]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa

from _common import real_texts

ROOT = Path(__file__).resolve().parent.parent
MODES = ("tokenise", "fit", "score", "embed")
SOURCES = ("kernel.hpp", "embed.hpp")  # perf's line keys: <file>:<line>


def build(work: Path) -> Path:
    exe = work / "kernel_harness"
    cxx = shutil.which("g++") or shutil.which("c++")
    if cxx is None:
        sys.exit("profile_kernel: no C++ compiler (g++) on PATH")
    subprocess.run(
        [cxx, "-O3", "-g", "-std=gnu++17", f"-I{ROOT / 'src' / 'native'}",
         str(ROOT / "bench" / "kernel_harness.cpp"), "-o", str(exe)],
        check=True,
    )  # fmt: skip
    return exe


def write_texts(work: Path, mb: float) -> float:
    texts = real_texts(int(mb * 1e6)).cast(pa.large_string())
    offsets = np.frombuffer(texts.buffers()[1], np.int64)[: len(texts) + 1]
    data = np.frombuffer(texts.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
    (offsets - offsets[0]).tofile(work / "offsets.bin")
    data.tofile(work / "data.bin")
    return data.nbytes / 1e6


def run(exe: Path, work: Path, mode: str, repeats: int = 5) -> float:
    argv = [str(exe), mode, str(work / "data.bin"), str(work / "offsets.bin"), str(repeats)]
    return float(subprocess.run(argv, check=True, capture_output=True, text=True).stdout.split()[0])


def hottest_lines(exe: Path, work: Path, mode: str, top: int = 25) -> str:
    data = work / f"{mode}.perf"
    argv = [str(exe), mode, str(work / "data.bin"), str(work / "offsets.bin"), "5"]
    subprocess.run(
        ["perf", "record", "-q", "-e", "cpu-clock", "-o", str(data), *argv], check=True, capture_output=True
    )
    out = subprocess.run(
        ["perf", "annotate", "-i", str(data), "--stdio", "-l"], capture_output=True, text=True
    ).stdout
    # the summary lines of `annotate -l`: "<percent> kernel.hpp:<line>"
    rows = [ln.split() for ln in out.splitlines()]
    hot = [r for r in rows if len(r) == 2 and r[1].split(":")[0] in SOURCES and _is_number(r[0])]
    hot.sort(key=lambda r: -float(r[0]))
    return "\n".join(f"{r[0]:>6}% {r[1]}" for r in hot[:top])


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=30.0, help="MB of real text")
    ap.add_argument(
        "--perf",
        nargs="?",
        const="fit",
        choices=MODES,
        help="also print this mode's hottest source lines (default: fit)",
    )
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-kernel-") as tmp:
        work = Path(tmp)
        exe = build(work)
        mb = write_texts(work, args.mb)
        rates = {mode: run(exe, work, mode) for mode in MODES}
        if args.perf:
            print(hottest_lines(exe, work, args.perf), file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "kernel_profile",
                "text_mb": round(mb, 1),
                "tokenise_with_hashes_mb_s_1core": round(rates["tokenise"], 1),
                "fit_mb_s_1core": round(rates["fit"], 1),
                "score_mb_s_1core": round(rates["score"], 1),
                "score_and_embed_mb_s_1core": round(rates["embed"], 1),
                "tokeniser_share_of_fit": round(rates["fit"] / rates["tokenise"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
