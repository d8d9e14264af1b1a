"""The golden runs (tests/golden/runs.py) still write what they wrote when their digests were
recorded: every command on the committed golden corpus, output content compared file by file.
The runs happen in a child process with torch's and MKL's CPU code paths pinned (PINNED_ENV)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.golden.runs import HERE, NOT_RUN, RUNS, command_paths

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
