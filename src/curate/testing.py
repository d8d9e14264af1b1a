"""Public test helpers: a real multi-domain corpus built from text on this machine.

Every Python installation carries real human-written text: the language reference
(`pydoc_data.topics`), the standard library's docstrings and its source code. Debian-based
machines add package changelogs and copyright files under /usr/share/doc (or the folder the
`CURATE_DOC_DIR` environment variable names; an empty one leaves them out). `build_corpus` cuts
these into documents, labels each with its `domain`, and writes a sharded Parquet pool plus a
target sample drawn from held-out documents of one domain.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import math
import os
import random
import sysconfig
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

DOC_DIR_ENV = (
    "CURATE_DOC_DIR"  # where Debian's documentation lives; point it at an empty folder to leave it out
)


def doc_dir() -> Path:
    return Path(os.environ.get(DOC_DIR_ENV, "/usr/share/doc"))


def _draw(lo: int, hi: int, rng: random.Random) -> int:
    """A document length: uniform in lo..hi, or log-uniform when the range spans 10x or more."""
    if hi >= 10 * lo:
        return int(math.exp(rng.uniform(math.log(lo), math.log(hi))))
    return rng.randint(lo, hi)


def _chunks(text: str, lo: int, hi: int, rng: random.Random) -> Iterator[str]:
    """Paragraph groups of roughly lo..hi words."""
    paras = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    cur: list[str] = []
    words = 0
    goal = _draw(lo, hi, rng)
    for p in paras:
        cur.append(p)
        words += len(p.split())
        if words >= goal:
            yield "\n\n".join(cur)
            cur, words, goal = [], 0, _draw(lo, hi, rng)
    if cur and words >= lo // 2:
        yield "\n\n".join(cur)


def python_docs() -> Iterator[tuple[str, str]]:
    """The Python language reference's topics, as shipped for `help()`."""
    from pydoc_data.topics import topics

    for name in sorted(topics):
        yield f"pydoc:{name}", topics[name]


STDLIB = Path(sysconfig.get_paths()["stdlib"])


def _stdlib_files() -> list[Path]:
    root = STDLIB
    files = [p for p in sorted(root.glob("*.py"))] + sorted(root.glob("[a-z]*/*.py"))
    return [
        p
        for p in files
        if "test" not in p.parts and "site-packages" not in p.parts and "idlelib" not in p.parts
    ]


def python_code() -> Iterator[tuple[str, str]]:
    for p in _stdlib_files():
        try:
            yield f"stdlib:{p.relative_to(STDLIB)}", p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue


def python_docstrings() -> Iterator[tuple[str, str]]:
    """All docstrings of each stdlib module, joined as paragraphs."""
    for p in _stdlib_files():
        try:
            tree = ast.parse(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError):
            continue
        docs = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                d = ast.get_docstring(node)
                if d and len(d.split()) >= 8:
                    docs.append(d)
        if docs:
            yield f"docstrings:{p.relative_to(STDLIB)}", "\n\n".join(docs)


def debian_changelogs() -> Iterator[tuple[str, str]]:
    for p in sorted(doc_dir().glob("*/changelog.Debian.gz")):
        try:
            yield f"changelog:{p.parent.name}", gzip.decompress(p.read_bytes()).decode("utf-8", "replace")
        except (OSError, EOFError):
            continue


def debian_copyright() -> Iterator[tuple[str, str]]:
    for p in sorted(doc_dir().glob("*/copyright")):
        try:
            yield f"copyright:{p.parent.name}", p.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue


SOURCES = {
    "python_docs": python_docs,
    "python_docstrings": python_docstrings,
    "python_code": python_code,
    "debian_changelog": debian_changelogs,
    "debian_copyright": debian_copyright,
}


@dataclass(frozen=True)
class Corpus:
    pool: Path
    target: Path
    domains: dict[str, int]  # documents per domain in the pool
    target_domain: str


def domain_documents(
    domain: str, *, max_bytes: int, seed: int, lo: int = 120, hi: int = 500
) -> list[tuple[str, str]]:
    rng = random.Random(f"{seed}:{domain}")
    out: list[tuple[str, str]] = []
    size = 0
    for source, text in SOURCES[domain]():
        for i, chunk in enumerate(_chunks(text, lo, hi, rng)):
            out.append((f"{source}#{i}", chunk))
            size += len(chunk.encode())
        if size >= max_bytes:
            break
    return out


def build_corpus(
    folder: str | Path,
    *,
    target_domain: str = "python_docs",
    max_bytes_per_domain: int = 2_000_000,
    target_fraction: float = 0.5,
    shards: int = 4,
    row_group_size: int = 256,
    seed: int = 0,
    doc_words: tuple[int, int] = (120, 500),
) -> Corpus:
    """Write `<folder>/pool/part-*.parquet` (id, text, domain, source) and `<folder>/target.parquet`.

    The target is a random `target_fraction` of the target domain's documents; the rest of that
    domain stays in the pool beside the other domains, so precision can be measured. Documents
    are paragraph groups of `doc_words` words (log-uniform when the range spans 10x or more).
    """
    folder = Path(folder)
    (folder / "pool").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    pool_rows: list[dict[str, str]] = []
    target_rows: list[dict[str, str]] = []
    counts: dict[str, int] = {}
    for domain in SOURCES:
        if domain != "python_docs" and domain.startswith("debian") and not doc_dir().exists():
            continue
        docs = domain_documents(
            domain, max_bytes=max_bytes_per_domain, seed=seed, lo=doc_words[0], hi=doc_words[1]
        )
        if not docs:
            continue
        rows = [
            {
                "id": hashlib.sha1(f"{domain}/{src}".encode()).hexdigest()[:16],
                "text": t,
                "domain": domain,
                "source": src,
            }
            for src, t in docs
        ]
        if domain == target_domain:
            rng.shuffle(rows)
            k = int(len(rows) * target_fraction)
            target_rows.extend(rows[:k])
            rows = rows[k:]
        counts[domain] = len(rows)
        pool_rows.extend(rows)
    rng.shuffle(pool_rows)
    per = (len(pool_rows) + shards - 1) // shards
    for i in range(shards):
        part = pool_rows[i * per : (i + 1) * per]
        pq.write_table(
            pa.Table.from_pylist(part, schema=_SCHEMA),
            folder / "pool" / f"part-{i:05d}.parquet",
            row_group_size=row_group_size,
        )
    target = folder / "target.parquet"
    pq.write_table(pa.Table.from_pylist(target_rows, schema=_SCHEMA), target)
    return Corpus(pool=folder / "pool", target=target, domains=counts, target_domain=target_domain)


_SCHEMA = pa.schema(
    [("id", pa.string()), ("text", pa.string()), ("domain", pa.string()), ("source", pa.string())]
)


# ------------------------------------------------------------------------------------ conformance
def check_stage(stage: object, batch: pa.RecordBatch) -> None:
    """Conformance checks every map stage must pass (raises AssertionError naming the failure).

    Empty batch; pass-through columns kept in order and type; input not mutated; deterministic;
    pickle round-trip gives the same output; run(a ++ b) == run(a) ++ run(b).
    """
    import pickle

    from curate.stages.base import Annotator, Filter, StageContext, with_columns

    assert isinstance(stage, Annotator | Filter), f"{type(stage).__name__} is not a map stage"
    stage.setup(StageContext(threads=1))

    def run(s: Annotator | Filter, b: pa.RecordBatch) -> pa.RecordBatch:
        if isinstance(s, Filter):
            return b.filter(pa.array(s.keep(b).keep, type=pa.bool_()))
        cols = s.annotate(b)
        for name, arr in cols.items():
            assert len(arr) == b.num_rows, f"{name}: {len(arr)} rows for a batch of {b.num_rows}"
            expected = s.adds().get(name)
            assert expected is None or arr.type == expected, f"{name}: type {arr.type}, declared {expected}"
        return with_columns(b, cols)

    snapshot = batch.to_pydict()
    out = run(stage, batch)
    assert batch.to_pydict() == snapshot, "the stage mutated its input"
    for name in batch.schema.names:
        if name not in stage.adds():
            assert out.schema.field(name).type == batch.schema.field(name).type, (
                f"pass-through column {name} changed type"
            )
    assert out.schema.names[: len(batch.schema.names)] == batch.schema.names, "pass-through columns reordered"
    assert out.equals(run(stage, batch)), "the stage is not deterministic"
    clone = pickle.loads(pickle.dumps(stage))
    clone.setup(StageContext(threads=1))
    assert out.equals(run(clone, batch)), "a pickled copy gives a different output"
    empty = run(stage, batch.slice(0, 0))
    assert empty.num_rows == 0
    if batch.num_rows >= 2:
        k = batch.num_rows // 2
        joined = pa.Table.from_batches(
            [run(stage, batch.slice(0, k)), run(stage, batch.slice(k))]
        ).combine_chunks()
        assert joined.equals(pa.Table.from_batches([out]).combine_chunks()), "run(a ++ b) != run(a) ++ run(b)"


# ------------------------------------------------------------------------------------ near-duplicates
def near_duplicate_edit(text: str, kind: int, rng: object) -> str:
    """A realistic near-duplicate of `text` (`rng`: a numpy Generator). kind 0: a sentence
    inserted; 1: ~2% of words deleted; 2: the first two paragraphs swapped; 3: boilerplate
    appended."""
    import numpy as np

    assert isinstance(rng, np.random.Generator)
    words = text.split(" ")
    if kind == 0:
        at = int(rng.integers(0, len(words)))
        return " ".join([*words[:at], "This", "paragraph", "was", "added", "later.", *words[at:]])
    if kind == 1:
        drop = set(rng.choice(len(words), size=max(1, len(words) // 50), replace=False).tolist())
        return " ".join(w for i, w in enumerate(words) if i not in drop)
    if kind == 2:
        paras = text.split("\n\n")
        if len(paras) > 2:
            paras[0], paras[1] = paras[1], paras[0]
        return "\n\n".join(paras)
    return text + "\n\nShare this page. Copyright the authors. All rights reserved."


def shingle_jaccard(a: str, b: str, n: int = 5) -> float:
    """True Jaccard similarity of lower-cased word n-gram shingles (what MinHash estimates)."""
    import re

    def shingles(t: str) -> set[tuple[str, ...]]:
        w = re.findall(r"\w+", t.lower())
        return {tuple(w[i : i + n]) for i in range(max(1, len(w) - n + 1))}

    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / max(len(sa | sb), 1)
