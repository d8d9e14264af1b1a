"""The kernel's two builds of its hot loops (baseline and BMI1/BMI2) give the same bits."""

from __future__ import annotations

import json
import os
import subprocess
import sys

# Run in a child process so CURATE_NATIVE_ISA is read before the kernel's first call.
DIGESTS = r"""
import hashlib, json, sys, sysconfig
from pathlib import Path
import numpy as np, pyarrow as pa
from curate import native
from curate.native import HashSpec

root = Path(sysconfig.get_paths()["stdlib"])
texts = [p.read_text(encoding="utf-8") for p in sorted(root.glob("[a-p]*.py"))[:60]]
raw = [bytes(range(256)) * 3, "É中😀\xa0x".encode()[:-2] + b"\xff\xfe"]
arr = pa.concat_arrays([pa.array(texts), pa.array(raw, type=pa.binary()).view(pa.string())])
spec = HashSpec(buckets=4093, order=3)
w = np.random.default_rng(0).normal(size=spec.buckets)
idf = np.random.default_rng(1).random(spec.buckets) + 0.5
out = {
    "tokens": native.token_counts(arr, threads=2),
    "hist": native.ngram_histogram(arr, spec, threads=2),
    "dot": native.dot_weights(arr, w, spec, threads=2),
    "features": native.ngram_features(arr, spec, threads=2),
    "df": native.document_frequencies(arr, spec, threads=2)[0],
    "embed": native.hashed_embeddings(arr, idf, spec, dim=64, nnz=2, proj_seed=3, threads=2),
    "fused": native.score_and_embed(arr, w, spec, idf, spec, dim=64, nnz=2, proj_seed=3, threads=2),
    "minhash": native.minhash_signatures(arr, threads=2),
    "heuristics": native.heuristic_signals(arr, threads=2),
    "hashes": native.string_hashes(arr, threads=2),
}
def digest(v):
    parts = v if isinstance(v, tuple) else (v,)
    h = hashlib.sha256()
    for p in parts:
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()
print(json.dumps({"isa": native.isa(), **{k: digest(v) for k, v in out.items()}}))
"""


def run_digests(isa: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CURATE_NATIVE_ISA"}
    if isa:
        env["CURATE_NATIVE_ISA"] = isa
    done = subprocess.run(
        [sys.executable, "-c", DIGESTS], env=env, capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout))


def test_baseline_and_dispatched_builds_agree() -> None:
    base = run_digests("baseline")
    chosen = run_digests(None)
    assert base.pop("isa") in {"x86-64", "baseline"}
    chosen.pop("isa")
    assert base == chosen
    # the digests are of real outputs, not of empty arrays
    assert len(set(base.values())) == len(base)
