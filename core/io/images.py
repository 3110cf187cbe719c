"""PNG / JPEG / TIFF / BMP through Pillow: 8- and 16-bit, grey / RGB / RGBA, EXIF orientation."""
from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .scan import Scan, ScanError, finish, percentile_window

MAX_PIXELS = 100_000_000  # per frame; checked from the header, before any decode

# Pillow's own bomb guard turns a huge header into "cannot identify image"; we check the header
# size ourselves right after the (lazy) open, before any decode, and say why
Image.MAX_IMAGE_PIXELS = None


def load_image(data: bytes, name: str) -> Scan:
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ScanError(f"{name}: not a DICOM or image file") from None
    except Image.DecompressionBombError:
        raise ScanError(f"{name}: image dimensions exceed the {MAX_PIXELS:,} px limit") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ScanError(f"{name}: image of {w}×{h} px is larger than the {MAX_PIXELS:,} px limit")
    n_frames = getattr(img, "n_frames", 1)
    fmt = img.format
    try:
        img.load()
    except (OSError, SyntaxError, ValueError) as exc:
        raise ScanError(f"{name}: the {fmt or 'image'} file is truncated or damaged ({exc})") from None
    img = ImageOps.exif_transpose(img)  # phone photos and some scanners store the image rotated
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # transparent background means "no tissue": composite on black, not on white paper
        img = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", img.size, (0, 0, 0, 255)), img).convert("RGB")
    elif mode in ("P", "CMYK", "YCbCr", "HSV", "LAB"):
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[..., :3]
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]  # grey saved as RGB: one channel, so grey and RGB copies hash the same
    pixels = arr.astype(np.float32)
    eight_bit = arr.dtype == np.uint8
    if arr.ndim == 3 and not eight_bit:
        pixels = pixels / max(float(pixels.max()), 1.0)

    def render(_: int, pipeline: str) -> np.ndarray:
        if pipeline == "auto" and arr.ndim == 2:
            return percentile_window(pixels)
        if eight_bit:
            return pixels / 255.0
        return pixels if arr.ndim == 3 else percentile_window(pixels)

    depth = 8 if eight_bit else (16 if arr.dtype in (np.uint16, np.int16, np.int32) else 32)
    meta = dict(modality=None, body_part=None, bit_depth=depth, color=arr.ndim == 3,
                source_format=fmt, n_frames_in_file=n_frames)
    return finish(pixels, name, "image", meta, render)
