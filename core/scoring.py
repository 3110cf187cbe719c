"""PatchCore's scoring math: patch distances → anomaly map and image score.

Kept apart from orchestration (routing, calibration, storage) so each rule can
be tested on its own and compared on the benchmark.
"""
from __future__ import annotations

import cv2
import numpy as np

from .bank import MemoryBank
from .preprocess import Preprocessing

SCORE_RULES = ("reweighted", "max", "map_max", "topk_mean")


def anomaly_map(patch_scores: np.ndarray, grid: tuple[int, int], size: int, sigma: float = 4.0) -> np.ndarray:
    """Patch distances (h·w,) → size×size map: bilinear upsample, then Gaussian blur (σ in model pixels)."""
    m = np.asarray(patch_scores, np.float32).reshape(grid)
    m = cv2.resize(m, (size, size), interpolation=cv2.INTER_LINEAR)
    if sigma > 0:
        k = 2 * int(4 * sigma + 0.5) + 1
        m = cv2.GaussianBlur(m, (k, k), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
    return m


def map_to_original(model_map: np.ndarray, pre: Preprocessing, height: int, width: int) -> np.ndarray:
    """A model-resolution map back onto the scan's pixel grid (bilinear).

    With a centre crop, pixels the model never saw get the map's minimum, so
    they never look suspicious by construction.
    """
    y0, x0, y1, x1 = pre.crop_box(height, width)
    inner = cv2.resize(model_map, (max(1, x1 - x0), max(1, y1 - y0)), interpolation=cv2.INTER_LINEAR)
    if (y0, x0, y1, x1) == (0, 0, height, width):
        return inner
    out = np.full((height, width), float(model_map.min()), np.float32)
    ys, xs = slice(max(0, y0), min(height, y1)), slice(max(0, x0), min(width, x1))
    out[ys, xs] = inner[ys.start - y0:ys.stop - y0, xs.start - x0:xs.stop - x0]
    return out


def reweighted_max(patches: np.ndarray, nn_dist: np.ndarray, nn_idx: np.ndarray, bank: MemoryBank,
                   neighbours: int = 3) -> float:
    """PatchCore's re-weighted image score (as in the ind_knn_ad code used by PatchCoreCL).

    s* is the largest patch distance, m* the bank patch nearest to that test
    patch. Take the ``neighbours`` bank patches nearest to m* (m* itself first,
    then the others); w = 1 − exp(s*/√D) / Σ_others exp(|patch − nn|/√D).
    A test patch whose nearest normal patch sits in a sparse part of the bank
    gets a larger weight.
    """
    i = int(np.argmax(nn_dist))
    s_star = float(nn_dist[i])
    if neighbours < 2 or len(bank) < 2:
        return s_star
    _, knn = bank.search(bank.patches[nn_idx[i]][None], neighbours)
    others = bank.patches[knn[0, 1:]]
    d = np.linalg.norm(others - patches[i], axis=1)
    sqrt_d = np.sqrt(patches.shape[1])
    # subtract the largest exponent first: the ratio is unchanged and never overflows
    shift = max(s_star, float(d.max())) / sqrt_d
    w = 1.0 - np.exp(s_star / sqrt_d - shift) / np.exp(d / sqrt_d - shift).sum()
    return float(w * s_star)


def image_score(rule: str, patches: np.ndarray, nn_dist: np.ndarray, nn_idx: np.ndarray, bank: MemoryBank,
                model_map: np.ndarray, neighbours: int = 3, topk_fraction: float = 0.01) -> float:
    if rule == "reweighted":
        return reweighted_max(patches, nn_dist, nn_idx, bank, neighbours)
    if rule == "max":
        return float(nn_dist.max())
    if rule == "map_max":
        return float(model_map.max())
    if rule == "topk_mean":
        k = max(1, int(round(topk_fraction * nn_dist.size)))
        return float(np.sort(nn_dist)[-k:].mean())
    raise ValueError(f"score rule must be one of {SCORE_RULES}")
