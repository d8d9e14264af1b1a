"""Combining several scores into one (Meta-rater style, METHODS §4).

Each score is normalised over the whole input (z-score with the pool's mean and standard
deviation, or percentile rank in [0, 1]), flipped when lower is better, and summed with weights:
    combined = sum_c w_c * sign_c * normalise_c(score_c)
The statistics are global (merged across shards, never per shard). Weights are given, or
learned from a labelled set (a logistic regression on a binary label column, a linear one on a
numeric label) and saved with the normalisation statistics as a JSON artifact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.errors import MissingDependencyError, SchemaError, StageError, UsageError
from curate.stages.base import Annotator

Normalisation = Literal["zscore", "rank"]
ARTIFACT_FORMAT = "curate.combine/1"
RANK_GRID = 1001  # quantiles kept for percentile ranks (the artifact stays small)


@dataclass(frozen=True, kw_only=True)
class ScoreStats:
    """Global statistics of one score column."""

    column: str
    count: int
    mean: float
    std: float
    quantiles: list[float] = field(default_factory=list)  # RANK_GRID quantiles, for percentile ranks
    missing: int = 0  # null or NaN rows


def column_stats(column: str, values: np.ndarray) -> ScoreStats:
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        raise StageError(f"column {column!r} has no finite values to normalise")
    q = np.quantile(finite, np.linspace(0, 1, RANK_GRID)).tolist()
    return ScoreStats(
        column=column,
        count=len(finite),
        mean=float(finite.mean()),
        std=float(finite.std()),
        quantiles=q,
        missing=int(len(values) - len(finite)),
    )


def normalise(values: np.ndarray, stats: ScoreStats, how: Normalisation) -> np.ndarray:
    if how == "zscore":
        return (values - stats.mean) / (stats.std if stats.std > 0 else 1.0)
    q = np.asarray(stats.quantiles)
    # percentile rank: interpolate the value's position on the quantile grid
    ranks = np.interp(values, q, np.linspace(0, 1, len(q)))
    return np.where(np.isfinite(values), ranks, np.nan)


@dataclass(frozen=True, kw_only=True)
class Combination:
    """A fitted combination: columns, signs, weights, normalisation and its global statistics."""

    columns: tuple[str, ...]
    weights: tuple[float, ...]
    lower_is_better: tuple[str, ...] = ()
    normalisation: Normalisation = "zscore"
    stats: tuple[ScoreStats, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.columns) != len(self.weights):
            raise UsageError(f"{len(self.columns)} columns but {len(self.weights)} weights")
        unknown = set(self.lower_is_better) - set(self.columns)
        if unknown:
            raise UsageError(f"--lower-is-better names columns not combined: {', '.join(sorted(unknown))}")
        if self.normalisation not in ("zscore", "rank"):
            raise UsageError(f"unknown normalisation {self.normalisation!r}; allowed: zscore, rank")

    def features(self, table: dict[str, np.ndarray]) -> np.ndarray:
        """Normalised, sign-fixed scores: rows x columns (NaN where a score is missing)."""
        by_name = {s.column: s for s in self.stats}
        cols = []
        for c in self.columns:
            z = normalise(table[c], by_name[c], self.normalisation)
            cols.append(-z if c in self.lower_is_better else z)
        return np.stack(cols, axis=1) if cols else np.zeros((0, 0))

    def combine(self, table: dict[str, np.ndarray]) -> np.ndarray:
        return self.features(table) @ np.asarray(self.weights, dtype=np.float64)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "columns": list(self.columns),
            "weights": list(self.weights),
            "lower_is_better": list(self.lower_is_better),
            "normalisation": self.normalisation,
            "stats": [s.__dict__ for s in self.stats],
            "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        from curate.io.outputs import write_bytes_atomic

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, json.dumps(self.to_json(), indent=2).encode())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Combination:
        try:
            d = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise StageError(f"{path}: no such weights file") from exc
        except json.JSONDecodeError as exc:
            raise StageError(f"{path}: not a curate combination (invalid JSON: {exc})") from exc
        if not isinstance(d, dict) or d.get("format") != ARTIFACT_FORMAT:
            raise StageError(
                f"{path}: not a curate combination file", hint="create one with `curate train combine`"
            )
        return cls(
            columns=tuple(d["columns"]),
            weights=tuple(float(w) for w in d["weights"]),
            lower_is_better=tuple(d["lower_is_better"]),
            normalisation=d["normalisation"],
            stats=tuple(ScoreStats(**s) for s in d["stats"]),
            provenance=d.get("provenance", {}),
        )


def numeric_column(batch: pa.RecordBatch | pa.Table, column: str, where: str = "input") -> np.ndarray:
    if column not in batch.schema.names:
        raise SchemaError(
            f"{where}: no score column {column!r}; columns present: {', '.join(batch.schema.names)}"
        )
    col = batch.column(column)
    if not (pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_boolean(col.type)):
        raise SchemaError(f"{where}: column {column!r} has type {col.type}; scores must be numeric")
    return np.asarray(
        pc.fill_null(pc.cast(col, pa.float64()), np.nan).to_numpy(zero_copy_only=False), dtype=np.float64
    )


@dataclass(frozen=True, kw_only=True)
class CombinedScore(Annotator):
    """Annotator: the weighted sum of normalised scores (null where any input score is missing)."""

    name: ClassVar[str] = "combine"
    combination: Combination
    output: str = "combined_score"

    def requires(self) -> tuple[str, ...]:
        return self.combination.columns

    def adds(self) -> dict[str, pa.DataType]:
        return {self.output: pa.float64()}

    def annotate(self, batch: pa.RecordBatch) -> dict[str, pa.Array]:
        values = self.combination.combine({c: numeric_column(batch, c) for c in self.combination.columns})
        return {self.output: pa.array(values, type=pa.float64(), mask=~np.isfinite(values))}


def learn_weights(
    features: np.ndarray, labels: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, dict[str, Any]]:
    """Weights from a labelled set: logistic regression for a binary label, linear otherwise.
    Rows with a missing feature or label are left out. Returns (weights, fit metrics)."""
    try:
        from sklearn.linear_model import LinearRegression, LogisticRegression
        from sklearn.model_selection import train_test_split
    except ImportError as exc:
        raise MissingDependencyError(
            "learned weights need scikit-learn", hint="pip install 'curate[quality]'"
        ) from exc
    ok = np.isfinite(features).all(axis=1) & np.isfinite(labels)
    x, y = features[ok], labels[ok]
    if len(y) < 20:
        raise StageError(f"only {len(y)} labelled rows with every score present; need at least 20")
    binary = set(np.unique(y).tolist()) <= {0.0, 1.0}
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=0.2, random_state=seed, stratify=y if binary else None
    )
    if binary:
        model = LogisticRegression(max_iter=1000, random_state=seed).fit(x_tr, y_tr)
        from sklearn.metrics import roc_auc_score

        metrics = {
            "model": "logistic regression",
            "holdout_auc": float(roc_auc_score(y_te, model.decision_function(x_te))),
        }
        weights = model.coef_[0]
    else:
        model = LinearRegression().fit(x_tr, y_tr)
        metrics = {"model": "linear regression", "holdout_r2": float(model.score(x_te, y_te))}
        weights = model.coef_
    metrics.update(rows=len(y), train_rows=len(y_tr), holdout_rows=len(y_te))
    return np.asarray(weights, dtype=np.float64), metrics
