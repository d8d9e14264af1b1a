"""Dynamic loss-based sample reweighting (Sow et al., ICLR 2025; METHODS §6).

Given the per-sample losses of a global batch (length-normalised: mean token cross-entropy):
    h_i = (2δ ℓ_i − δ (ℓ_max + ℓ_min)) / max(ℓ_max − ℓ_min, 1e-6)      (onto [−δ, δ])
    f_i = strategy(h_i)
    w_i = softmax(f / r)_i                                               (sums to 1)
Strategies: linupper min(h + δ, δ) (recommended), quadratic 1 − h²/δ², extremes |h|,
upper 0.5 h + 0.5 δ, and uniform (w_i = 1/n exactly; the README snippet's "uniform" is not).
Before `warmup_steps` the weights are uniform (losses carry little signal early on).

The numpy functions are the reference; `ReweightedLoss` is the drop-in for a torch training step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.errors import UsageError, did_you_mean

STRATEGIES = ("linupper", "quadratic", "extremes", "upper", "uniform")


def _check(strategy: str, temperature: float, delta: float) -> None:
    if strategy not in STRATEGIES:
        raise UsageError(
            f"unknown strategy {strategy!r}{did_you_mean(strategy, STRATEGIES)}; allowed: {', '.join(STRATEGIES)}"
        )
    if not temperature > 0:
        raise UsageError(f"temperature must be positive, got {temperature}")
    if not delta > 0:
        raise UsageError(f"delta must be positive, got {delta}")


def scaled(
    losses: np.ndarray, delta: float = 1.0, lo: float | None = None, hi: float | None = None
) -> np.ndarray:
    """Losses mapped linearly onto [−δ, δ] with the batch's (or the given) min and max."""
    losses = np.asarray(losses, dtype=np.float64)
    lo = float(losses.min()) if lo is None else lo
    hi = float(losses.max()) if hi is None else hi
    return (2 * delta * losses - delta * (hi + lo)) / max(hi - lo, 1e-6)


def strategy_values(h: np.ndarray, strategy: str, delta: float = 1.0) -> np.ndarray:
    if strategy == "linupper":
        return np.minimum(h + delta, delta)
    if strategy == "quadratic":
        return 1 - h**2 / delta**2
    if strategy == "extremes":
        return np.abs(h)
    if strategy == "upper":
        return 0.5 * h + 0.5 * delta
    return np.zeros_like(h)  # uniform


def sample_weights(
    losses: np.ndarray,
    *,
    strategy: str = "linupper",
    temperature: float = 1.0,
    delta: float = 1.0,
    step: int | None = None,
    warmup_steps: int = 0,
) -> np.ndarray:
    """Weights over the global batch (they sum to 1)."""
    _check(strategy, temperature, delta)
    losses = np.asarray(losses, dtype=np.float64)
    n = len(losses)
    if n == 0:
        return np.zeros(0)
    if strategy == "uniform" or (step is not None and step < warmup_steps):
        return np.full(n, 1.0 / n)
    f = strategy_values(scaled(losses, delta), strategy, delta) / temperature
    e = np.exp(f - f.max())
    return e / e.sum()


def log_weights(
    losses: np.ndarray,
    *,
    strategy: str = "linupper",
    temperature: float = 1.0,
    delta: float = 1.0,
    lo: float | None = None,
    hi: float | None = None,
) -> np.ndarray:
    """Unnormalised log weights f/r for offline sampling (`curate resample --by`): the same
    ordering and ratios as `sample_weights` over the whole pool when lo/hi are the pool's."""
    _check(strategy, temperature, delta)
    losses = np.asarray(losses, dtype=np.float64)
    if strategy == "uniform":
        return np.zeros(len(losses))
    return strategy_values(scaled(losses, delta, lo, hi), strategy, delta) / temperature


@dataclass
class ReweightedLoss:
    """Drop-in for a torch training step: pass the per-sample (length-normalised) losses of this
    rank's micro-batch; returns the loss to back-propagate.

    With torch.distributed initialised, the detached losses are all-gathered so the weights are
    computed over the global batch, and each rank takes its slice by **global** rank (the fms-fsdp
    branch used the local rank, wrong on multi-node runs). The loss is
    `W * n_local * sum_i w_i * pi_i * l_i` (pi_i: the sample's token share in the local batch when
    `tokens` is given, else 1/n_local), so uniform weights give back the usual mean and DDP's
    gradient averaging over W ranks gives the global weighted objective.
    """

    strategy: str = "linupper"
    temperature: float = 1.0
    delta: float = 1.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        _check(self.strategy, self.temperature, self.delta)

    def weights(self, losses: Any, step: int) -> Any:
        """This rank's slice of the global weights (a detached tensor like `losses`)."""
        import torch
        import torch.distributed as dist

        local = losses.detach().float()
        world, rank = 1, 0
        if dist.is_available() and dist.is_initialized():
            world, rank = dist.get_world_size(), dist.get_rank()
            gathered = [torch.empty_like(local) for _ in range(world)]
            dist.all_gather(gathered, local)
            everything = torch.cat(gathered)
        else:
            everything = local
        w = sample_weights(
            everything.cpu().numpy(),
            strategy=self.strategy,
            temperature=self.temperature,
            delta=self.delta,
            step=step,
            warmup_steps=self.warmup_steps,
        )
        n = local.numel()
        mine = torch.as_tensor(w[rank * n : (rank + 1) * n], dtype=losses.dtype, device=losses.device)
        return mine, world

    def __call__(self, losses: Any, step: int, tokens: Any = None) -> Any:
        w, world = self.weights(losses, step)
        n = losses.numel()
        share = tokens / tokens.sum() if tokens is not None else losses.new_full((n,), 1.0 / n)
        return world * n * (w * share.to(losses.dtype) * losses).sum()


@dataclass(frozen=True, kw_only=True)
class ReweightAnnotatorSpec:
    """Parameters of the offline reweighting column (pool-wide min and max fixed in advance)."""

    column: str
    strategy: str
    temperature: float
    delta: float
    lo: float
    hi: float
    output: str = "reweight_log_weight"
