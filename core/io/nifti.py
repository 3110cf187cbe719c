"""NIfTI volumes through nibabel: reoriented to canonical (RAS+), split into axial slices."""
from __future__ import annotations

import gzip
import io

import numpy as np

from .scan import Scan, ScanError, finish, percentile_window

MAX_VOXELS = 1_000_000_000


def is_nifti(data: bytes, name: str) -> bool:
    lower = name.lower()
    if lower.endswith((".nii", ".nii.gz")):
        return True
    head = data[:348]
    if data[:2] == b"\x1f\x8b":
        try:
            head = gzip.GzipFile(fileobj=io.BytesIO(data[:4096])).read(348)
        except (OSError, EOFError):
            return False
    return len(head) >= 348 and head[344:348] in (b"n+1\x00", b"ni1\x00", b"n+2\x00")


def load_nifti(data: bytes, name: str) -> Scan:
    import nibabel as nib

    raw = data
    if data[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise ScanError(f"{name}: the compressed NIfTI file is truncated or damaged ({exc})") from None
    try:
        klass = nib.Nifti2Image if raw[344:348] == b"n+2\x00" else nib.Nifti1Image
        img = klass.from_bytes(raw)
    except Exception as exc:
        raise ScanError(f"{name}: not a readable NIfTI file ({exc.__class__.__name__})") from None
    shape = img.shape
    if len(shape) < 2 or int(np.prod(shape)) > MAX_VOXELS:
        raise ScanError(f"{name}: NIfTI volume of shape {shape} is not usable (empty or beyond the size limit)")
    try:
        img = nib.as_closest_canonical(img)
        vol = np.asarray(img.dataobj, dtype=np.float32)
    except Exception as exc:
        raise ScanError(f"{name}: the NIfTI image data is damaged or truncated ({exc.__class__.__name__})") from None
    if vol.ndim == 2:
        vol = vol[:, :, None]
    if vol.ndim == 4:  # 4-D: first volume (time point); slices of it
        vol = vol[..., 0]
    if vol.ndim != 3:
        raise ScanError(f"{name}: NIfTI with {vol.ndim} dimensions is not supported")
    # canonical RAS+: axial slices are vol[:, :, k]; rotate so anterior is up, as radiologists view them
    slices = np.ascontiguousarray(np.rot90(vol, k=1, axes=(0, 1)).transpose(2, 0, 1))
    finite = slices[np.isfinite(slices)]
    if finite.size == 0:
        raise ScanError(f"{name}: the NIfTI volume holds no finite values")
    lo, hi = np.percentile(finite, [0.5, 99.5])  # one window for the whole volume: slices stay comparable
    hi = hi if hi > lo else lo + 1.0

    def render(i: int, pipeline: str) -> np.ndarray:
        if pipeline == "auto":
            return percentile_window(slices[i])
        return np.clip((np.nan_to_num(slices[i], nan=lo) - lo) / (hi - lo), 0, 1).astype(np.float32)

    zooms = [float(z) for z in img.header.get_zooms()[:3]]
    meta = dict(modality=None, body_part=None, pixel_spacing=zooms[:2], slice_thickness=zooms[2] if len(zooms) > 2
                else None, orientation="RAS+ (canonical), axial slices", color=False, volume_shape=list(vol.shape))
    n = slices.shape[0]
    return finish(slices, name, "nifti", meta, render, frames=n, frame_index=n // 2)
