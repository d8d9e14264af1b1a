"""The golden runs (tests/golden/runs.py) still write what they wrote when their digests were
recorded: every command on the committed golden corpus, output content compared file by file.
The runs happen in a child process with torch's and MKL's CPU code paths pinned (PINNED_ENV);
the floats of torch-trained outputs are compared within a tolerance (runs.FLOAT_RTOL), since
torch's matrix kernels round differently on different CPUs even so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.golden.runs import (
    HERE,
    NOT_RUN,
    RUNS,
    command_paths,
    float_sums,
    tolerant_digest,
    tolerant_mismatch,
)

pytest.importorskip("torch")


def test_every_command_has_a_golden_run() -> None:
    covered = set()
    for run in RUNS:
        for n in (2, 1):
            if tuple(run.argv[:n]) in command_paths():
                covered.add(tuple(run.argv[:n]))
                break
    missing = set(command_paths()) - covered - set(NOT_RUN)
    assert not missing, f"add a golden run for: {sorted(missing)}"


def test_outputs_match_the_golden_digests() -> None:
    res = subprocess.run([sys.executable, str(HERE / "runs.py"), "--check"], capture_output=True, text=True)
    assert res.returncode == 0, (
        "regenerate with `make golden` only if the change means it:\n" + res.stderr[-4000:]
    )


def _tolerant(tmp_path: Path, loss: np.ndarray, ids: list[str]) -> dict[str, Any]:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ids, "loss": pa.array(loss, pa.float32())}), path)
    return tolerant_digest(path)


def test_tolerant_digests_take_rounding_and_catch_changes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    loss = (rng.random(64) + 0.5).astype(np.float32)
    ids = [f"d{i}" for i in range(64)]
    base = _tolerant(tmp_path, loss, ids)

    def why(values: np.ndarray, names: list[str] = ids) -> str:
        return tolerant_mismatch(base, _tolerant(tmp_path, values, names))

    assert why(loss * (1 + rng.uniform(-1e-6, 1e-6, 64)).astype(np.float32)) == ""  # kernels' spread
    moved = loss.copy()
    moved[3] *= 1.05
    assert "loss: a group's sums" in why(moved)

    # Two values trading rows: seen when their positions fall in different groups.
    def group(i: int) -> int:
        return int(np.flatnonzero(float_sums(np.eye(64)[i])[4::2])[0])

    other = next(j for j in range(1, 64) if group(j) != group(0) and abs(loss[j] - loss[0]) > 0.05)
    swapped = loss.copy()
    swapped[[0, other]] = swapped[[other, 0]]
    assert "loss: a group's sums" in why(swapped)
    assert "non-float" in why(loss, ids[::-1])
    with_nan = loss.copy()
    with_nan[5] = np.nan
    assert "NaN" in why(with_nan)
