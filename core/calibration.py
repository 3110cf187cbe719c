"""Per-domain calibration on held-out normal scans only.

A deployed system never sees a test set, so nothing here looks at anomalies:
- the decision threshold is the (1 − fpr) quantile of held-out normal image
  scores, i.e. the expected false-positive rate on normals is ``fpr``;
- the calibrated score is ``raw / threshold`` (1.0 = at the threshold), and the
  normal percentile says where a scan falls among the held-out normals;
- the unknown-domain threshold is the (1 − ood_fpr) quantile of held-out
  normals' mean nearest-neighbour distance, widened by ``ood_margin``: a scan of
  a modality the bank never saw sits far outside it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def upper_quantile(values: np.ndarray, q: float) -> float:
    # 'higher' never interpolates below an observed normal, so the FPR on the calibration set is ≤ 1 − q
    return float(np.quantile(np.asarray(values, np.float64), q, method="higher"))


@dataclass
class Calibration:
    normal_scores: np.ndarray      # image scores of held-out normals
    normal_route_dist: np.ndarray  # their mean nearest-neighbour patch distances
    normal_map_max: np.ndarray     # their anomaly-map maxima (sets the heatmap scale)
    fpr: float
    ood_fpr: float
    ood_margin: float

    @classmethod
    def fit(cls, normal_scores, normal_route_dist, normal_map_max, fpr: float = 0.05, ood_fpr: float = 0.01,
            ood_margin: float = 0.5) -> "Calibration":
        s = np.sort(np.asarray(normal_scores, np.float64))
        r = np.sort(np.asarray(normal_route_dist, np.float64))
        m = np.sort(np.asarray(normal_map_max, np.float64))
        if s.size == 0:
            raise ValueError("calibration needs at least one held-out normal scan")
        if not 0 < fpr < 1 or not 0 < ood_fpr < 1:
            raise ValueError("fpr and ood_fpr must be in (0, 1)")
        return cls(s, r, m, fpr, ood_fpr, ood_margin)

    @property
    def threshold(self) -> float:
        return upper_quantile(self.normal_scores, 1 - self.fpr)

    @property
    def map_threshold(self) -> float:
        return upper_quantile(self.normal_map_max, 1 - self.fpr)

    @property
    def ood_threshold(self) -> float:
        return upper_quantile(self.normal_route_dist, 1 - self.ood_fpr) * (1 + self.ood_margin)

    @property
    def n(self) -> int:
        return int(self.normal_scores.size)

    def calibrated(self, score: float) -> float:
        return float(score / self.threshold) if self.threshold > 0 else float("inf")

    def normal_percentile(self, score: float) -> float:
        """Share of held-out normals (in %) scoring at or below ``score``."""
        return float(100.0 * np.searchsorted(self.normal_scores, score, side="right") / self.n)

    def is_unknown_domain(self, route_dist: float) -> bool:
        return bool(route_dist > self.ood_threshold)

    def summary(self) -> dict:
        return dict(threshold=self.threshold, map_threshold=self.map_threshold, fpr=self.fpr, n_calibration=self.n,
                    ood_threshold=self.ood_threshold, ood_fpr=self.ood_fpr, ood_margin=self.ood_margin,
                    normal_score_median=float(np.median(self.normal_scores)),
                    few_calibration_scans=bool(self.n < 1 / self.fpr))
