"""The n-gram kernel alone, in C++ with symbols, on real text: where its time goes.

Builds bench/kernel_harness.cpp against src/native/kernel.hpp with the wheel's optimisation
flags plus -g, writes this machine's real text to a scratch folder, and prints one JSON line:
MB/s on one core for tokenising with token hashes only, for the fit's histogram, and for the
score's dot product, and the tokeniser's share of the fit. With --perf it also records the fit
under `perf` and prints the hottest source lines (to stderr), which Python-level profilers
cannot show: the wheel's module is stripped and runs the kernel on a std::thread.

    python bench/profile_kernel.py [--mb 30] [--perf]
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


def hottest_lines(exe: Path, work: Path, top: int = 25) -> str:
    data = work / "fit.perf"
    argv = [str(exe), "fit", str(work / "data.bin"), str(work / "offsets.bin"), "5"]
    subprocess.run(
        ["perf", "record", "-q", "-e", "cpu-clock", "-o", str(data), *argv], check=True, capture_output=True
    )
    out = subprocess.run(
        ["perf", "annotate", "-i", str(data), "--stdio", "-l"], capture_output=True, text=True
    ).stdout
    # the summary lines of `annotate -l`: "<percent> kernel.hpp:<line>"
    rows = [ln.split() for ln in out.splitlines()]
    hot = [r for r in rows if len(r) == 2 and r[1].startswith("kernel.hpp:") and _is_number(r[0])]
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
    ap.add_argument("--perf", action="store_true", help="also print the fit's hottest source lines")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="curate-kernel-") as tmp:
        work = Path(tmp)
        exe = build(work)
        mb = write_texts(work, args.mb)
        rates = {mode: run(exe, work, mode) for mode in ("tokenise", "fit", "score")}
        if args.perf:
            print(hottest_lines(exe, work), file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "kernel_profile",
                "text_mb": round(mb, 1),
                "tokenise_with_hashes_mb_s_1core": round(rates["tokenise"], 1),
                "fit_mb_s_1core": round(rates["fit"], 1),
                "score_mb_s_1core": round(rates["score"], 1),
                "tokeniser_share_of_fit": round(rates["fit"] / rates["tokenise"], 3),
            }
        )
    )


if __name__ == "__main__":
    main()
