"""Quality scoring with a fastText classifier (DCLM style, METHODS §8).

Training: positives labelled `__label__hq`, negatives `__label__cc`, balanced by repeating the
smaller side's documents (or, as DCLM does, sampling the larger side down by seeded document
hash: `balance="downsample"`), a held-out split for accuracy and AUC, DCLM's
settings by default (wordNgrams 2, dim 100, epoch 5, lr 0.1, ws 5, minCount 1, other fastText
defaults). Scoring: newlines joined into spaces (as DCLM does before `predict`), then the
probability of `__label__hq`. Models are fastText's own .bin format with a JSON sidecar.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate import native
from curate.errors import MissingDependencyError, StageError
from curate.stages.base import Annotator, StageContext
from curate.types import TEXT

FASTTEXT_QUALITY = "fasttext_quality"
HQ, CC = "__label__hq", "__label__cc"


def _fasttext() -> Any:
    try:
        import fasttext
    except ImportError as exc:
        raise MissingDependencyError(
            "fastText scoring needs the fasttext-numpy2-wheel package",
            hint="pip install 'curate[quality]' (fasttext-numpy2-wheel==0.9.2; not fasttext-wheel, broken with numpy 2)",
        ) from exc
    return fasttext


def one_line(texts: pa.Array | pa.ChunkedArray) -> list[str]:
    """DCLM's preprocessing: strip, then join lines with spaces (fastText reads one line)."""
    joined = pc.replace_substring_regex(
        pc.utf8_trim_whitespace(texts), pattern=r"\s*[\r\n]+\s*", replacement=" "
    )
    return [t or "" for t in joined.to_pylist()]


FASTTEXT_MAGIC = 793712314  # the int32 every fastText binary model starts with


def check_model_file(path: str | Path) -> None:
    """A cheap check (no fastText import, no model load) that `path` is a fastText model, so a
    command fails at once and clearly; the scorer loads it in its workers."""
    import struct

    path = Path(path)
    if not path.is_file():
        raise StageError(f"{path}: no such fastText model", hint="train one with `curate train fasttext`")
    with open(path, "rb") as fh:
        head = fh.read(4)
    if len(head) < 4 or struct.unpack("<i", head)[0] != FASTTEXT_MAGIC:
        raise StageError(
            f"{path}: not a fastText model (no fastText header)",
            hint="train one with `curate train fasttext`",
        )


def load_model(path: str | Path) -> Any:
    path = Path(path)
    if not path.exists():
        raise StageError(f"{path}: no such fastText model", hint="train one with `curate train fasttext`")
    ft = _fasttext()
    try:
        model = ft.load_model(str(path))
    except ValueError as exc:
        raise StageError(
            f"{path}: not a fastText model ({exc})", hint="train one with `curate train fasttext`"
        ) from exc
    labels = set(model.get_labels())
    if HQ not in labels:
        raise StageError(f"{path}: the model has no {HQ} label (labels: {', '.join(sorted(labels))})")
    return model


def hq_probabilities(model: Any, lines: list[str]) -> np.ndarray:
    """P(__label__hq) per line, from the full label distribution (k=-1)."""
    if not lines:
        return np.zeros(0)
    labels, probs = model.predict(lines, k=-1)
    out = np.zeros(len(lines))
    for i, (lab, pr) in enumerate(zip(labels, probs, strict=True)):
        d = dict(zip(lab, pr, strict=True))
        out[i] = float(d.get(HQ, 0.0))
    return np.clip(out, 0.0, 1.0)


@dataclass(frozen=True, kw_only=True)
class FastTextScorer(Annotator):
    """Annotator: `fasttext_quality`, the probability of the high-quality label (null for null or
    empty text). The model loads once per worker in setup()."""

    name: ClassVar[str] = "fasttext"
    model_path: str

    def requires(self) -> tuple[str, ...]:
        return (TEXT,)

    def adds(self) -> dict[str, pa.DataType]:
        return {FASTTEXT_QUALITY: pa.float64()}

    def setup(self, ctx: StageContext) -> None:
        if getattr(self, "_model", None) is None:
            object.__setattr__(self, "_model", load_model(self.model_path))

    def __getstate__(self) -> dict[str, Any]:  # the loaded model stays in its worker
        state = dict(self.__dict__)
        state.pop("_model", None)
        return state

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        self.setup(StageContext())
        texts = batch.column(TEXT)
        lines = one_line(texts)
        probs = hq_probabilities(self._model, lines)  # type: ignore[attr-defined]
        empty = np.array([not line for line in lines], dtype=bool)
        return {FASTTEXT_QUALITY: pa.array(probs, type=pa.float64(), mask=empty)}


# ------------------------------------------------------------------------------------ training
@dataclass(frozen=True, kw_only=True)
class FastTextSettings:
    """DCLM's fastText settings (only wordNgrams differs from fastText's defaults)."""

    lr: float = 0.1
    dim: int = 100
    ws: int = 5
    epoch: int = 5
    min_count: int = 1
    word_ngrams: int = 2
    threads: int = 1  # fastText is only reproducible with one thread
    seed: int = 0


@dataclass
class TrainReport:
    model: str
    train_docs: dict[str, int]
    holdout_docs: dict[str, int]
    holdout_accuracy: float
    holdout_auc: float
    distinct_train_docs: dict[str, int] = field(default_factory=dict)
    balance: str = "oversample"
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve by ranks (ties averaged)."""
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    s = scores[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos = labels.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


BALANCE = ("downsample", "oversample")


def balanced_split(
    positive: list[str],
    negative: list[str],
    *,
    holdout: float,
    seed: int,
    max_per_class: int | None,
    balance: str = "oversample",
) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Training and held-out (label, line) lists with equal class counts in training.

    downsample (DCLM): both classes cut to the smaller one's size (by seeded text hash).
    oversample: every document of each class up to `max_per_class`; the held-out share is taken
    first, then the smaller class's training documents are repeated in turn up to the larger
    class's count, so a small target keeps all the pool's negatives (a class weight, in effect)
    and no held-out document is ever trained on."""
    if balance not in BALANCE:
        raise StageError(f"balance must be one of {', '.join(BALANCE)}, got {balance!r}")
    if min(len(positive), len(negative)) < 10:
        raise StageError(
            f"too few documents to train on: {len(positive)} positive, {len(negative)} negative (need 10 of each)"
        )
    cap = max_per_class or max(len(positive), len(negative))
    if balance == "downsample":
        cap = min(cap, len(positive), len(negative))

    def pick(docs: list[str], salt: int) -> list[str]:
        h = native.string_hashes(pa.array(docs, pa.large_string()), seed=seed * 2 + salt)
        return [docs[i] for i in np.argsort(h, kind="stable")[:cap]]

    per_class: list[tuple[str, list[str]]] = []
    test: list[tuple[str, str]] = []
    for label, docs, salt in ((HQ, positive, 1), (CC, negative, 2)):
        chosen = pick(docs, salt)
        k = max(1, round(len(chosen) * holdout)) if holdout > 0 else 0
        test.extend((label, d) for d in chosen[:k])
        per_class.append((label, chosen[k:]))
    size = max(len(docs) for _, docs in per_class)
    train = [(label, docs[i % len(docs)]) for label, docs in per_class for i in range(size)]
    order = np.argsort(
        native.string_hashes(
            pa.array([f"{i}:{d}" for i, (_, d) in enumerate(train)], pa.large_string()), seed=seed + 7
        ),
        kind="stable",
    )
    return [train[i] for i in order], test


def train_fasttext(
    positive: Iterable[str],
    negative: Iterable[str],
    output: str | Path,
    *,
    settings: FastTextSettings | None = None,
    holdout: float = 0.1,
    max_per_class: int | None = None,
    balance: str = "oversample",
) -> TrainReport:
    """Train and save a quality classifier; returns held-out accuracy and AUC."""
    from curate.io.outputs import write_bytes_atomic

    settings = settings or FastTextSettings()
    ft = _fasttext()
    pos = [t for t in positive if t]
    neg = [t for t in negative if t]
    train, test = balanced_split(
        pos, neg, holdout=holdout, seed=settings.seed, max_per_class=max_per_class, balance=balance
    )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="curate-fasttext-") as tmp:
        train_path = os.path.join(tmp, "train.txt")
        with open(train_path, "w", encoding="utf-8") as fh:
            for label, line in zip(
                [lab for lab, _ in train],
                one_line(pa.array([d for _, d in train], pa.large_string())),
                strict=True,
            ):
                fh.write(f"{label} {line}\n")
        model = ft.train_supervised(
            input=train_path,
            lr=settings.lr,
            dim=settings.dim,
            ws=settings.ws,
            epoch=settings.epoch,
            minCount=settings.min_count,
            wordNgrams=settings.word_ngrams,
            thread=settings.threads,
            seed=settings.seed,
            verbose=0,
        )
        tmp_model = os.path.join(tmp, "model.bin")
        model.save_model(tmp_model)
        write_bytes_atomic(output, Path(tmp_model).read_bytes())
    if test:
        lines = one_line(pa.array([d for _, d in test], pa.large_string()))
        p = hq_probabilities(model, lines)
        y = np.array([lab == HQ for lab, _ in test])
        accuracy = float(((p >= 0.5) == y).mean())
        area = auc(p, y)
    else:
        accuracy = area = float("nan")
    report = TrainReport(
        model=str(output),
        train_docs={"hq": sum(lab == HQ for lab, _ in train), "cc": sum(lab == CC for lab, _ in train)},
        distinct_train_docs={
            "hq": len({d for lab, d in train if lab == HQ}),
            "cc": len({d for lab, d in train if lab == CC}),
        },
        balance=balance,
        holdout_docs={"hq": sum(lab == HQ for lab, _ in test), "cc": sum(lab == CC for lab, _ in test)},
        holdout_accuracy=accuracy,
        holdout_auc=area,
        settings=dict(settings.__dict__),
    )
    write_bytes_atomic(
        output.with_name(output.name + ".json"), json.dumps(report.to_dict(), indent=2).encode()
    )
    return report
