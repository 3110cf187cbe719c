from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.bmad import detect_layout, read_benchmark, read_domain


def _img(path: Path, value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16), value, np.uint8)).save(path)


LAYOUTS = {
    "brain": ["train/good/a.png", "train/good/b.png", "valid/good/v.png", "valid/Ungood/img/x.png",
              "valid/Ungood/label/x.png", "test/good/t.png", "test/Ungood/img/u.png", "test/Ungood/label/u.png"],
    "brain_anomaly_mask": ["train/good/a.png", "train/good/b.png", "test/good/t.png", "test/Ungood/img/u.png",
                           "test/Ungood/anomaly_mask/u.png"],
    "liver": ["train/good/a.png", "train/good/b.png", "valid/img/good/v.png", "valid/img/Ungood/x.png",
              "valid/label/Ungood/x.png", "test/img/good/t.png", "test/img/Ungood/u.png", "test/label/Ungood/u.png"],
    "resc": ["Train/train/good/a.png", "Train/train/good/b.png", "Val/val/good/v.png", "Val/val/Ungood/x.png",
             "Test/test/good/t.png", "Test/test/Ungood/u.png", "Test/test_label/Ungood/u.png"],
    "image_labels": ["train/good/a.png", "train/good/b.png", "val/good/v.png", "val/Ungood/x.png",
                     "test/good/t.png", "test/Ungood/u.png"],
    "mvtec": ["train/good/a.png", "train/good/b.png", "test/good/t.png", "test/crack/u.png",
              "ground_truth/crack/u_mask.png"],
}
EXPECTED = {"brain": "brain", "brain_anomaly_mask": "brain", "liver": "liver", "resc": "resc",
            "image_labels": "image_labels", "mvtec": "mvtec"}


@pytest.mark.parametrize("style", sorted(LAYOUTS))
def test_every_layout_is_detected_and_masks_matched_by_stem(tmp_path, style):
    root = tmp_path / style
    for rel in LAYOUTS[style]:
        _img(root / rel, 255 if "label" in rel or "mask" in rel or "ground_truth" in rel else 100)
    assert detect_layout(root) == EXPECTED[style]
    d = read_domain(root)
    assert len(d.train) == 2
    bad = [s for s in d.test if s.label == 1]
    assert len(bad) == 1 and len([s for s in d.test if s.label == 0]) == 1
    if style == "image_labels":
        assert bad[0].mask is None and not d.has_masks  # never invent masks
    else:
        assert bad[0].mask is not None and bad[0].mask.stem.startswith("u")
    if style not in ("mvtec", "brain_anomaly_mask"):
        assert [s.label for s in d.valid] == [0, 1]


def test_benchmark_checks(tmp_path):
    for rel in LAYOUTS["brain"]:
        _img(tmp_path / "one" / rel)
    (tmp_path / "junk").mkdir()
    with pytest.raises(ValueError, match="no known benchmark layout"):
        read_benchmark(tmp_path)
    assert [d.name for d in read_benchmark(tmp_path, ["one"])] == ["one"]
    with pytest.raises(ValueError, match="no domain folder"):
        read_benchmark(tmp_path, ["two"])
