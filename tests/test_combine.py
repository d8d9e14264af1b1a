"""Score combination: global normalisation, signs, NaNs, learned weights (Meta-rater style)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curate.errors import StageError, UsageError
from curate.stages.combine import Combination, CombinedScore, column_stats, learn_weights, normalise
from curate.testing import check_stage

CLI = [sys.executable, "-m", "curate.cli.app"]


def test_zscore_and_rank_and_signs() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(5, 2, 2000), rng.uniform(0, 10, 2000)
    stats = (column_stats("a", a), column_stats("b", b))
    z = Combination(columns=("a", "b"), weights=(1.0, 1.0), lower_is_better=("b",), stats=stats)
    f = z.features({"a": a, "b": b})
    assert abs(f[:, 0].mean()) < 1e-9 and abs(f[:, 0].std() - 1) < 1e-9
    assert np.allclose(f[:, 1], -(b - b.mean()) / b.std())
    r = normalise(b, stats[1], "rank")
    assert r.min() >= 0 and r.max() <= 1
    assert abs(float(np.corrcoef(r, np.argsort(np.argsort(b)))[0, 1]) - 1) < 1e-3
    with pytest.raises(UsageError):
        Combination(columns=("a",), weights=(1.0, 2.0))
    with pytest.raises(UsageError):
        Combination(columns=("a",), weights=(1.0,), lower_is_better=("zz",))


def test_missing_scores_give_null_not_zero() -> None:
    a = np.array([1.0, 2.0, np.nan, 4.0])
    combo = Combination(columns=("a",), weights=(1.0,), stats=(column_stats("a", a),))
    batch = pa.RecordBatch.from_pydict({"text": ["w"] * 4, "a": pa.array([1.0, 2.0, None, 4.0])})
    out = CombinedScore(combination=combo).annotate(batch)["combined_score"]
    assert out.is_valid().to_pylist() == [True, True, False, True]
    assert combo.stats[0].missing == 1
    check_stage(CombinedScore(combination=combo), batch)
    with pytest.raises(StageError):
        column_stats("x", np.array([np.nan]))


def test_learned_weights_find_the_informative_score() -> None:
    rng = np.random.default_rng(1)
    informative, noise = rng.normal(size=3000), rng.normal(size=3000)
    label = (informative + 0.3 * rng.normal(size=3000) > 0).astype(float)
    feats = np.stack([informative, noise], axis=1)
    w, metrics = learn_weights(feats, label)
    assert w[0] > 5 * abs(w[1])
    assert metrics["holdout_auc"] > 0.9


def test_weights_round_trip(tmp_path: Path) -> None:
    a = np.arange(10.0)
    combo = Combination(columns=("a",), weights=(2.0,), normalisation="rank", stats=(column_stats("a", a),))
    back = Combination.load(combo.save(tmp_path / "w.json"))
    assert np.allclose(back.combine({"a": a}), combo.combine({"a": a}))
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(StageError, match="not a curate combination"):
        Combination.load(tmp_path / "bad.json")


def test_cli_learned_combination_of_heuristics(tmp_path: Path, corpus) -> None:  # type: ignore[no-untyped-def]
    """Learn to recognise the language reference from heuristic signals, then score a pool."""
    res = subprocess.run(
        [*CLI, "score", "heuristics", str(corpus.pool), str(tmp_path / "h"), "--no-progress"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    t = pq.read_table(tmp_path / "h")
    label = pa.array(
        [float(d == "python_docs" or d == "python_docstrings") for d in t.column("domain").to_pylist()]
    )
    pq.write_table(t.append_column("is_prose", label), tmp_path / "labelled.parquet")
    cols = "gopher_stop_words,gopher_alpha_words_ratio,gopher_symbol_word_ratio,fineweb_line_punct_ratio"
    res = subprocess.run(
        [
            *CLI,
            "train",
            "combine",
            str(tmp_path / "labelled.parquet"),
            "-o",
            str(tmp_path / "w.json"),
            "--columns",
            cols,
            "--label",
            "is_prose",
            "--lower-is-better",
            "gopher_symbol_word_ratio",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    assert "holdout_auc" in res.stderr
    res = subprocess.run(
        [
            *CLI,
            "score",
            "combine",
            str(tmp_path / "h"),
            str(tmp_path / "c"),
            "--weights-file",
            str(tmp_path / "w.json"),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    out = pq.read_table(tmp_path / "c")
    score = np.asarray(out.column("combined_score").to_numpy(zero_copy_only=False))
    dom = np.array(out.column("domain").to_pylist())
    prose = np.isin(dom, ["python_docs", "python_docstrings"])
    ok = np.isfinite(score)
    assert score[prose & ok].mean() > score[~prose & ok].mean()
    res = subprocess.run(
        [*CLI, "score", "combine", str(tmp_path / "h"), str(tmp_path / "d"), "--columns", "nope"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "no column(s) nope" in res.stderr
