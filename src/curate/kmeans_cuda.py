"""The GPU half of `curate.kmeans`: the same distance blocks, near-tie settling and k-means++ in
torch on a CUDA device. Arrays come in and go out as numpy; the random draws come from the
caller's numpy generator, so a seed picks the same candidates on either device."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from curate.errors import MissingDependencyError

Settle = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingDependencyError("k-means on a GPU needs torch", hint="pip install 'curate[lm]'") from exc
    return torch


def assign_cuda(
    x: np.ndarray,
    centroids: np.ndarray,
    device: str,
    sums: np.ndarray | None,
    *,
    step: int,
    near_tie: float,
    settle: Settle,
) -> tuple[np.ndarray, np.ndarray]:
    """`curate.kmeans.assign` on the GPU; `settle` is its float64 brute force (run on the host)."""
    torch = _torch()
    xt = torch.from_numpy(x.copy() if not x.flags.writeable else x).to(device)
    ct = torch.from_numpy(centroids.copy()).to(device)
    c2 = (ct * ct).sum(1)
    labels = torch.empty(len(x), dtype=torch.long, device=device)
    d2 = torch.empty(len(x), dtype=torch.float32, device=device)
    total = torch.zeros(ct.shape, dtype=torch.float64, device=device) if sums is not None else None
    block = torch.zeros(ct.shape, dtype=torch.float32, device=device) if sums is not None else None
    for i in range(0, len(x), step):
        xb = xt[i : i + step]
        dist = torch.addmm(c2[None, :], xb, ct.T, alpha=-2.0)  # ‖c‖² − 2x·c
        x2 = (xb * xb).sum(1)
        if ct.shape[0] > 1:
            two, idx = torch.topk(dist, 2, dim=1, largest=False)
            best, arg = two[:, 0], idx[:, 0].clone()
            near = torch.nonzero(two[:, 1] - two[:, 0] <= near_tie * (best.abs() + x2 + 1e-12)).flatten()
            if len(near):  # settled on the host, exactly as the CPU path does
                e_arg, e_best = settle(xb[near].cpu().numpy(), centroids)
                arg[near] = torch.from_numpy(e_arg).to(device)
                x2n = x2[near].double().cpu().numpy()
                best[near] = torch.from_numpy((e_best - x2n).astype(np.float32)).to(device)
        else:
            best, arg = dist.min(1)
        labels[i : i + step] = arg
        d2[i : i + step] = (best + x2).clamp_min(0.0)
        if total is not None and block is not None:
            block.zero_()
            block.index_add_(0, arg, xb)
            total += block
    if sums is not None and total is not None:
        sums += total.cpu().numpy()
    return labels.cpu().numpy(), d2.cpu().numpy()


def plus_plus_cuda(
    x: np.ndarray,
    k: int,
    rng: np.random.Generator,
    device: str,
    trials: int,
    unused_rows: Callable[[int, list[int], np.random.Generator], list[int]],
) -> list[int]:
    """The rows greedy k-means++ chooses (see `curate.kmeans.kmeans_plus_plus`), on the GPU."""
    torch = _torch()
    n = len(x)
    xt = torch.from_numpy(x.copy()).to(device)
    x2 = (xt * xt).sum(1)
    chosen = [int(rng.integers(n))]
    closest = (x2 - 2 * xt @ xt[chosen[0]] + x2[chosen[0]]).clamp_min(0.0)
    for _ in range(1, k):
        cum = torch.cumsum(closest.double(), 0)
        potential = float(cum[-1])
        if potential <= 0:
            chosen.extend(unused_rows(n, chosen, rng)[: k - len(chosen)])
            break
        r = torch.from_numpy(rng.random(trials) * potential).to(device)
        cand = torch.searchsorted(cum, r).clamp(max=n - 1)
        d_cand = (x2[None, :] - 2 * xt[cand] @ xt.T + x2[cand][:, None]).clamp_min(0.0)
        d_cand = torch.minimum(d_cand, closest[None, :])
        best = int(torch.argmin(d_cand.double().sum(1)))
        chosen.append(int(cand[best]))
        closest = d_cand[best]
    return chosen
