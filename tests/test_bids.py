"""BIDS (curate.bids, `curate bids`): the efficient selection equals a plain O(B·N·K) loop written
here, column moments merge exactly, and on a pool where one task's influence is ten times louder
than the others' LESS's top-k serves that task alone while BIDS serves all three."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from curate.bids import ColumnMoments, balanced_order, task_influence
from curate.stats import undocumented
from tests.cli import run_main


def reference_order(influence: np.ndarray, cost: np.ndarray, budget: float, mode: str) -> list[int]:
    """The selection as the paper states it, one full scan per step."""
    n, k = influence.shape
    taken: list[int] = []
    spent = 0.0
    while spent < budget and len(taken) < n:
        means = influence[taken].astype(np.float64).mean(axis=0) if taken else np.zeros(k)
        best = None
        if mode == "argmin_task":
            t = int(np.argmin(means))
            for i in range(n):
                if i not in taken and (best is None or influence[i, t] > influence[best, t]):
                    best = i
        else:
            key = None
            for t in range(k):
                for i in range(n):
                    if i in taken:
                        continue
                    cand = (influence[i, t] - means[t], -t, -i)
                    if key is None or cand > key:
                        key, best = cand, i
        assert best is not None
        taken.append(best)
        spent += float(cost[best])
    return taken


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 25),
    k=st.integers(1, 4),
    seed=st.integers(0, 10**6),
    budget=st.integers(1, 40),
    mode=st.sampled_from(["argmin_task", "max_gain"]),
)
def test_the_sorted_lists_give_the_plain_loops_selection(
    n: int, k: int, seed: int, budget: int, mode: str
) -> None:
    rng = np.random.default_rng(seed)
    influence = rng.integers(-3, 4, size=(n, k)).astype(np.float32)  # small integers: many ties
    cost = rng.integers(1, 4, size=n).astype(np.float64)
    got = balanced_order(influence, cost, float(budget), mode).tolist()
    assert got == reference_order(influence, cost, float(budget), mode)
    assert len(set(got)) == len(got)  # each candidate at most once


@given(st.lists(st.integers(0, 30), min_size=1, max_size=5), st.integers(0, 10**6))
def test_column_moments_merged_over_shards_equal_the_whole(sizes: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    parts = [rng.normal(size=(s, 3)) * 5 + 2 for s in sizes]
    merged = ColumnMoments(0, np.zeros(3), np.zeros(3))
    for p in parts:
        merged = merged.merge(ColumnMoments.of(p))
    whole = np.concatenate(parts)
    mean, std = merged.mean_std()
    if len(whole):
        assert np.allclose(mean, whole.mean(axis=0))
        ref = whole.std(axis=0)
        assert np.allclose(std, np.where(ref > 0, ref, 1.0), atol=1e-6)


def test_a_constant_column_normalises_to_zero() -> None:
    a = np.array([[1.0, 5.0], [2.0, 5.0], [3.0, 5.0]])
    mean, std = ColumnMoments.of(a).mean_std()
    got = task_influence(a, mean, std, np.array([0, 1]), 2)
    assert np.isfinite(got).all() and (got[:, 1] == 0).all()


TASKS = ["code", "code", "prose", "prose", "law", "law"]


def influence_pool(folder: Path, shards: int = 3, per_group: int = 40) -> None:
    """Candidates in three groups, each aligned with one task; the `code` examples' raw
    influence is ten times larger, as a task with intrinsically larger gradients would be."""
    rng = np.random.default_rng(0)
    folder.mkdir()
    rows = []
    for g, _task in enumerate(["code", "prose", "law"]):
        for i in range(per_group):
            values = rng.normal(0, 0.05, size=len(TASKS))
            values[2 * g : 2 * g + 2] += 1.0 + 0.01 * i
            values[:2] *= 10
            rows.append(
                {"id": f"{g}-{i}", "text": f"document {g} {i} " * 5, "influence_by_example": values.tolist()}
            )
    order = rng.permutation(len(rows))
    meta = {b"curate:influence_tasks": json.dumps(TASKS).encode()}
    for s in range(shards):
        part = [rows[j] for j in order[s::shards]]
        schema = pa.schema(
            [
                ("id", pa.string()),
                ("text", pa.string()),
                ("influence_by_example", pa.list_(pa.float32(), len(TASKS))),
            ],
            metadata=meta,
        )
        pq.write_table(pa.Table.from_pylist(part, schema=schema), folder / f"part-{s}.parquet")


def test_bids_serves_every_task_where_less_serves_the_loud_one(tmp_path: Path) -> None:
    influence_pool(tmp_path / "pool")
    stats = tmp_path / "s.json"
    argv = ["bids", str(tmp_path / "pool"), str(tmp_path / "out"), "--budget", "docs:30", "--no-progress"]
    assert run_main(*argv, "--workers", "1", "--stats-json", str(stats)) == 0
    s = json.loads(stats.read_text())
    assert undocumented(s) == []  # every field is in the stats schema (docs/stats.md)
    shares = {t: v["bids_share"] for t, v in s["per_task"].items()}
    less = {t: v["less_top_k_share"] for t, v in s["per_task"].items()}
    assert less["code"] == 1.0  # LESS: the loud task takes the whole budget
    assert min(shares.values()) >= 0.25  # BIDS: each task about a third
    out = pq.read_table(tmp_path / "out")
    assert out.num_rows == s["selected_docs"] == 30
    assert sorted(out.column("bids_rank").to_pylist()) == list(range(30))
    # the same selection with two workers, and with the map given on the command line
    assert (
        run_main(
            *argv[:2], str(tmp_path / "w2"), *argv[3:], "--workers", "2", "--example-tasks", ",".join(TASKS)
        )
        == 0
    )
    assert pq.read_table(tmp_path / "w2").sort_by("bids_rank").equals(out.sort_by("bids_rank"))


def test_bids_errors_name_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    influence_pool(tmp_path / "pool", per_group=5)
    base = ["bids", str(tmp_path / "pool"), "--no-progress"]
    assert run_main(*base, str(tmp_path / "o1"), "--budget", "docs:1000") == 1
    assert "larger than the selectable input" in capsys.readouterr().err
    assert run_main(*base, str(tmp_path / "o2"), "--budget", "docs:3", "--example-tasks", "a,b") == 1
    assert "row 0" in capsys.readouterr().err
    plain = tmp_path / "plain.parquet"
    pq.write_table(pa.table({"text": ["a b c"]}), plain)
    assert run_main("bids", str(plain), str(tmp_path / "o3"), "--budget", "docs:1", "--no-progress") == 1
    assert "plain.parquet" in capsys.readouterr().err
