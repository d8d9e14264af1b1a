"""BIDS (Dai et al. 2025): balanced selection over an attribution matrix (METHODS §3).

A[i, j] is candidate i's influence on validation example j; examples are grouped into K tasks.
Each column is normalised over the **whole** pool (mean and std merged across shards, std 0
guarded), task influence is the mean of a task's normalised columns, and the selection grows one
candidate at a time: the one with the highest influence on the task the selection serves least
(`argmin_task`, the abstract read literally, the default) or the one with the largest gain over
the selection's current mean on any task (`max_gain`, a secondary summary's reading of
Algorithm 1). One sorted candidate list per task with a pointer past taken items makes a step
O(K): O(N·K·log N + B·K) in all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MODES = ("argmin_task", "max_gain")


@dataclass
class ColumnMoments:
    """Mergeable count, sum and sum of squares of each column (float64)."""

    n: int
    total: np.ndarray
    squares: np.ndarray

    @classmethod
    def of(cls, a: np.ndarray) -> ColumnMoments:
        a = np.asarray(a, np.float64)
        return cls(n=len(a), total=a.sum(axis=0), squares=(a * a).sum(axis=0))

    def merge(self, other: ColumnMoments) -> ColumnMoments:
        return ColumnMoments(self.n + other.n, self.total + other.total, self.squares + other.squares)

    def mean_std(self) -> tuple[np.ndarray, np.ndarray]:
        mean = self.total / max(self.n, 1)
        var = np.maximum(self.squares / max(self.n, 1) - mean * mean, 0.0)
        std = np.sqrt(var)
        return mean, np.where(std > 0, std, 1.0)  # a constant column normalises to 0, not NaN


def task_influence(
    a: np.ndarray, mean: np.ndarray, std: np.ndarray, task_of: np.ndarray, k: int
) -> np.ndarray:
    """I[i, t]: the mean over task t's columns of the normalised A[i, j] (float32, N x K)."""
    z = (np.asarray(a, np.float64) - mean) / std
    out = np.zeros((len(z), k))
    for t in range(k):
        cols = task_of == t
        out[:, t] = z[:, cols].mean(axis=1)
    return out.astype(np.float32)


def balanced_order(
    influence: np.ndarray, cost: np.ndarray, budget: float, mode: str = "argmin_task"
) -> np.ndarray:
    """Candidates in the order BIDS takes them, until their cost reaches `budget` (the last one
    may cross it). Ties go to the lower task index, then to the lower candidate index."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    n, k = influence.shape
    if n == 0 or budget <= 0:
        return np.zeros(0, np.int64)
    lists = [np.lexsort((np.arange(n), -influence[:, t].astype(np.float64))) for t in range(k)]
    heads = [0] * k
    taken = np.zeros(n, bool)
    sums = np.zeros(k)
    order: list[int] = []
    spent = 0.0

    def head(t: int) -> int:
        lst, h = lists[t], heads[t]
        while h < n and taken[lst[h]]:
            h += 1
        heads[t] = h
        return int(lst[h]) if h < n else -1

    while spent < budget and len(order) < n:
        means = sums / len(order) if order else sums
        if mode == "argmin_task":
            best = head(int(np.argmin(means)))
        else:
            gains = [(float(influence[h, t]) - means[t], -t, h) for t in range(k) if (h := head(t)) >= 0]
            best = max(gains)[2]
        taken[best] = True
        order.append(best)
        sums += influence[best]
        spent += float(cost[best])
    return np.asarray(order, np.int64)
