"""Detection and localisation metrics, and the continual-learning summaries.

All curve metrics are exact (one sort) below ``EXACT_LIMIT`` values and use
``BINS`` equal-width score bins above it (pixel-level metrics over whole test
sets), which changes AUROC by less than 1e-4 on the demo benchmark.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata

EXACT_LIMIT = 5_000_000
BINS = 20_000


def auroc(labels, scores) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); None with one class only."""
    y = np.asarray(labels, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    if s.size > EXACT_LIMIT:
        return _binned_auroc(y, s)
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _bins(s: np.ndarray):
    lo, hi = float(s.min()), float(s.max())
    return np.linspace(lo, hi if hi > lo else lo + 1e-12, BINS + 1)


def _binned_auroc(y: np.ndarray, s: np.ndarray) -> float:
    edges = _bins(s)
    pos = np.histogram(s[y], edges)[0][::-1].astype(np.float64)  # from the highest bin down
    neg = np.histogram(s[~y], edges)[0][::-1].astype(np.float64)
    tpr = np.concatenate([[0], np.cumsum(pos) / pos.sum()])
    fpr = np.concatenate([[0], np.cumsum(neg) / neg.sum()])
    return float(np.trapezoid(tpr, fpr))


def f1_max(labels, scores) -> float | None:
    """The best F1 over all thresholds (as the published code reports it)."""
    y = np.asarray(labels, bool).ravel()
    s = np.asarray(scores, np.float64).ravel()
    if y.sum() == 0:
        return None
    if s.size > EXACT_LIMIT:
        edges = _bins(s)
        tp = np.cumsum(np.histogram(s[y], edges)[0][::-1]).astype(np.float64)
        fp = np.cumsum(np.histogram(s[~y], edges)[0][::-1]).astype(np.float64)
    else:
        order = np.argsort(-s, kind="stable")
        ys, ss = y[order], s[order]
        last = np.r_[np.nonzero(np.diff(ss))[0], ys.size - 1]  # one point per distinct threshold
        tp = np.cumsum(ys)[last].astype(np.float64)
        fp = (last + 1 - tp).astype(np.float64)
    precision = tp / np.maximum(tp + fp, 1)
    recall = tp / y.sum()
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    return float(f1.max())


def aupro(masks, maps, fpr_limit: float = 0.3) -> float | None:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by ``fpr_limit``.

    Each connected ground-truth region counts equally (MVTec AD's PRO). At every
    threshold, PRO is the mean over regions of the fraction of the region above
    it, and FPR the fraction of normal pixels above it. The curve is integrated
    from FPR 0 to the limit (interpolated at the limit); no extra rescaling.
    """
    masks = [np.asarray(m, bool) for m in masks]
    maps = [np.asarray(a, np.float64) for a in maps]
    labelled = [ndimage.label(m)[0] for m in masks]
    n_regions = sum(int(lab.max()) for lab in labelled)
    n_normal = sum(int((~m).sum()) for m in masks)
    if n_regions == 0 or n_normal == 0:
        return None
    weights, scores = [], []
    for lab, m, a in zip(labelled, masks, maps):
        w = np.zeros(lab.shape, np.float64)
        if lab.max():
            sizes = np.bincount(lab.ravel())
            w[m] = 1.0 / (sizes[lab[m]] * n_regions)  # each region sums to 1/n_regions
        w[~m] = -1.0 / n_normal                      # negative weight marks normal pixels
        weights.append(w.ravel())
        scores.append(a.ravel())
    w, s = np.concatenate(weights), np.concatenate(scores)
    if s.size > EXACT_LIMIT:
        edges = _bins(s)
        pro = np.cumsum(np.histogram(s, edges, weights=np.where(w > 0, w, 0))[0][::-1])
        fpr = np.cumsum(np.histogram(s, edges, weights=np.where(w < 0, -w, 0))[0][::-1])
    else:
        order = np.argsort(-s, kind="stable")
        ws, ss = w[order], s[order]
        last = np.r_[np.nonzero(np.diff(ss))[0], ss.size - 1]
        pro = np.cumsum(np.where(ws > 0, ws, 0))[last]
        fpr = np.cumsum(np.where(ws < 0, -ws, 0))[last]
    fpr, pro = np.r_[0.0, fpr], np.r_[0.0, pro]
    keep = fpr <= fpr_limit
    f, p = fpr[keep], pro[keep]
    if f[-1] < fpr_limit and keep.sum() < fpr.size:  # interpolate the curve at the limit
        j = keep.sum()
        t = (fpr_limit - fpr[j - 1]) / max(fpr[j] - fpr[j - 1], 1e-12)
        f, p = np.r_[f, fpr_limit], np.r_[p, pro[j - 1] + t * (pro[j] - pro[j - 1])]
    return float(np.trapezoid(p, f) / fpr_limit)


def forgetting(matrix) -> float | None:
    """Mean over earlier tasks of (best value before the last step − final value); standard definition."""
    a = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], np.float64)
    t = a.shape[0]
    if t < 2:
        return None
    drops = [np.nanmax(a[j:t - 1, j]) - a[t - 1, j] for j in range(t - 1)
             if np.isfinite(a[t - 1, j]) and np.isfinite(a[j:t - 1, j]).any()]
    return float(np.mean(drops)) if drops else None


def backward_transfer(matrix) -> float | None:
    """BWT (Lopez-Paz & Ranzato 2017): mean over earlier tasks of (final value − value right after learning)."""
    a = np.asarray([[np.nan if v is None else v for v in row] for row in matrix], np.float64)
    t = a.shape[0]
    vals = [a[t - 1, j] - a[j, j] for j in range(t - 1) if np.isfinite(a[t - 1, j]) and np.isfinite(a[j, j])]
    return float(np.mean(vals)) if vals else None
