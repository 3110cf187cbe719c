import numpy as np
import pytest

from core.preprocess import Preprocessing


def test_grey_becomes_three_normalised_channels():
    pre = Preprocessing(size=64, mean=(0.5,) * 3, std=(0.5,) * 3)
    x = pre(np.ones((100, 80), np.float32))
    assert tuple(x.shape) == (3, 64, 64)
    assert float(x.min()) == pytest.approx(1.0)  # (1 - 0.5) / 0.5


def test_resize_crop_box_matches_published_pipeline():
    pre = Preprocessing(size=224, policy="resize_crop", resize_to=256)
    y0, x0, y1, x1 = pre.crop_box(512, 512)
    assert (y0, x0, y1, x1) == (32, 32, 480, 480)  # 16 px of 256 on each side = 32 px of 512
    assert pre.geometry(np.zeros((512, 700), np.float32)).shape == (224, 224)


def test_mask_geometry_is_nearest_and_binary():
    pre = Preprocessing(size=32)
    m = np.zeros((100, 100), np.uint8)
    m[40:60, 40:60] = 255
    out = pre.mask(m)
    assert out.dtype == bool and out.any() and set(np.unique(out)) <= {False, True}


def test_roundtrip_and_validation():
    pre = Preprocessing(size=96, policy="resize_crop", resize_to=128)
    assert Preprocessing.from_dict(pre.to_dict()) == pre
    with pytest.raises(ValueError):
        Preprocessing(policy="stretch")
    with pytest.raises(ValueError, match="NaN"):
        Preprocessing(size=32)(np.full((40, 40), np.nan, np.float32))
