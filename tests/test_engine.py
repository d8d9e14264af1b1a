"""The job engine's own bookkeeping: phase timings and the spill cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from curate.engine import spills
from curate.engine.job import Job, JobRun
from curate.engine.phases import Driver
from curate.engine.run import run_job


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_a_phase_is_timed_without_the_phases_it_pulls_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """`score` pulling in `diversity` used to report the diversity's seconds twice."""
    import curate.engine.job as job_module

    clock = FakeClock()
    monkeypatch.setattr(job_module.time, "perf_counter", clock)

    def inner(run: JobRun) -> int:
        clock.t += 3.0
        return 1

    def outer(run: JobRun) -> int:
        clock.t += 1.0
        value = run.get("inner") + run.get("inner")  # the second get is the cached result
        clock.t += 1.0
        return value

    def deepest(run: JobRun) -> int:
        clock.t += 0.5
        return run.get("outer")

    job = Job(
        kind="timing test",
        config=None,
        inputs={},
        columns={},
        output=None,
        phases=(
            Driver(name="deepest", fn=deepest),
            Driver(name="outer", fn=outer, on_demand=True),
            Driver(name="inner", fn=inner, on_demand=True),
        ),
        summarize=lambda run: {},
    )
    timings = run_job(job, workers=1).summary["timings"]
    assert {k: v["seconds"] for k, v in timings.items()} == {"inner": 3.0, "outer": 2.0, "deepest": 0.5}


def _spill(path: Path, key: np.ndarray) -> str:
    np.savez(path, key=key, cost=np.ones(len(key), np.int64))
    return str(path)


def test_spills_are_cached_by_version_and_read_only(tmp_path: Path) -> None:
    spills.clear_spill_cache()
    path = _spill(tmp_path / "s.npz", np.arange(5.0))
    first = spills.read_spill(path)
    assert spills.read_spill(path) is first
    assert not first["key"].flags.writeable
    with pytest.raises(ValueError):
        first["key"][0] = 9.0
    # a rerun rewrites the spill: the new content is read, not the cached one
    _spill(tmp_path / "s.npz", np.arange(7.0) * 2)
    again = spills.read_spill(path)
    np.testing.assert_array_equal(again["key"], np.arange(7.0) * 2)
    spills.clear_spill_cache()
    assert spills.read_spill(path) is not again


def test_spills_past_the_budget_are_read_from_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spills.clear_spill_cache()
    monkeypatch.setattr(spills, "SPILL_CACHE_BYTES", 300)
    small = _spill(tmp_path / "small.npz", np.arange(10.0))  # 160 bytes
    big = _spill(tmp_path / "big.npz", np.arange(100.0))  # 1,600 bytes: never held
    assert spills.read_spill(small) is spills.read_spill(small)
    b1, b2 = spills.read_spill(big), spills.read_spill(big)
    assert b1 is not b2
    np.testing.assert_array_equal(b1["key"], b2["key"])
    other = _spill(tmp_path / "other.npz", np.arange(8.0))  # 128 bytes: the oldest goes out
    spills.read_spill(other)
    assert sum(a.nbytes for v in spills._cache.values() for a in v.values()) <= 300
    spills.clear_spill_cache()
