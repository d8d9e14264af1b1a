"""Annotator: LESS influence of each document on a few target tasks (METHODS §2), for a warm-up
proxy LM trained with checkpoints (`curate train lm --checkpoints N`).

At each checkpoint c, a candidate's feature is its Adam-preconditioned gradient and a task
example's its plain gradient (both of the mean loss over the document's bytes), projected
(curate.influence.Projection) and L2-normalised. A[i, j] = Σ_c η̄_c cos(Γ_c(i), g_c(j)), with the
checkpoints' mean learning rates η̄ rescaled to sum to 1 (the ranking is unchanged).
Adds `influence_<task>` (the mean over the task's examples), `influence` (the max over tasks,
LESS's score) and `influence_by_example` (A's row, for `curate bids`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import StageError
from curate.stages.base import Annotator, StageContext
from curate.types import TEXT

TASKS_KEY = b"curate:influence_tasks"  # schema metadata: JSON list, the task of each example
BY_EXAMPLE = "influence_by_example"
FEATURES = "influence_features"  # the candidates' projected features, kept for new tasks
_FEATURES: dict[tuple[Any, ...], Any] = {}  # per process: the task features of each checkpoint


@dataclass(frozen=True, kw_only=True)
class InfluenceScorer(Annotator):
    name: ClassVar[str] = "influence"
    warm: str
    tasks: tuple[tuple[str, tuple[str, ...]], ...]  # (task name, its example texts)
    dim: int = 8192
    seed: int = 0
    batch: int = 16
    device: str = "cpu"
    max_tokens: int | None = None  # bytes of a document the loss covers (at most the context)
    keep_features: bool = False  # add FEATURES: every checkpoint's unit feature, float16

    def __post_init__(self) -> None:
        names = [n for n, _ in self.tasks]
        if not names:
            raise StageError("score influence: give at least one --task NAME=PATH")
        if len(set(names)) != len(names):
            dup = next(n for n in names if names.count(n) > 1)
            raise StageError(f"score influence: two tasks are named {dup!r}")
        for n, texts in self.tasks:
            if not [t for t in texts if t and len(t.encode()) >= 2]:
                raise StageError(f"score influence: task {n!r} has no example with text")

    @property
    def gpus(self) -> float:
        return 0.0 if self.device == "cpu" else 1.0

    def example_tasks(self) -> list[str]:
        return [n for n, texts in self.tasks for t in texts if t and len(t.encode()) >= 2]  # see _ids

    def adds(self) -> dict[str, pa.DataType]:
        cols: dict[str, pa.DataType] = {f"influence_{n}": pa.float32() for n, _ in self.tasks}
        cols["influence"] = pa.float32()
        cols[BY_EXAMPLE] = pa.list_(pa.float32(), len(self.example_tasks()))
        cols["influence_tokens"] = pa.int32()  # bytes the loss covered: the model's context when cut
        if self.keep_features:
            cols[FEATURES] = pa.list_(pa.float16(), self.feature_width())
        return cols

    def feature_width(self) -> int:
        from curate.influence import checkpoints_of

        return len(checkpoints_of(self.warm)) * self.dim

    def validate(self, schema: pa.Schema, source: str = "input") -> None:
        super().validate(schema, source)
        if FEATURES in schema.names:  # kept by an earlier run: reused, so they must fit this one
            size = getattr(schema.field(FEATURES).type, "list_size", None)
            if size != self.feature_width():
                raise StageError(
                    f"{source}: {FEATURES} holds {size} values per row, and {self.warm} with --dim "
                    f"{self.dim} makes {self.feature_width()}",
                    hint="score with the warm-up model, --dim and --seed the features were kept with",
                )

    @property
    def schema_metadata(self) -> dict[bytes, bytes]:
        return {TASKS_KEY: json.dumps(self.example_tasks()).encode()}

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def _ids(
        self, texts: Sequence[str | None], encode: Any, context: int, keep_all: bool = False
    ) -> tuple[list[int], Any, Any, int]:
        """Rows with at least 2 tokens, their ids (cut to the context) and masks, and how many
        were cut."""
        torch = _torch()
        keep, rows, real, cut = [], [], [], 0
        if self.max_tokens:
            context = min(context, self.max_tokens)
        for i, t in enumerate(texts):
            data = encode(t) if t else []
            if len(data) < 2 and not (keep_all and data):
                continue
            cut += len(data) > context + 1
            keep.append(i)
            rows.append(list(data[: context + 1]) + [0] * (len(data) < 2))  # one token: no loss
            real.append(min(len(data), context + 1))
        width = max((len(r) for r in rows), default=2)
        ids = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        mask = torch.zeros(len(rows), width, dtype=torch.long, device=self.device)
        for r, row in enumerate(rows):
            ids[r, : len(row)] = torch.tensor(row)
            mask[r, : real[r]] = 1
        return keep, ids, mask, cut

    def setup(self, ctx: StageContext) -> None:
        key = (self.warm, self.tasks, self.dim, self.seed, self.device)
        if key in _FEATURES:
            return
        from curate.influence import (
            Projection,
            checkpoints_of,
            load_for_influence,
            load_moments,
            unit,
        )
        from curate.per_example import per_example_gradients

        examples = [t for _, texts in self.tasks for t in texts if t and len(t.encode()) >= 2]
        stages = []
        rates = []
        for ckpt in checkpoints_of(self.warm):
            w = load_for_influence(ckpt, self.device)
            m, v = load_moments(ckpt, list(w.params))
            proj = Projection(int(m.numel()), self.dim, self.seed)
            _, ids, mask, _ = self._ids(examples, w.encode, w.context, keep_all=True)
            feats = [unit(proj(per_example_gradients(w.model, ids[i : i + self.batch], mask[i : i + self.batch], w.params)))
                     for i in range(0, len(ids), self.batch)]  # fmt: skip
            stages.append((ckpt, w, m.to(self.device), v.to(self.device), proj, _torch().cat(feats)))
            rates.append(ckpt.mean_lr)
        total = sum(rates) or 1.0
        _FEATURES.clear()
        _FEATURES[key] = [(s, r / total) for s, r in zip(stages, rates, strict=True)]

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        from curate.influence import adam_features, as_numpy, unit
        from curate.per_example import per_example_gradients

        self.setup(StageContext())
        stages = _FEATURES[(self.warm, self.tasks, self.dim, self.seed, self.device)]
        texts = batch.column(TEXT).to_pylist()
        n, m = len(texts), len(self.example_tasks())
        a = np.full((n, m), np.nan, np.float32)
        first = stages[0][0][1]
        context = first.context
        keep, ids, mask, _ = self._ids(texts, first.encode, context)
        total = np.zeros((len(keep), m))
        kept: list[np.ndarray] = []
        if FEATURES in batch.schema.names:  # features kept by an earlier run: no backward pass
            col = batch.column(FEATURES)
            have = np.asarray(col.is_valid().to_numpy(zero_copy_only=False))
            keep = [i for i in keep if have[i]]
            feats = np.zeros((n, self.feature_width()), np.float32)
            if have.any():
                flat = pc.list_flatten(col.filter(pa.array(have))).to_numpy(zero_copy_only=False)
                feats[have] = np.asarray(flat, np.float32).reshape(-1, self.feature_width())
            feats = feats[keep]
            total = np.zeros((len(keep), m))
            for c, ((_, _, _, _, _, task_feats), weight) in enumerate(stages):
                part = feats[:, c * self.dim : (c + 1) * self.dim]
                total += weight * (part @ as_numpy(task_feats).T)
        else:
            for (ckpt, w, mom, var, proj, task_feats), weight in stages:
                parts = []
                for lo in range(0, len(keep), self.batch):
                    g = per_example_gradients(
                        w.model, ids[lo : lo + self.batch], mask[lo : lo + self.batch], w.params
                    )
                    gamma = unit(proj(adam_features(g, mom, var, tuple(ckpt.betas), ckpt.eps)))
                    total[lo : lo + self.batch] += weight * as_numpy(gamma @ task_feats.T)
                    parts.append(as_numpy(gamma))
                kept.append(np.concatenate(parts) if parts else np.zeros((0, self.dim), np.float32))
        if keep:
            a[np.asarray(keep)] = total
        bad = ~np.isfinite(a).all(axis=1)
        a[bad] = np.nan
        names = [nm for nm, _ in self.tasks]
        of = np.asarray(self.example_tasks())
        per_task = {nm: a[:, of == nm].mean(axis=1) for nm in names}
        best = np.max(np.stack(list(per_task.values()), axis=1), axis=1)
        valid = pa.array(~bad)
        out: dict[str, pa.Array] = {
            f"influence_{nm}": pa.array(v, pa.float32(), mask=bad) for nm, v in per_task.items()
        }
        out["influence"] = pa.array(best, pa.float32(), mask=bad)
        flat = pa.array(np.nan_to_num(a).ravel(), pa.float32())
        lists = pa.FixedSizeListArray.from_arrays(flat, m)
        out[BY_EXAMPLE] = pc.if_else(valid, lists, pa.nulls(n, lists.type))
        used = np.zeros(n, np.int32)
        if keep:
            lengths = [len(first.encode(texts[i] or "")) for i in keep]
            limit = min(context, self.max_tokens) if self.max_tokens else context
            used[np.asarray(keep)] = np.minimum(np.asarray(lengths), limit + 1) - 1
        out["influence_tokens"] = pa.array(
            used, pa.int32(), mask=np.asarray([i not in set(keep) for i in range(n)])
        )
        if self.keep_features and FEATURES in batch.schema.names:
            out[FEATURES] = batch.column(FEATURES)  # reused: kept as they were
        elif self.keep_features:
            width = self.feature_width()
            feats = np.zeros((n, width), np.float16)
            if keep and kept:
                feats[np.asarray(keep)] = np.concatenate(kept, axis=1).astype(np.float16)
            lists = pa.FixedSizeListArray.from_arrays(pa.array(feats.ravel(), pa.float16()), width)
            out[FEATURES] = pc.if_else(valid, lists, pa.nulls(n, lists.type))
        return out


def _torch() -> Any:
    import torch

    return torch
