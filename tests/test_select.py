"""`curate select` end to end on a real multi-domain pool."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from curate.engine.job import JobResult
from curate.engine.run import run_job
from curate.io.outputs import finished_shards
from curate.jobs.select import SelectConfig, select_job


def select(config: SelectConfig, **kw) -> JobResult:  # type: ignore[no-untyped-def]
    return run_job(select_job(config), **kw)


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.parquet"))}


def _config(corpus, out: Path, **kw) -> SelectConfig:  # type: ignore[no-untyped-def]
    return SelectConfig(
        pool=str(corpus.pool),
        output=str(out),
        target=str(corpus.target),
        group_by="domain",
        **{"budget": "60K", **kw},
    )


def test_selects_toward_the_target(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = select(_config(corpus, tmp_path / "out"), workers=1)
    s = res.summary
    shares = {g["group"]: g for g in s["groups"]}
    target = shares[corpus.target_domain]
    # the target domain is a minority of the pool (its share depends on what text this machine
    # has) and the majority of the selection; the selection's n-grams moved toward the target's
    assert target["pool_share"] < 0.3
    assert target["selected_share"] > max(0.5, 2 * target["pool_share"])
    assert s["kl_target_selected"] < 0.85 * s["kl_target_raw"]
    assert abs(s["budget_error"]) < 0.05
    table = pq.read_table(tmp_path / "out")
    # every input column is preserved, the stage columns added
    assert {"id", "text", "domain", "source", "dsir_log_weight", "n_tokens"} <= set(table.column_names)
    assert table.num_rows == s["selected_docs"]
    assert len(set(table.column("id").to_pylist())) == table.num_rows
    assert pc.min(table.column("dsir_log_weight")).as_py() is not None


def test_one_and_two_workers_give_identical_bytes(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    select(_config(corpus, tmp_path / "w1"), workers=1)
    select(_config(corpus, tmp_path / "w2"), workers=2)
    d1, d2 = _digest(tmp_path / "w1"), _digest(tmp_path / "w2")
    assert d1 and d1 == d2


def test_seed_changes_selection_and_top_k_does_not_use_it(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    ids = {}
    for name, kw in {
        # A high temperature makes the Gumbel noise, not the weights, decide the order, so two
        # seeds differ on any corpus (at T=1 a corpus whose weights have a gap at the cut may not).
        "s0": {"seed": 0, "temperature": 1000.0},
        "s1": {"seed": 1, "temperature": 1000.0},
        "k0": {"top_k": True, "seed": 0},
        "k1": {"top_k": True, "seed": 1},
    }.items():
        select(_config(corpus, tmp_path / name, **kw), workers=1)
        ids[name] = set(pq.read_table(tmp_path / name, columns=["id"]).column("id").to_pylist())
    assert ids["s0"] != ids["s1"]
    assert ids["k0"] == ids["k1"]


def test_rerun_of_finished_run_is_a_no_op(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    select(_config(corpus, out), workers=1)
    before = _digest(out)
    res = select(_config(corpus, out), workers=2)
    assert res.resumed == ["all"]
    assert _digest(out) == before


def test_killed_run_resumes_to_identical_output(tmp_path: Path) -> None:
    """Kill a real `curate select` with SIGKILL mid-write, rerun it, compare with a clean run."""
    from curate.testing import build_corpus

    c = build_corpus(tmp_path / "c", max_bytes_per_domain=300_000, shards=24, row_group_size=32)
    args = [
        sys.executable,
        "-m",
        "curate.cli.app",
        "select",
        str(c.pool),
        "",
        "--target",
        str(c.target),
        "--budget",
        "50%",
        "--workers",
        "1",
        "--no-progress",
    ]
    clean = tmp_path / "clean"
    subprocess.run([*args[:5], str(clean), *args[6:]], check=True, capture_output=True)
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [*args[:5], str(killed), *args[6:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    manifest = killed / "_manifest.json"
    deadline = time.time() + 120
    killed_mid_write = False
    while time.time() < deadline and proc.poll() is None:
        if any(key.startswith("write:") for key in finished_shards(killed)):
            os.kill(proc.pid, signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.005)
    proc.wait()
    assert killed_mid_write, "the run finished before it could be killed; make the pool larger"
    state = json.loads(manifest.read_text())
    assert not state.get("complete")
    assert len([key for key in finished_shards(killed) if key.startswith("write:")]) < 24
    res = subprocess.run([*args[:5], str(killed), *args[6:]], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "resumed" in res.stderr
    assert _digest(killed) == _digest(clean)
    assert not list(killed.glob(".*.tmp-*"))


def test_length_norm_sum_degenerates_toward_long_documents(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """DSIR's raw sum favours long documents (METHODS §1.7); per-chunk weights do not."""
    lengths = {}
    for norm in ("sum", "per-chunk"):
        select(_config(corpus, tmp_path / norm, length_norm=norm, budget="docs:40"), workers=1)
        t = pq.read_table(tmp_path / norm, columns=["text"])
        lengths[norm] = sum(len(x) for x in t.column("text").to_pylist()) / t.num_rows
    assert lengths["sum"] > lengths["per-chunk"]


def test_exact_tokenizer_meets_token_budget_exactly(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from curate.tokens import exact_counter

    res = select(_config(corpus, tmp_path / "out", tokenizer="cl100k", budget="30K"), workers=1)
    s = res.summary
    assert s["token_counter"].startswith("exact cl100k")
    t = pq.read_table(tmp_path / "out")
    counted = int(exact_counter("cl100k").count(t.column("text")).sum())
    assert counted == s["selected_tokens"] == pc.sum(t.column("n_tokens")).as_py()
    assert counted >= 30_000
    # cover policy: the shortest prefix, so dropping the last-ranked document falls below the budget
    from curate.budget import parse_budget
    from curate.stages.resample import GumbelTopK

    batch = t.combine_chunks().to_batches()[0]
    keys = GumbelTopK(by="dsir_log_weight", budget=parse_budget("30K"), seed=0).keys(batch)
    last = int(np.lexsort((keys.tie, -keys.key))[-1])
    assert counted - t.column("n_tokens")[last].as_py() < 30_000


def test_a_share_of_the_pool_is_a_share_of_its_exact_tokens(corpus, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`--budget 10%` with the estimate counter: 10% of the pool's exact cl100k tokens (every
    document of a pool this small is counted exactly), not of the estimate's guess of them."""
    from curate.tokens import exact_counter

    res = select(_config(corpus, tmp_path / "out", budget="10%", min_words=1), workers=1)
    s = res.summary
    assert s["token_counter"].startswith("estimate")
    pool = pq.read_table(corpus.pool, columns=["text"]).column("text")
    pool_exact = int(exact_counter("cl100k").count(pool).sum())
    assert abs(s["budget_resolved"]["amount"] - 0.1 * pool_exact) <= 1
    t = pq.read_table(tmp_path / "out")
    selected = int(exact_counter("cl100k").count(t.column("text")).sum())
    assert selected == s["selected_tokens"]
    longest = int(exact_counter("cl100k").count(pool).max())
    assert abs(selected - 0.1 * pool_exact) <= longest  # within one document of the share


@pytest.mark.parametrize("budget", ["docs:25", "bytes:100K", "20%"])
def test_other_budget_units(corpus, tmp_path: Path, budget: str) -> None:  # type: ignore[no-untyped-def]
    res = select(_config(corpus, tmp_path / "out", budget=budget), workers=1)
    s = res.summary
    t = pq.read_table(tmp_path / "out")
    if budget.startswith("docs"):
        assert t.num_rows == 25
    elif budget.startswith("bytes"):
        nbytes = pc.sum(pc.binary_length(t.column("text"))).as_py()
        assert nbytes >= 100_000 and s["selected_bytes"] == nbytes
    else:
        assert 0.15 < s["token_share"] < 0.25
