"""The golden runs (tests/golden/runs.py) still write what they wrote when their digests were
recorded: every command on the committed golden corpus, output content compared file by file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.golden.runs import DIGESTS, NOT_RUN, RUNS, command_paths, run_all

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


def test_outputs_match_the_golden_digests(tmp_path: Path) -> None:
    expected = json.loads(DIGESTS.read_text())
    got = run_all(tmp_path)
    assert set(got) == set(expected), "runs added or removed: regenerate with `make golden`"
    changed = [
        f"{run}: {name}: {expected[run].get(name)} -> {digest}"
        for run in got
        for name, digest in sorted(got[run].items())
        if expected[run].get(name) != digest
    ] + [f"{run}: {name} no longer written" for run in got for name in set(expected[run]) - set(got[run])]
    assert not changed, "outputs changed:\n" + "\n".join(changed)
