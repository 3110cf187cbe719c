import numpy as np
import pytest

from core.bank import MemoryBank
from core.calibration import Calibration
from core.preprocess import Preprocessing
from core.scoring import anomaly_map, image_score, map_to_original, reweighted_max


def test_flat_bank_is_exact(rng):
    bank_x = rng.normal(size=(500, 16)).astype(np.float32)
    q = rng.normal(size=(40, 16)).astype(np.float32)
    dist, idx = MemoryBank(bank_x).search(q, 1)
    brute = np.linalg.norm(q[:, None] - bank_x[None], axis=2)
    np.testing.assert_array_equal(idx[:, 0], brute.argmin(1))
    np.testing.assert_allclose(dist[:, 0], brute.min(1), rtol=1e-4)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "ivfpq"])
def test_approximate_banks_have_useful_recall(rng, kind):
    x = rng.normal(size=(4000, 32)).astype(np.float32)
    q = x[:200] + rng.normal(0, 0.05, (200, 32)).astype(np.float32)
    _, idx = MemoryBank(x, kind).search(q, 1)
    recall = (idx[:, 0] == np.arange(200)).mean()
    assert recall > (0.9 if kind != "ivfpq" else 0.5)


def test_reweighted_score_matches_hand_computation():
    # 1-D bank: m* = 0.0 is nearest to the test patch at 3.0; its neighbours in the bank are 0.0, 0.5, 1.0
    bank = MemoryBank(np.array([[0.0], [0.5], [1.0], [10.0]], np.float32))
    patches = np.array([[3.0], [0.4]], np.float32)
    nn_dist = np.array([2.0, 0.1])  # test patch 0 is nearest to bank 1.0 at distance 2.0
    nn_idx = np.array([2, 1])
    s = reweighted_max(patches, nn_dist, nn_idx, bank, neighbours=3)
    # neighbours of m* = 1.0: itself, 0.5, 0.0 → others at |3 - 0.5| = 2.5 and |3 - 0| = 3.0; D = 1
    w = 1 - np.exp(2.0) / (np.exp(2.5) + np.exp(3.0))
    assert s == pytest.approx(w * 2.0)
    assert image_score("max", patches, nn_dist, nn_idx, bank, np.zeros((4, 4))) == 2.0


def test_anomaly_map_and_back_to_original():
    patch = np.zeros(28 * 28, np.float32)
    patch[14 * 28 + 14] = 1.0
    m = anomaly_map(patch, (28, 28), 224, sigma=4)
    assert m.shape == (224, 224)
    y, x = np.unravel_index(m.argmax(), m.shape)
    assert abs(y - 116) <= 8 and abs(x - 116) <= 8
    pre = Preprocessing(size=224, policy="resize_crop", resize_to=256)
    full = map_to_original(m, pre, 512, 600)
    assert full.shape == (512, 600)
    assert full[0, 0] == pytest.approx(m.min())  # outside the crop: never suspicious
    assert map_to_original(m, Preprocessing(size=224), 300, 200).shape == (300, 200)


def test_calibration_uses_normals_only():
    normals = np.arange(1, 101, dtype=float)
    cal = Calibration.fit(normals, normals / 10, normals * 2, fpr=0.05, ood_fpr=0.01, ood_margin=0.5)
    assert cal.threshold == 96.0  # 95 % quantile, 'higher': FPR on calibration normals is ≤ 5 %
    assert (normals > cal.threshold).mean() <= 0.05
    assert cal.calibrated(96.0) == pytest.approx(1.0)
    assert cal.normal_percentile(50.0) == 50.0
    assert cal.ood_threshold == pytest.approx(10.0 * 1.5)
    assert cal.is_unknown_domain(16.0) and not cal.is_unknown_domain(9.0)
    assert cal.summary()["few_calibration_scans"] is False
    with pytest.raises(ValueError):
        Calibration.fit([], [], [])
