"""Datasets on object stores: `s3://`, `gs://`, `hdfs://` and `file://` URIs, through
`pyarrow.fs` (no extra dependency: the filesystems are part of pyarrow).

Credentials and endpoints come from the environment only, never from a recipe or a report:
for S3 the usual AWS variables, and `AWS_ENDPOINT_URL_S3` or `AWS_ENDPOINT_URL` for an
S3-compatible server (MinIO, Ceph, moto), which pyarrow does not read by itself.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Sequence
from typing import Any

SCHEMES = ("s3://", "gs://", "gcs://", "hdfs://", "file://")
_CACHE: dict[str, Any] = {}  # one filesystem per scheme and endpoint, per process


def is_uri(path: str) -> bool:
    return path.lower().startswith(SCHEMES)


def _s3() -> Any:
    from pyarrow import fs

    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    kwargs: dict[str, Any] = {}
    if endpoint:
        scheme, _, rest = endpoint.partition("://")
        kwargs.update(endpoint_override=rest or scheme, scheme=scheme if rest else "https")
    if region:
        kwargs["region"] = region
    return fs.S3FileSystem(**kwargs)


def resolve(uri: str) -> tuple[Any, str]:
    """The pyarrow filesystem of a URI and the path inside it."""
    from pyarrow import fs

    scheme = uri.split("://", 1)[0].lower()
    if scheme == "s3":
        key = f"s3|{os.environ.get('AWS_ENDPOINT_URL_S3') or os.environ.get('AWS_ENDPOINT_URL')}"
        if key not in _CACHE:
            _CACHE[key] = _s3()
        return _CACHE[key], uri.split("://", 1)[1]
    try:
        filesystem, path = fs.FileSystem.from_uri(uri)
    except Exception as exc:  # pyarrow raises ArrowInvalid / OSError subclasses per scheme
        from curate.errors import InputDataError

        raise InputDataError(f"{uri}: cannot open this store ({exc})") from None
    return filesystem, path


def open_input_file(uri: str) -> Any:
    """A random-access file (Parquet, Arrow IPC)."""
    filesystem, path = resolve(uri)
    return filesystem.open_input_file(path)


def open_input_stream(uri: str) -> Any:
    """A sequential stream, not decompressed (JSONL: the reader decompresses by suffix)."""
    filesystem, path = resolve(uri)
    return filesystem.open_input_stream(path, compression=None)


def _join(uri: str, path: str) -> str:
    return f"{uri.split('://', 1)[0]}://{path}"


def list_files(spec: str) -> list[tuple[str, str, int]]:
    """(uri, name relative to the spec, size) of a file, of every file under a prefix, or of
    the files a glob in the last part of the URI matches; sorted. Names starting with `_` or `.`
    under a prefix are skipped, as in a local folder."""
    from pyarrow import fs

    filesystem, path = resolve(spec)
    if any(c in path for c in "*?["):
        parent, pattern = path.rsplit("/", 1)
        infos = filesystem.get_file_info(fs.FileSelector(parent, recursive=False, allow_not_found=True))
        return sorted(
            (_join(spec, i.path), i.base_name, i.size)
            for i in infos
            if i.type == fs.FileType.File and fnmatch.fnmatch(i.base_name, pattern)
        )
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File:
        return [(spec, info.base_name, info.size)]
    if info.type != fs.FileType.Directory:
        return []
    root = path.rstrip("/")
    out = []
    for i in filesystem.get_file_info(fs.FileSelector(root, recursive=True)):
        rel = i.path[len(root) + 1 :]
        if i.type == fs.FileType.File and not any(part.startswith(("_", ".")) for part in rel.split("/")):
            out.append((_join(spec, i.path), rel, i.size))
    return sorted(out)


# ------------------------------------------------------------------------------------ outputs
def read_bytes(uri: str) -> bytes | None:
    """An object's bytes, or None when there is none."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    if filesystem.get_file_info(path).type != fs.FileType.File:
        return None
    with filesystem.open_input_stream(path, compression=None) as f:
        return bytes(f.read())


def remote_files(uri: str) -> list[str]:
    """Names (relative to the prefix) of every object under an output prefix."""
    return [name for _, name, _ in list_files_all(uri)]


def list_files_all(uri: str) -> list[tuple[str, str, int]]:
    """Like `list_files` under a prefix, hidden and underscore names included."""
    from pyarrow import fs

    filesystem, path = resolve(uri)
    root = path.rstrip("/")
    if filesystem.get_file_info(root).type != fs.FileType.Directory:
        return []
    infos = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    return sorted(
        (_join(uri, i.path), i.path[len(root) + 1 :], i.size) for i in infos if i.type == fs.FileType.File
    )


def upload(local: str, uri: str, names: Sequence[str], *, delete: Sequence[str] = ()) -> None:
    """Copy `names` (files under the local folder, in the order given) to the prefix `uri`:
    each is written to a temporary key and then moved to its name, so that a reader never sees
    half an object, whatever the store (S3 moves by a server-side copy and a delete). The
    caller puts the manifest last: a prefix without it is an unfinished run. `delete` removes
    objects first (a stale temporary key, the files of an overwritten run)."""
    filesystem, path = resolve(uri)
    root = path.rstrip("/")
    for name in delete:
        filesystem.delete_file(f"{root}/{name}")
    for name in names:
        final = f"{root}/{name}"
        parent, base = final.rsplit("/", 1)
        tmp = f"{parent}/.{base}.tmp-{os.getpid()}"
        with (
            open(os.path.join(local, name), "rb") as src,
            filesystem.open_output_stream(tmp, compression=None) as dst,
        ):
            while chunk := src.read(1 << 24):
                dst.write(chunk)
        filesystem.move(tmp, final)


# ---------------------------------------------------------------------------- files and models
def location(path: Any) -> str:
    """A path option's value as given: `pathlib.Path` folds `s3://b/k` to `s3:/b/k`, undone here."""
    import re

    text = str(path)
    if re.match(r"^(s3|gs|gcs|hdfs):/[^/]", text):
        return text.replace(":/", "://", 1)
    if re.match(r"^file:/[^/]", text):
        return text.replace(":/", ":///", 1)
    return text


def cache_folder(uri: str) -> str:
    import hashlib
    from pathlib import Path

    root = Path(os.environ.get("CURATE_CACHE") or Path.home() / ".cache" / "curate" / "fetched")
    return str(root / hashlib.sha1(uri.rstrip("/").encode()).hexdigest()[:16])


def fetch(path: Any) -> str:
    """A local copy of a model or artifact: a local path as is; an object (with its sidecars:
    every object beside it whose name starts with its name, e.g. `q.bin.json`) or a prefix (an
    LM folder) downloaded once into the cache (again when a size changed)."""
    from pathlib import Path

    uri = location(path)
    if not is_uri(uri):
        return uri
    filesystem, key = resolve(uri)
    from pyarrow import fs

    info = filesystem.get_file_info(key)
    if info.type == fs.FileType.NotFound:
        from curate.errors import InputDataError

        raise InputDataError(f"{uri}: no such object or prefix")
    folder = Path(cache_folder(uri))
    if info.type == fs.FileType.Directory:
        objects = [(u, n, size) for u, n, size in list_files_all(uri)]
        local = folder
    else:
        parent = uri.rsplit("/", 1)[0]
        base = uri.rsplit("/", 1)[1]
        objects = [
            (u, n, size) for u, n, size in list_files_all(parent) if "/" not in n and n.startswith(base)
        ]
        local = folder / base
    for obj, name, size in objects:
        target = folder / name
        if target.exists() and target.stat().st_size == size:
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        data = read_bytes(obj) or b""
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return str(local)


def write_bytes(uri: str, data: bytes) -> None:
    """An object written whole: to a temporary key, then moved to its name."""
    filesystem, key = resolve(uri)
    parent, base = key.rsplit("/", 1)
    tmp = f"{parent}/.{base}.tmp-{os.getpid()}"
    with filesystem.open_output_stream(tmp, compression=None) as out:
        out.write(data)
    filesystem.move(tmp, key)
