import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from core import metrics
from core.metrics import aupro, auroc, backward_transfer, f1_max, forgetting


def test_auroc_known_cases_and_ties():
    assert auroc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert auroc([0, 0, 1, 1], [0.4, 0.3, 0.2, 0.1]) == 0.0
    assert auroc([0, 1], [0.5, 0.5]) == 0.5          # a tie counts half
    assert auroc([0, 0, 1], [1, 2, 1.5]) == 0.5      # hand count: (0 + 1) / 2
    assert auroc([1, 1], [0.1, 0.2]) is None          # one class only


def test_auroc_agrees_with_sklearn_exact_and_binned(rng, monkeypatch):
    y = rng.random(5000) < 0.3
    s = rng.normal(size=5000) + y * 0.8
    s[:100] = np.round(s[:100], 1)  # some ties
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    monkeypatch.setattr(metrics, "EXACT_LIMIT", 10)
    assert auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-3)


def test_f1_max_hand_computed():
    # thresholds: ≥0.9 → P=1, R=1/2, F1=2/3; ≥0.8 → TP=1, FP=1: F1=1/2; ≥0.7 → TP=2, FP=1: P=2/3, R=1 → F1=0.8
    assert f1_max([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx(0.8)
    assert f1_max([0, 0], [0.1, 0.2]) is None


def test_aupro_perfect_and_hand_computed():
    gt = np.zeros((10, 10), bool)
    gt[2:4, 2:4] = True
    assert aupro([gt], [gt.astype(float)]) == pytest.approx(1.0)
    # two regions; the map finds region A (4 px) fully at score 1 and region B (4 px) not at all; B and 2
    # normal pixels tie at 0.5. PRO jumps to 0.5 at FPR 0, then to 1.0 at FPR 2/92; the rest is flat.
    gt = np.zeros((10, 10), bool)
    gt[0:2, 0:2] = True
    gt[5:7, 5:7] = True
    amap = np.zeros((10, 10))
    amap[0:2, 0:2] = 1.0
    amap[5:7, 5:7] = 0.5
    amap[9, 8:10] = 0.5
    f = 2 / 92
    expected = ((0.5 + 1.0) / 2 * f + 1.0 * (0.3 - f)) / 0.3  # trapezoid: (0, .5) → (f, 1) → (.3, 1)
    assert aupro([gt], [amap]) == pytest.approx(expected, rel=1e-6)
    assert aupro([np.zeros((4, 4), bool)], [np.zeros((4, 4))]) is None


def test_aupro_does_not_rescale_curves(rng):
    gt = np.zeros((32, 32), bool)
    gt[8:16, 8:16] = True
    noise = rng.random((32, 32))
    low = aupro([gt], [noise])
    assert 0 < low < 0.5  # a random map stays poor: no min-max stretching of the FPR axis


def test_forgetting_standard_definition():
    m = [[0.9, None, None], [0.8, 0.7, None], [0.85, 0.6, 0.95]]
    # task 0: best before last 0.9, final 0.85 → 0.05; task 1: best 0.7, final 0.6 → 0.1; mean 0.075 (not /9)
    assert forgetting(m) == pytest.approx(0.075)
    assert backward_transfer(m) == pytest.approx(((0.85 - 0.9) + (0.6 - 0.7)) / 2)
    assert forgetting([[0.9]]) is None
