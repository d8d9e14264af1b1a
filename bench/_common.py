"""Shared helpers for the benchmarks (each bench script prints one JSON line)."""

from __future__ import annotations

import os
import resource
import sysconfig
from pathlib import Path

import pyarrow as pa


def real_texts(max_bytes: int = 200_000_000) -> pa.Array:
    """Real text on this machine: Python's stdlib sources and docs, Debian package docs."""
    from curate.testing import SOURCES

    texts: list[str] = []
    size = 0
    for domain in SOURCES:
        for _, text in SOURCES[domain]():
            texts.append(text)
            size += len(text.encode())
            if size >= max_bytes:
                return pa.array(texts, type=pa.large_string())
    root = Path(sysconfig.get_paths()["stdlib"])
    for p in sorted(root.rglob("*.py")):
        try:
            texts.append(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
        size += len(texts[-1].encode())
        if size >= max_bytes:
            break
    return pa.array(texts, type=pa.large_string())


def peak_rss_mb(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024


def cores() -> int:
    return len(os.sched_getaffinity(0))


def compile_curate() -> str:
    """Compile curate's modules to bytecode, as `pip install` does, so that timed commands start
    the way an installed curate does. An editable install under PYTHONDONTWRITEBYTECODE (this
    machine's default) otherwise compiles every module from source in every process: ~0.08 CPU-s
    per command. Returns where the package is."""
    import compileall

    import curate

    root = Path(curate.__file__).parent
    compileall.compile_dir(str(root), quiet=1)
    return str(root)
