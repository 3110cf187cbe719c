"""One explicit preprocessing pipeline, recorded with every model version.

The input is a model image from ``core.io``: float32 in [0, 1], shaped H×W
(grey) or H×W×3 (colour). The output is a normalised 3×S×S tensor. Because
the same object is stored in the manifest and rebuilt at load time, enrolment
and scoring cannot drift apart.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESIZE_POLICIES = ("resize", "resize_crop")


@dataclass(frozen=True)
class Preprocessing:
    """Geometry and normalisation for the backbone input.

    ``resize``: the whole image is resized to ``size``×``size`` (default; a
    lesion at the border of a scan is never cropped away).
    ``resize_crop``: resize the short side to ``resize_to``, centre-crop
    ``size`` (the published PatchCore / PatchCoreCL pipeline, 256 → 224).
    """

    size: int = 224
    policy: str = "resize"
    resize_to: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self):
        if self.policy not in RESIZE_POLICIES:
            raise ValueError(f"policy must be one of {RESIZE_POLICIES}, got {self.policy!r}")
        if self.size < 32:
            raise ValueError(f"size must be at least 32 px, got {self.size}")
        if self.policy == "resize_crop" and self.resize_to < self.size:
            raise ValueError("resize_to must be >= size for resize_crop")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Preprocessing":
        return cls(size=int(d["size"]), policy=d["policy"], resize_to=int(d["resize_to"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]))

    # -- geometry -----------------------------------------------------------------
    def crop_box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """The region of the original image (y0, x0, y1, x1) that the model sees."""
        if self.policy == "resize":
            return 0, 0, height, width
        scale = self.resize_to / min(height, width)
        rh, rw = round(height * scale), round(width * scale)
        top, left = (rh - self.size) // 2, (rw - self.size) // 2
        return (int(round(top / scale)), int(round(left / scale)),
                int(round((top + self.size) / scale)), int(round((left + self.size) / scale)))

    def geometry(self, image: np.ndarray, interpolation: int = cv2.INTER_AREA) -> np.ndarray:
        """Resize (and crop) an H×W or H×W×C array to size×size."""
        h, w = image.shape[:2]
        if self.policy == "resize":
            return cv2.resize(image, (self.size, self.size), interpolation=interpolation)
        scale = self.resize_to / min(h, w)
        rh, rw = max(self.size, round(h * scale)), max(self.size, round(w * scale))
        resized = cv2.resize(image, (rw, rh), interpolation=interpolation)
        top, left = (rh - self.size) // 2, (rw - self.size) // 2
        return resized[top:top + self.size, left:left + self.size]

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A ground-truth mask through the same geometry: nearest neighbour, binarised (> 0)."""
        m = (np.asarray(mask) > 0).astype(np.uint8)
        return self.geometry(m, interpolation=cv2.INTER_NEAREST) > 0

    # -- pixels -------------------------------------------------------------------
    def __call__(self, image: np.ndarray) -> torch.Tensor:
        img = np.asarray(image, dtype=np.float32)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if img.ndim not in (2, 3) or (img.ndim == 3 and img.shape[2] != 3):
            raise ValueError(f"expected an H×W or H×W×3 image, got shape {img.shape}")
        if not np.isfinite(img).all():
            raise ValueError("image contains NaN or infinite values")
        img = np.clip(self.geometry(img), 0.0, 1.0)
        if img.ndim == 2:  # grey → 3 channels, as ImageNet backbones expect
            img = np.repeat(img[..., None], 3, axis=2)
        mean = np.asarray(self.mean, np.float32)
        std = np.asarray(self.std, np.float32)
        img = (img - mean) / std
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def batch(self, images) -> torch.Tensor:
        return torch.stack([self(im) for im in images])
