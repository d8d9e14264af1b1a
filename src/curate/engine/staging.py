"""Outputs on object stores: the job runs into a local staging folder, then its files are
uploaded, the manifest last.

Each file goes to a temporary key and is then moved to its name (`curate.io.stores.upload`), so
a reader never sees half an object, and a prefix without `_manifest.json` is an unfinished run.
A run killed during the upload leaves at most a temporary key (removed by the next upload) and
its staging folder, so a rerun resumes there and uploads again. The staging folder is
`$CURATE_STAGING/<hash of the URI>` (default `~/.cache/curate/staging`); with Ray on several
machines the tasks write into it, so it must be on storage they share.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from curate.engine.job import Job, JobResult
from curate.errors import OutputError
from curate.io.outputs import MANIFEST, WORK_DIR
from curate.io.stores import is_uri, read_bytes, remote_files, upload


def staging_folder(uri: str) -> Path:
    root = Path(os.environ.get("CURATE_STAGING") or Path.home() / ".cache" / "curate" / "staging")
    return root / hashlib.sha1(uri.rstrip("/").encode()).hexdigest()[:16]


def is_staged(job: Job) -> bool:
    return any(f is not None and is_uri(f) for f in (job.output, job.rejected))


def run_staged(run: Callable[..., JobResult], job: Job, *, overwrite: bool = False, **kw: Any) -> JobResult:
    """Run `job` with its object-store outputs staged locally, then upload them."""
    targets = {name: getattr(job, name) for name in ("output", "rejected")}
    local = {n: str(staging_folder(u)) if u and is_uri(u) else u for n, u in targets.items()}
    for name, uri in targets.items():
        if uri and is_uri(uri) and not overwrite and not (Path(local[name]) / MANIFEST).exists():
            _check_remote(uri)
    result = run(
        dataclasses.replace(job, output=local["output"], rejected=local["rejected"]),
        overwrite=overwrite,
        **kw,
    )
    for name, uri in targets.items():
        if uri and is_uri(uri):
            publish_folder(Path(local[name]), uri, overwrite=overwrite)
    result.output, result.local_output = job.output, local["output"]
    return result


def _check_remote(uri: str) -> None:
    names = [n for n in remote_files(uri) if not _temporary(n)]
    if names and MANIFEST not in names:
        raise OutputError(
            f"{uri}: already holds objects that curate did not write (or a run that never finished)",
            hint="choose an empty prefix, or pass --overwrite",
        )


def _temporary(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return base.startswith(".") and ".tmp-" in base


def _fingerprint(data: bytes | None) -> str | None:
    if data is None:
        return None
    try:
        return str(json.loads(data).get("fingerprint"))
    except (json.JSONDecodeError, AttributeError):
        return None


def publish_folder(folder: Path, uri: str, *, overwrite: bool = False, only: tuple[str, ...] = ()) -> None:
    """Upload a finished local output folder to `uri`, its manifest last (or just `only`)."""
    if only:
        upload(str(folder), uri, list(only))
        return
    files = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and WORK_DIR not in p.relative_to(folder).parts and not _temporary(p.name)
    )
    remote = remote_files(uri)
    theirs = _fingerprint(read_bytes(f"{uri.rstrip('/')}/{MANIFEST}")) if MANIFEST in remote else None
    ours = _fingerprint((folder / MANIFEST).read_bytes()) if (folder / MANIFEST).exists() else None
    if theirs is not None and theirs != ours and not overwrite:
        raise OutputError(
            f"{uri}: already holds a different run", hint="choose another prefix, or pass --overwrite"
        )
    stale = [n for n in remote if _temporary(n) or (overwrite and n not in files)]
    data = [f for f in files if f != MANIFEST]
    upload(str(folder), uri, [*data, *([MANIFEST] if MANIFEST in files else [])], delete=stale)
