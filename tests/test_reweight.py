"""Loss-based reweighting: the formulas of METHODS §6, the uniform case exactly, the torch helper."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import strategies as st

from curate.errors import UsageError
from curate.reweight import ReweightedLoss, log_weights, sample_weights, scaled

LOSSES = st.lists(st.floats(0.1, 12.0, allow_nan=False), min_size=2, max_size=40)


def test_formulas_on_a_known_batch() -> None:
    losses = np.array([1.0, 2.0, 3.0, 5.0])
    h = scaled(losses)
    assert np.allclose(h, [-1.0, -0.5, 0.0, 1.0])
    f = {
        "linupper": np.minimum(h + 1, 1),
        "quadratic": 1 - h**2,
        "extremes": np.abs(h),
        "upper": 0.5 * h + 0.5,
    }
    for strategy, values in f.items():
        for r in (0.4, 1.0):
            e = np.exp(values / r)
            assert np.allclose(sample_weights(losses, strategy=strategy, temperature=r), e / e.sum())


@given(
    LOSSES, st.sampled_from(["linupper", "quadratic", "extremes", "upper", "uniform"]), st.floats(0.05, 10)
)
def test_weights_are_a_distribution(losses: list[float], strategy: str, r: float) -> None:
    w = sample_weights(np.array(losses), strategy=strategy, temperature=r)
    assert np.all(w >= 0) and abs(w.sum() - 1) < 1e-12


@given(LOSSES)
def test_uniform_and_warmup_are_exactly_uniform(losses: list[float]) -> None:
    n = len(losses)
    assert np.array_equal(sample_weights(np.array(losses), strategy="uniform"), np.full(n, 1 / n))
    assert np.array_equal(sample_weights(np.array(losses), step=3, warmup_steps=10), np.full(n, 1 / n))


@given(LOSSES)
def test_linupper_rises_then_caps(losses: list[float]) -> None:
    x = np.sort(np.array(losses))
    w = sample_weights(x, strategy="linupper")
    assert np.all(np.diff(w) >= -1e-15)  # never down-weights a higher loss
    mid = (x.min() + x.max()) / 2
    above = w[x >= mid]
    assert np.allclose(above, above.max())  # flat (capped) above the midpoint


def test_log_weights_match_normalised_weights() -> None:
    losses = np.array([0.5, 1.5, 4.0, 2.2])
    lw = log_weights(losses, strategy="quadratic", temperature=0.5)
    e = np.exp(lw - lw.max())
    assert np.allclose(e / e.sum(), sample_weights(losses, strategy="quadratic", temperature=0.5))
    with pytest.raises(UsageError, match="did you mean 'linupper'"):
        sample_weights(losses, strategy="linuper")


def test_torch_helper_uniform_is_token_weighted_mean_and_grads_follow_weights() -> None:
    torch = pytest.importorskip("torch")
    losses = torch.tensor([1.0, 2.0, 4.0], requires_grad=True)
    tokens = torch.tensor([10.0, 30.0, 60.0])
    uniform = ReweightedLoss(strategy="uniform")(losses, step=0, tokens=tokens)
    assert torch.allclose(uniform, (losses * tokens).sum() / tokens.sum())
    lin = ReweightedLoss(strategy="linupper", temperature=1.0)
    loss = lin(losses, step=0)
    loss.backward()
    w = sample_weights(np.array([1.0, 2.0, 4.0]), strategy="linupper")
    assert np.allclose(losses.grad.numpy(), 3 * w * (1 / 3))  # d/dl_i of n * sum w_i (1/n) l_i
    warm = ReweightedLoss(strategy="extremes", warmup_steps=5)
    assert torch.allclose(warm(losses.detach(), step=1), losses.detach().mean())


def test_cli_reweight_then_resample(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    loss = rng.uniform(1, 6, 400)
    pq.write_table(
        pa.table(
            {
                "id": [f"d{i}" for i in range(400)],
                "text": ["some text"] * 400,
                "lm_loss": loss,
                "n_tokens": [100] * 400,
            }
        ),
        tmp_path / "p.parquet",
    )
    cli = [sys.executable, "-m", "curate.cli.app"]
    res = subprocess.run(
        [
            *cli,
            "reweight",
            str(tmp_path / "p.parquet"),
            str(tmp_path / "w"),
            "--by",
            "lm_loss",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    t = pq.read_table(tmp_path / "w")
    lw = np.asarray(t.column("reweight_log_weight").to_numpy(zero_copy_only=False))
    assert np.allclose(lw, np.minimum(scaled(loss) + 1, 1))
    res = subprocess.run(
        [
            *cli,
            "resample",
            str(tmp_path / "w"),
            str(tmp_path / "s"),
            "--by",
            "reweight_log_weight",
            "--budget",
            "docs:100",
            "--no-progress",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    chosen = pq.read_table(tmp_path / "s").column("lm_loss").to_numpy()
    assert chosen.mean() > loss.mean()  # low-loss (redundant) documents are down-weighted
