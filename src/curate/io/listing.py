"""Which files a local dataset spec names, and their formats (by suffix)."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from curate.errors import InputDataError

PARQUET_SUFFIXES = (".parquet", ".pq")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".jsonl.zst", ".json.gz", ".ndjson")
IPC_SUFFIXES = (".arrow", ".ipc", ".feather")


def format_of(path: str) -> str | None:
    lower = path.lower()
    if lower.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if lower.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if lower.endswith(IPC_SUFFIXES):
        return "ipc"
    return None


def local_files(spec: str) -> list[tuple[str, str]]:
    """(path, name relative to the spec) of each shard a local file, folder or glob names."""
    paths: list[tuple[str, str]] = []
    p = Path(spec)
    if p.is_dir():
        for f in sorted(p.rglob("*")):
            if (
                f.is_file()
                and format_of(f.name)
                and not any(part.startswith(("_", ".")) for part in f.relative_to(p).parts)
            ):
                paths.append((str(f), str(f.relative_to(p))))
    elif p.is_file():
        if format_of(p.name) is None:
            raise InputDataError(
                f"{spec}: unknown file type",
                hint="inputs are .parquet, .jsonl, .jsonl.gz, .jsonl.zst or .arrow files, or folders of them",
            )
        paths.append((str(p), p.name))
    else:
        matches = sorted(glob.glob(spec, recursive=True))
        if not matches:
            raise InputDataError(f"{spec}: no such file, folder or glob match")
        for m in matches:
            if os.path.isfile(m) and format_of(m):
                paths.append((m, os.path.basename(m)))
    if not paths:
        raise InputDataError(
            f"{spec}: no .parquet, .jsonl(.gz/.zst) or .arrow files found",
            hint="point at a folder of shards, a glob such as 'pool/*.parquet', or a single file",
        )
    return paths
