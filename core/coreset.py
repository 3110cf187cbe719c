"""Greedy k-center coreset (minimax facility location), as in PatchCore.

Picks ``n`` patches so that every patch is as close as possible to a picked
one. Distances are computed in a seeded random projection, as in the paper.

Greedy picks are nested: the first ``m`` indices of a run are exactly the run
with ``n = m``, so shrinking a bank to a smaller share is a prefix of it.
"""
from __future__ import annotations

import math

import numpy as np
import torch

PROJECTIONS = ("auto", "sparse", "gaussian", "none")


def jl_min_dim(n_samples: int, eps: float) -> int:
    """Johnson-Lindenstrauss dimension (sklearn's formula), as the published code asks for."""
    return int(4 * math.log(max(n_samples, 2)) / (eps ** 2 / 2 - eps ** 3 / 3))


def projection_matrix(dim: int, target: int, kind: str, seed: int) -> torch.Tensor:
    """A seeded (dim × target) random projection; ``sparse`` follows Li et al. (density 1/√dim)."""
    g = torch.Generator().manual_seed(seed)
    if kind == "gaussian":
        return torch.randn(dim, target, generator=g) / math.sqrt(target)
    density = 1 / math.sqrt(dim)
    u = torch.rand(dim, target, generator=g)
    signs = torch.where(u < density / 2, -1.0, torch.where(u < density, 1.0, 0.0))
    return signs * math.sqrt(1 / density) / math.sqrt(target)


def resolve_projection(n: int, dim: int, projection: str, eps: float, target_dim: int | None) -> tuple[str, int]:
    """Which projection is actually used, and to how many dimensions.

    ``auto``: sparse, to ``target_dim`` (default 64) when that is below ``dim``; raw features otherwise.
    64 rather than PatchCore's 128: on the demo benchmark (4 domains, Lite0) the AUROC was the same
    (0.842 vs 0.843 mean, raw 0.850) and the coreset 3× faster, the loop being memory-bound.
    ``sparse`` without ``target_dim``: the paper's JL rule, which falls back to raw features
    when the JL dimension is not below ``dim`` (this happens, silently in the published code).
    """
    if projection not in PROJECTIONS:
        raise ValueError(f"projection must be one of {PROJECTIONS}")
    if projection == "none":
        return "none", dim
    if projection == "auto":
        target = target_dim or 64
        return ("sparse", target) if target < dim else ("none", dim)
    target = target_dim or jl_min_dim(n, eps)
    return (projection, target) if target < dim else ("none", dim)


def _project(feats: np.ndarray, kind: str, target: int, seed: int, chunk: int) -> np.ndarray:
    if kind == "none":
        return np.ascontiguousarray(feats, dtype=np.float32)
    p = projection_matrix(feats.shape[1], target, kind, seed).numpy()
    out = np.empty((len(feats), target), np.float32)
    for i in range(0, len(feats), chunk):  # chunked: a 10^6-patch cohort never needs a second N × D copy
        np.matmul(feats[i:i + chunk], p, out=out[i:i + chunk])
    return out


def greedy_coreset(features, n: int, *, projection: str = "auto", eps: float = 0.9,
                   target_dim: int | None = None, seed: int = 0, start: int | None = None,
                   device: str | torch.device = "cpu", chunk: int = 65536, progress=None) -> np.ndarray:
    """Indices of ``n`` greedy k-center picks from ``features`` (N × D), in pick order.

    ``start``: index of the first centre; by default drawn from ``seed``.
    Each step is one matrix-vector product over the projected patches plus an
    elementwise minimum (squared distances via |x|² − 2x·c + |c|²). On the CPU
    this runs in NumPy's BLAS (measured 2–3× faster than torch's mv here); on
    CUDA in torch.
    """
    feats = np.asarray(features, dtype=np.float32)
    if feats.ndim != 2:
        raise ValueError(f"features must be N × D, got {feats.shape}")
    total, dim = feats.shape
    if n <= 0:
        raise ValueError("coreset size must be positive")
    if n >= total:
        return np.arange(total)
    kind, target = resolve_projection(total, dim, projection, eps, target_dim)
    x = _project(feats, kind, target, seed, chunk)
    if start is None:
        start = int(np.random.default_rng(seed).integers(total))
    if torch.device(device).type == "cuda":
        return _greedy_torch(torch.from_numpy(x).to(device), n, start, progress)
    return _greedy_numpy(x, n, start, progress)


def _greedy_numpy(x: np.ndarray, n: int, start: int, progress) -> np.ndarray:
    x_sq = np.einsum("ij,ij->i", x, x)
    min_d = np.full(len(x), np.inf, np.float32)
    buf = np.empty(len(x), np.float32)
    picks = np.empty(n, dtype=np.int64)
    idx = start
    for t in range(n):
        picks[t] = idx
        c = x[idx]
        np.dot(x, c, out=buf)          # the one matrix-vector product of the step
        buf *= -2.0
        buf += x_sq
        buf += float(c @ c)
        np.minimum(min_d, buf, out=min_d)
        idx = int(np.argmax(min_d))
        if progress is not None and (t % 256 == 0 or t == n - 1):
            progress(t + 1, n)
    return picks


def _greedy_torch(x: torch.Tensor, n: int, start: int, progress) -> np.ndarray:
    x_sq = (x * x).sum(1)
    min_d = torch.full((len(x),), float("inf"), device=x.device)
    picks = np.empty(n, dtype=np.int64)
    idx = start
    for t in range(n):
        picks[t] = idx
        c = x[idx]
        min_d = torch.minimum(min_d, x_sq - 2 * (x @ c) + c.dot(c))
        idx = int(torch.argmax(min_d))
        if progress is not None and (t % 256 == 0 or t == n - 1):
            progress(t + 1, n)
    return picks


def naive_greedy_coreset(features, n: int, start: int = 0) -> np.ndarray:
    """Reference k-center greedy, written the straightforward way (for tests and benchmarks)."""
    x = torch.as_tensor(np.asarray(features, dtype=np.float32))
    picks = [start]
    min_d = torch.linalg.vector_norm(x - x[start], dim=1)
    for _ in range(1, min(n, len(x))):
        i = int(torch.argmax(min_d))
        picks.append(i)
        min_d = torch.minimum(min_d, torch.linalg.vector_norm(x - x[i], dim=1))
    return np.asarray(picks)
