"""Document embeddings for clustering: hashed TF-IDF n-grams projected to a few hundred dimensions.

`HashedEmbedder` needs no model. The native kernel gives each document its hashed n-gram buckets
and counts; a term weighs (1 + log count) x idf(bucket), with idf fitted on the pool by
`DocumentFrequency` (a Fittable: bucket document counts merge by addition) as
log((1 + N) / (1 + df)) + 1; a sparse random projection brings it to `dim` (at most 32,768), and
the result is L2-normalised, so squared distance = 2 − 2·cosine. The projection is a sparse
Johnson-Lindenstrauss map, so no buckets x dim matrix is stored: each bucket adds ±weight to s = 8
coordinates, four from each seeded splitmix64 hash h of bucket·2 + j (j = 0, 1): code r is the
16-bit field r mod 4 of hash r / 4, its top bit the sign, its low 15 bits c the coordinate
c·dim / 2¹⁵. Empty documents (no words) get a null embedding.

`ModelEmbedder` mean-pools the last hidden states of a local sentence-embedding or LM folder
(transformers, offline) over real tokens, batched by length on the GPU when present.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.errors import MissingDependencyError, SchemaError, StageError
from curate.native import HashSpec
from curate.stages.base import Annotator, Fittable, StageContext
from curate.types import TEXT

EMBEDDING = "embedding"
PROJECTION_NONZEROS = 8
MAX_DIM = 1 << 15  # the projection's coordinates are 15-bit codes


def embedding_type(dim: int) -> pa.DataType:
    return pa.list_(pa.float32(), dim)


def embeddings_array(vectors: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A fixed-size-list<float32> column; rows where `valid` is False are null."""
    dim = vectors.shape[1]
    values = pa.array(np.ascontiguousarray(vectors, np.float32).reshape(-1), pa.float32())
    arr = pa.FixedSizeListArray.from_arrays(values, dim)
    if valid.all():
        return arr
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~valid))


def embedding_matrix(
    batch: pa.RecordBatch, column: str, where: str, first_row: int
) -> tuple[np.ndarray, np.ndarray]:
    """(float32[n, d] of the valid rows, valid mask[n]) of an embedding column in `batch`.

    Null and empty embeddings are invalid rows (no cluster); rows of another length than the
    rest, non-float values and NaN/infinity are errors naming `where` and the row."""
    col = batch.column(column)
    t = col.type
    if pa.types.is_fixed_size_list(t):
        dim = t.list_size
    elif pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.fill_null(pc.list_value_length(col), 0).to_numpy(zero_copy_only=False)
        ok = lengths > 0
        dims = np.unique(lengths[ok]) if ok.any() else np.array([0])
        if len(dims) > 1:
            bad = int(np.flatnonzero(ok & (lengths != dims[0]))[0])
            raise SchemaError(
                f"{where}: row {first_row + bad}: embedding has {int(lengths[bad])} values, "
                f"earlier rows have {int(dims[0])}"
            )
        dim = int(dims[0])
    else:
        raise SchemaError(f"{where}: column {column!r} has type {t}; expected a list of floats")
    if not pa.types.is_floating(t.value_type):
        raise SchemaError(f"{where}: column {column!r} holds {t.value_type}, not floats")
    valid = col.is_valid().to_numpy(zero_copy_only=False).copy()
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        valid &= ok
    if dim == 0:
        valid[:] = False
    flat = col.filter(pa.array(valid)).flatten() if valid.any() else pa.array([], pa.float32())
    x = np.asarray(flat.to_numpy(zero_copy_only=False), dtype=np.float32).reshape(-1, max(dim, 1))
    if not np.isfinite(x).all():
        bad_valid = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        bad = int(np.flatnonzero(valid)[bad_valid])
        raise SchemaError(f"{where}: row {first_row + bad}: embedding contains NaN or infinity")
    return x, valid


@dataclass
class DocFrequency:
    df: np.ndarray  # int64[buckets]: documents containing each bucket
    docs: int


@dataclass(frozen=True, kw_only=True)
class DocumentFrequency(Fittable[DocFrequency]):
    """Fittable: per-bucket document frequencies, for the embedder's idf."""

    name: ClassVar[str] = "idf"
    spec: HashSpec
    threads: int = 1

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def summarize(self, batch: pa.RecordBatch) -> DocFrequency:
        df, docs = native.document_frequencies(batch.column(TEXT), self.spec, threads=self.threads)
        return DocFrequency(df=df, docs=docs)

    def merge(self, a: DocFrequency, b: DocFrequency) -> DocFrequency:
        return DocFrequency(df=a.df + b.df, docs=a.docs + b.docs)

    def empty(self) -> DocFrequency:
        return DocFrequency(df=np.zeros(self.spec.buckets, np.int64), docs=0)

    def finalize(self, summary: DocFrequency) -> np.ndarray:
        return np.log((1.0 + summary.docs) / (1.0 + summary.df)) + 1.0


@dataclass(frozen=True, kw_only=True)
class HashedEmbedder(Annotator):
    """Annotator: `embedding`, an L2-normalised TF-IDF n-gram vector projected to `dim`."""

    name: ClassVar[str] = "embed"
    spec: HashSpec
    idf: np.ndarray = field(repr=False)
    dim: int = 256
    seed: int = 0
    threads: int = 1

    def __post_init__(self) -> None:
        if not 2 <= self.dim <= MAX_DIM:
            raise StageError(f"embedding dim must be between 2 and {MAX_DIM}, got {self.dim}")
        if self.idf.shape != (self.spec.buckets,):
            raise StageError(f"idf has {self.idf.shape} entries; the spec has {self.spec.buckets} buckets")

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {EMBEDDING: embedding_type(self.dim)}

    def setup(self, ctx: StageContext) -> None:
        object.__setattr__(self, "threads", max(1, ctx.threads))

    @property
    def nnz(self) -> int:
        return PROJECTION_NONZEROS

    def vectors(self, texts: Any) -> tuple[np.ndarray, np.ndarray]:
        """(float32[n, dim] L2-normalised, valid[n]) for an Arrow string array (native kernel)."""
        out = native.hashed_embeddings(
            texts,
            self.idf,
            self.spec,
            dim=self.dim,
            nnz=self.nnz,
            proj_seed=self.seed,
            threads=self.threads,
        )
        return out, np.asarray(out.any(axis=1), dtype=bool)

    def columns(self, vectors: np.ndarray) -> dict[str, pa.Array]:
        """The embedding column of the kernel's output (all-zero rows: no words, null)."""
        return {EMBEDDING: embeddings_array(vectors, np.asarray(vectors.any(axis=1), dtype=bool))}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        vec, _ = self.vectors(batch.column(TEXT))
        return self.columns(vec)

    def to_dict(self) -> dict[str, Any]:
        return {"method": "hashed", "dim": self.dim, "seed": self.seed, "spec": self.spec.__dict__}


_LOADED: dict[tuple[str, str], Any] = {}


@dataclass(frozen=True, kw_only=True)
class ModelEmbedder(Annotator):
    """Annotator: `embedding`, mean-pooled last hidden states of a local transformers model."""

    name: ClassVar[str] = "embed-model"
    model_path: str
    device: str = "auto"
    max_length: int = 256
    batch_tokens: int = 16_384
    normalize: bool = True

    @property
    def gpus(self) -> float:
        return 0.0 if self.device == "cpu" else 1.0  # auto: one where the cluster has GPUs

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {EMBEDDING: embedding_type(self.dimension())}

    def __getstate__(self) -> dict[str, Any]:  # the loaded model stays in its worker
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def dimension(self) -> int:
        try:
            from transformers import AutoConfig
        except ImportError as exc:
            raise MissingDependencyError(
                "model embeddings need transformers", hint="pip install 'curate[lm]'"
            ) from exc
        try:
            cfg = AutoConfig.from_pretrained(self.model_path, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise StageError(f"{self.model_path}: not a model folder ({exc})") from exc
        dim = (
            getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or getattr(cfg, "d_model", None)
        )
        if not isinstance(dim, int):
            raise StageError(f"{self.model_path}: cannot tell the hidden size from config.json")
        return dim

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_model", None) is not None:
            return
        from pathlib import Path

        from transformers import AutoModel, AutoTokenizer

        from curate.stages.lm import resolve_device

        if not Path(self.model_path).is_dir():
            raise StageError(f"{self.model_path}: no such model folder")
        device = resolve_device(self.device)
        key = (self.model_path, device)
        if key not in _LOADED:  # once per process: a worker keeps the model across its shards
            try:
                tok = AutoTokenizer.from_pretrained(self.model_path, local_files_only=True)
                model = AutoModel.from_pretrained(self.model_path, local_files_only=True)
            except (OSError, ValueError) as exc:
                raise StageError(f"{self.model_path}: cannot load an embedding model ({exc})") from exc
            _LOADED.clear()
            _LOADED[key] = (tok, model.eval().to(device))
        tok, model = _LOADED[key]
        object.__setattr__(self, "_dim", self.dimension())
        object.__setattr__(self, "_tok", tok)
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_device", device)

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        import torch

        from curate.stages.lm import prefetch

        self.setup(StageContext())
        texts = batch.column(TEXT).to_pylist()
        out = np.zeros((len(texts), self._dim), np.float32)  # type: ignore[attr-defined]
        valid = np.array([bool(t and t.strip()) for t in texts], dtype=bool)
        present = np.flatnonzero(valid)
        tok, model, device = self._tok, self._model, self._device  # type: ignore[attr-defined]
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        pin = device.startswith("cuda")

        def prepared(rows: np.ndarray) -> list[tuple[np.ndarray, Any, Any]]:
            """Tokenised, length-sorted, padded batches of `rows` (runs on the prefetch thread)."""
            enc = tok([texts[i] for i in rows], truncation=True, max_length=self.max_length)["input_ids"]
            order = sorted(range(len(rows)), key=lambda j: len(enc[j]))
            batches, start = [], 0
            while start < len(order):
                stop = start + 1
                while stop < len(order) and len(enc[order[stop]]) * (stop - start + 1) <= self.batch_tokens:
                    stop += 1
                group = order[start:stop]
                width = max(len(enc[j]) for j in group)
                ids = np.full((len(group), width), pad, np.int64)
                mask = np.zeros((len(group), width), np.int64)
                for r, j in enumerate(group):
                    ids[r, : len(enc[j])] = enc[j]
                    mask[r, : len(enc[j])] = 1
                t_ids, t_mask = torch.from_numpy(ids), torch.from_numpy(mask)
                if pin:
                    t_ids, t_mask = t_ids.pin_memory(), t_mask.pin_memory()
                batches.append((rows[np.array(group)], t_ids, t_mask))
                start = stop
            return batches

        chunks = [present[i : i + 512] for i in range(0, len(present), 512)]
        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16) if pin else torch.autocast("cpu", enabled=False)
        )
        # tokenising the next chunk overlaps the model on this one (both release the GIL)
        for ready in prefetch(map(prepared, chunks)):
            for rows, t_ids, t_mask in ready:
                ids, mask = t_ids.to(device, non_blocking=True), t_mask.to(device, non_blocking=True)
                with torch.inference_mode(), autocast:
                    hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state
                with torch.inference_mode():
                    m = mask.unsqueeze(-1).float()
                    pooled = (hidden.float() * m).sum(1) / m.sum(1).clamp(min=1.0)
                    if self.normalize:
                        pooled = torch.nn.functional.normalize(pooled, dim=-1)
                out[rows] = pooled.cpu().numpy()
        return {EMBEDDING: embeddings_array(out, valid)}
