"""Selection metrics: KL reduction (DSIR's data metric), group shares, pass throughput."""

from __future__ import annotations

from typing import Any

import numpy as np

KL_EPS = 1e-8


def distribution(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else c


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray, eps: float = KL_EPS) -> float:
    """KL(p || q) in nats over hashed buckets; q is smoothed by +eps (as DSIR's estimator is)."""
    p = distribution(p_counts)
    q = distribution(q_counts)
    nz = p > 0
    return float(np.sum(p[nz] * (np.log(p[nz]) - np.log(q[nz] + eps))))


def kl_reduction(target: np.ndarray, raw: np.ndarray, selected: np.ndarray) -> dict[str, float]:
    """KL(target || raw) - KL(target || selected): positive when the selection moved toward the target."""
    kl_raw = kl_divergence(target, raw)
    kl_sel = kl_divergence(target, selected)
    return {"kl_target_raw": kl_raw, "kl_target_selected": kl_sel, "kl_reduction": kl_raw - kl_sel}


def group_shares(pool: dict[str, list[int]], selected: dict[str, list[int]]) -> list[dict[str, Any]]:
    """Per group value: docs and tokens in the pool and in the selection, and token shares."""
    pool_tokens = sum(v[1] for v in pool.values()) or 1
    sel_tokens = sum(v[1] for v in selected.values()) or 1
    rows = []
    for g in sorted(set(pool) | set(selected), key=lambda k: -pool.get(k, [0, 0])[1]):
        p = pool.get(g, [0, 0])
        s = selected.get(g, [0, 0])
        rows.append(
            {
                "group": g,
                "pool_docs": p[0],
                "pool_tokens": p[1],
                "pool_share": p[1] / pool_tokens,
                "selected_docs": s[0],
                "selected_tokens": s[1],
                "selected_share": s[1] / sel_tokens,
            }
        )
    return rows


def merge_groups(parts: list[dict[str, list[int]]]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for part in parts:
        for k, v in part.items():
            cur = out.setdefault(k, [0, 0])
            cur[0] += v[0]
            cur[1] += v[1]
    return out
