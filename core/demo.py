"""A deterministic offline demo benchmark in the BMAD layout, from real images in PyPI packages.

Source images (no download needed):
- ``brain``: axial slices of nilearn's MNI152 T1 template (MRI);
- ``chest``: the CR chest radiograph ``RG1_UNCR.dcm`` from ``pydicom-data``;
- ``ct``: the head CT slice ``693_UNCR.dcm`` from ``pydicom-data`` (window 40 / 400 HU);
- ``extremity``: the CR extremity radiograph ``RG3_UNCR.dcm`` from ``pydicom-data``;
- ``histology``: crops of scikit-image's immunohistochemistry image;
- ``retina``: crops of scikit-image's retina fundus photograph.

Anatomical variation: a random affine (rotation ±8°, scale ±8 %, shift ±4 %),
a smooth elastic displacement (≈2 % of the side), gamma 0.8–1.25 and mild
noise. Lesion model (kept simple on purpose; a sanity benchmark, not a tuning
target): one ellipse inside the tissue, radii 4–10 % of the side, with a
smooth edge and a textured intensity change (brighter or darker for grey
images, a brown-violet stain for colour ones). The mask is the ellipse itself.

Layout written (BraTS style): ``<domain>/train/good``, ``{valid,test}/good``,
``{valid,test}/Ungood/img``, ``{valid,test}/Ungood/label``.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

DOMAINS = ("brain", "chest", "ct", "histology", "retina", "extremity")


def _square(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max(h, w)
    pad = [((s - h) // 2, s - h - (s - h) // 2), ((s - w) // 2, s - w - (s - w) // 2)] + [(0, 0)] * (img.ndim - 2)
    return cv2.resize(np.pad(img, pad), (size, size), interpolation=cv2.INTER_AREA)


def _dicom_pixels(name: str, window: tuple[float, float] | None = None) -> np.ndarray:
    import pydicom
    from pydicom.data import get_testdata_file
    from pydicom.pixels import apply_modality_lut

    ds = pydicom.dcmread(get_testdata_file(name))
    x = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    if window is not None:
        c, w = window
        x = np.clip((x - (c - w / 2)) / w, 0, 1)
    else:
        lo, hi = np.percentile(x, [0.5, 99.5])
        x = np.clip((x - lo) / (hi - lo), 0, 1)
    if str(ds.PhotometricInterpretation) == "MONOCHROME1":
        x = 1 - x
    return x


class _Source:
    """Yields varied base images for a domain (float32 in [0, 1], size×size, grey or RGB)."""

    def __init__(self, domain: str, size: int):
        self.domain, self.size = domain, size
        if domain == "brain":
            from nilearn.datasets import load_mni152_template

            vol = np.asarray(load_mni152_template(resolution=1).get_fdata(), np.float32)
            vol = vol / np.percentile(vol, 99.8)
            z0, z1 = int(vol.shape[2] * 0.40), int(vol.shape[2] * 0.62)
            self.slices = [np.clip(np.rot90(vol[:, :, z]), 0, 1) for z in range(z0, z1)]
        elif domain == "chest":
            self.base = _square(_dicom_pixels("RG1_UNCR.dcm"), 2 * size)
        elif domain == "ct":
            self.base = _square(_dicom_pixels("693_UNCR.dcm", window=(40, 400)), 2 * size)
        elif domain == "extremity":
            self.base = _square(_dicom_pixels("RG3_UNCR.dcm"), 2 * size)
        elif domain in ("histology", "retina"):
            from skimage import data

            img = data.immunohistochemistry() if domain == "histology" else data.retina()
            self.base = img.astype(np.float32) / 255
        else:
            raise ValueError(f"unknown demo domain {domain!r}; choose from {DOMAINS}")

    def sample(self, rng: np.random.Generator) -> np.ndarray:
        s = self.size
        if self.domain == "brain":
            return _square(self.slices[rng.integers(len(self.slices))], s)
        if self.domain in ("chest", "ct", "extremity"):
            return cv2.resize(self.base, (s, s), interpolation=cv2.INTER_AREA)
        h, w = self.base.shape[:2]
        c = int(min(h, w) * (0.45 if self.domain == "histology" else 0.6))
        y, x = rng.integers(0, h - c), rng.integers(0, w - c)
        if self.domain == "retina":  # keep the crop around the optic disc region, where the vessels are
            y, x = int(h * 0.2 + rng.integers(0, h * 0.2)), int(w * 0.2 + rng.integers(0, w * 0.2))
        return cv2.resize(self.base[y:y + c, x:x + c], (s, s), interpolation=cv2.INTER_AREA)


def vary(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Anatomical and acquisition variation: affine, elastic, gamma, noise."""
    s = img.shape[0]
    m = cv2.getRotationMatrix2D((s / 2, s / 2), rng.uniform(-8, 8), rng.uniform(0.92, 1.08))
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * s
    img = cv2.warpAffine(img, m, (s, s), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    coarse = rng.normal(0, 0.02 * s, (2, 5, 5)).astype(np.float32)
    dx, dy = (cv2.resize(c, (s, s), interpolation=cv2.INTER_CUBIC) for c in coarse)
    gx, gy = np.meshgrid(np.arange(s, dtype=np.float32), np.arange(s, dtype=np.float32))
    img = cv2.remap(img, gx + dx, gy + dy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    img = np.clip(img, 0, 1) ** rng.uniform(0.8, 1.25)
    img = img + rng.normal(0, 0.01, img.shape)
    return np.clip(img, 0, 1).astype(np.float32)


def add_lesion(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One elliptical lesion inside the tissue; returns (image, binary mask)."""
    s = img.shape[0]
    grey = img if img.ndim == 2 else img.mean(axis=2)
    tissue = grey > max(0.08, np.percentile(grey, 30))
    ys, xs = np.nonzero(cv2.erode(tissue.astype(np.uint8), np.ones((15, 15), np.uint8)))
    if len(ys) == 0:
        ys, xs = np.array([s // 2]), np.array([s // 2])
    i = rng.integers(len(ys))
    mask = np.zeros((s, s), np.uint8)
    axes = (int(rng.uniform(0.04, 0.10) * s), int(rng.uniform(0.04, 0.10) * s))
    cv2.ellipse(mask, (int(xs[i]), int(ys[i])), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 2.0)
    texture = 1 + 0.25 * cv2.GaussianBlur(rng.normal(0, 1, (s, s)).astype(np.float32), (0, 0), 1.5)
    out = img.copy()
    if img.ndim == 2:
        sign = 1 if rng.random() < 0.6 else -1
        out = out + sign * rng.uniform(0.3, 0.5) * soft * texture
    else:
        stain = np.array([0.45, 0.25, 0.55], np.float32)  # brown-violet, like a dense nuclear cluster
        a = (rng.uniform(0.5, 0.8) * soft * np.clip(texture, 0, 2))[..., None]
        out = out * (1 - a) + stain * a
    return np.clip(out, 0, 1).astype(np.float32), mask.astype(bool)


def _save(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    u8 = np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)
    cv2.imwrite(str(path), u8 if u8.ndim == 2 else cv2.cvtColor(u8, cv2.COLOR_RGB2BGR))


def make_demo(root, domains=("brain", "chest", "histology"), n_train: int = 40, n_valid: int = 6,
              n_test: int = 10, size: int = 224, seed: int = 0) -> dict:
    """Write the benchmark under ``root``; returns a summary (also written to ``root/demo.json``)."""
    root = Path(root)
    summary = dict(seed=seed, size=size, domains={})
    for k, domain in enumerate(domains):
        rng = np.random.default_rng([seed, k])
        src = _Source(domain, size)
        d = root / domain
        counts = {}
        for i in range(n_train):
            _save(d / "train" / "good" / f"{domain}_train_{i:04d}.png", vary(src.sample(rng), rng))
        for split, n in (("valid", n_valid), ("test", n_test)):
            for i in range(n):
                _save(d / split / "good" / f"{domain}_{split}_good_{i:04d}.png", vary(src.sample(rng), rng))
                img, mask = add_lesion(vary(src.sample(rng), rng), rng)
                stem = f"{domain}_{split}_bad_{i:04d}"
                _save(d / split / "Ungood" / "img" / f"{stem}.png", img)
                _save(d / split / "Ungood" / "label" / f"{stem}.png", mask.astype(np.float32))
            counts[split] = dict(good=n, ungood=n)
        counts["train"] = n_train
        summary["domains"][domain] = counts
    root.mkdir(parents=True, exist_ok=True)
    (root / "demo.json").write_text(json.dumps(summary, indent=2))
    return summary
