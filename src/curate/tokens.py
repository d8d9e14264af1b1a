"""Token counters. Every budget report names the counter it used.

- exact: an OpenAI encoding shipped offline by `bpe-openai` (`cl100k`, `o200k`), or a Hugging Face
  `tokenizer.json` given by path (through `tokenizers`);
- estimate: a·words + UTF-8 bytes/b, calibrated on a sample of the pool against an exact counter.
  It is ~10x cheaper than exact counting and is what selection cuts on by default; pass 1 also
  counts a seeded sample exactly to correct the cut, and the selected documents are counted
  exactly, so budgets and reports are in exact cl100k tokens. bpe-openai is a dependency: there
  is no fixed bytes-per-token guess anywhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from curate import arrow_ops
from curate.errors import MissingDependencyError, UsageError

_ENCODINGS = {
    "cl100k": "cl100k_base",
    "cl100k_base": "cl100k_base",
    "o200k": "o200k_base",
    "o200k_base": "o200k_base",
}


def _bpe_bindings() -> Any:
    """bpe-openai's compiled core, loaded without the package's __init__.

    The package imports every encoding's tables at import time (~1.2 s, paid again in every
    worker process); the Rust core alone loads one encoding on demand in ~30 ms. Its count()
    avoids building token lists.
    """
    import importlib.machinery
    import importlib.util
    import os

    spec = importlib.util.find_spec("bpe_openai")
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "exact OpenAI token counts need the bpe-openai package", hint="pip install bpe-openai"
        )
    for folder in spec.submodule_search_locations:
        for name in sorted(os.listdir(folder)):
            if name.startswith("_bindings") and name.endswith((".so", ".pyd")):
                loader = importlib.machinery.ExtensionFileLoader(
                    "bpe_openai._bindings", os.path.join(folder, name)
                )
                mod_spec = importlib.util.spec_from_loader("bpe_openai._bindings", loader)
                assert mod_spec is not None
                module = importlib.util.module_from_spec(mod_spec)
                loader.exec_module(module)
                return module
    import warnings

    with warnings.catch_warnings():  # the package loads its tables through a deprecated importlib API
        warnings.simplefilter("ignore", DeprecationWarning)
        from bpe_openai import _bindings

        return _bindings


@cache
def _bpe(encoding: str) -> Any:
    return _bpe_bindings().tokenizer_for_encoding(encoding)


@cache
def _hf(path: str) -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError as exc:
        raise MissingDependencyError(
            "a tokenizer.json needs the tokenizers package", hint="pip install tokenizers"
        ) from exc
    try:
        return Tokenizer.from_file(path)
    except Exception as exc:
        raise UsageError(
            f"cannot load tokenizer {path!r}: {exc}", hint="pass a Hugging Face tokenizer.json"
        ) from exc


def _as_pylist(texts: pa.Array | pa.ChunkedArray) -> list[str | None]:
    return texts.to_pylist()


def utf8_lengths(texts: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Bytes per document (0 for nulls)."""
    lengths = arrow_ops.fill_null(arrow_ops.binary_length(texts), 0)
    return np.asarray(lengths.to_numpy(zero_copy_only=False), dtype=np.int64)


@dataclass(frozen=True, kw_only=True)
class TokenCounter:
    """A named way to count tokens. `kind` is 'bpe', 'hf' or 'bytes'."""

    kind: str
    name: str
    bytes_per_token: float = 0.0
    per_word: float = 0.0  # estimate = per_word * kernel tokens + bytes / bytes_per_token
    calibration: str = ""

    @property
    def exact(self) -> bool:
        return self.kind != "bytes"

    def describe(self) -> str:
        if self.kind == "bpe":
            return f"exact {self.name} (bpe-openai)"
        if self.kind == "hf":
            return f"exact tokenizer.json {self.name}"
        if self.per_word:
            return f"estimate: {self.per_word:.3f} x words + UTF-8 bytes / {self.bytes_per_token:.2f} ({self.calibration})"
        return f"estimate: UTF-8 bytes / {self.bytes_per_token:.3f} bytes per token ({self.calibration})"

    def count(self, texts: pa.Array | pa.ChunkedArray, *, words: np.ndarray | None = None) -> np.ndarray:
        """Tokens per document (int64; 0 for null or empty text).

        `words` (the kernel's token counts, when the caller already has them) saves the estimate
        a second tokenising pass.
        """
        if self.kind == "bytes":
            est = utf8_lengths(texts) / self.bytes_per_token
            if self.per_word:
                if words is None:
                    from curate import native

                    words = native.token_counts(texts, threads=1)
                est = est + self.per_word * words
            return np.ceil(est).astype(np.int64)
        out = np.zeros(len(texts), np.int64)
        values = _as_pylist(texts)
        if self.kind == "bpe":
            tok = _bpe(self.name)
            for i, t in enumerate(values):
                if t:
                    out[i] = tok.count(t)
        else:
            tok = _hf(self.name)
            idx = [i for i, t in enumerate(values) if t]
            if idx:
                enc = tok.encode_batch([values[i] for i in idx], add_special_tokens=False)
                out[idx] = [len(e.ids) for e in enc]
        return out


def exact_counter(spec: str) -> TokenCounter:
    """`cl100k`, `o200k`, or the path of a Hugging Face tokenizer.json."""
    key = spec.strip()
    if key.lower() in _ENCODINGS:
        _bpe(_ENCODINGS[key.lower()])  # fail now (missing package), not in a worker
        return TokenCounter(kind="bpe", name=_ENCODINGS[key.lower()])
    path = Path(key)
    if path.is_dir() and (path / "tokenizer.json").exists():
        path = path / "tokenizer.json"
    if not path.exists():
        raise UsageError(
            f"unknown tokenizer {spec!r}: not an encoding name and no such file",
            hint="use cl100k, o200k, or the path of a Hugging Face tokenizer.json",
        )
    _hf(str(path))  # fail now, not in a worker
    return TokenCounter(kind="hf", name=str(path))


def bytes_counter(bytes_per_token: float, calibration: str, per_word: float = 0.0) -> TokenCounter:
    if not (bytes_per_token > 0 and math.isfinite(bytes_per_token)):
        raise UsageError(f"bytes per token must be positive, got {bytes_per_token}")
    return TokenCounter(
        kind="bytes",
        name="bytes",
        bytes_per_token=bytes_per_token,
        per_word=per_word,
        calibration=calibration,
    )


def calibrate(sample: pa.Array | pa.ChunkedArray, reference: TokenCounter | None = None) -> TokenCounter:
    """A token estimate fitted on a sample with an exact counter (cl100k by default): tokens ≈
    a·words + bytes/b by least squares (bytes alone when the fit is degenerate). With nothing to
    fit on (no text in the sample) it is the exact counter itself: never a guessed ratio."""
    reference = reference or exact_counter("cl100k")
    tokens = reference.count(sample)
    nbytes = utf8_lengths(sample)
    n_docs = int((tokens > 0).sum())
    if tokens.sum() == 0:
        return reference
    # Words (the kernel's word/punctuation runs) and bytes together predict BPE counts better
    # than bytes alone (code and prose differ in bytes per token, less so in tokens per word).
    from curate import native

    words = native.token_counts(sample, threads=1).astype(np.float64)
    x = np.stack([words, nbytes.astype(np.float64)], axis=1)
    coef, *_ = np.linalg.lstsq(x, tokens.astype(np.float64), rcond=None)
    # Least squares without an intercept does not make residuals sum to zero: on real pools its
    # totals were 2-5% off (low or high). Rescaled so the sample's total is exact, the pool's is
    # unbiased.
    predicted = float((x @ coef).sum())
    if predicted > 0:
        coef = coef * (float(tokens.sum()) / predicted)
    what = f"calibrated against {reference.name} on {n_docs:,} sampled documents"
    if n_docs >= 20 and coef[0] > 0 and coef[1] > 0:
        return bytes_counter(float(1.0 / coef[1]), what, per_word=float(coef[0]))
    ratio = float(nbytes.sum() / tokens.sum())
    return bytes_counter(ratio, what)
