"""Scan I/O: the one place that parses files.

``load_scan(source)`` turns a path or bytes into a :class:`Scan`; every failure
is a :class:`ScanError` with a message a clinician can act on. ``load_cohort``
reads a folder, a list of files or a zip of normal scans for enrolment and
returns the scans with an intake report; one bad file never aborts a cohort.

The model input is always float32 in [0, 1] (grey H×W or colour H×W×3):
- 8-bit images: pixel / 255;
- 16-bit and float images: a per-image percentile window (0.5 – 99.5 %), as
  their absolute range is arbitrary;
- DICOM: the modality LUT (→ HU for CT), then the file's VOI window, else a
  percentile window. MONOCHROME1 is inverted so that bright means dense.
"""
from __future__ import annotations

import hashlib
import io as _io
import os
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_SUFFIXES = {".dcm", ".dicom", ".ima", ""}
MAX_PIXELS = 100_000_000          # per frame: rejects absurd headers before any decode
MAX_TOTAL_PIXELS = 1_000_000_000  # all frames together
MIN_SIDE = 8

PHI_TAGS = ("PatientName", "PatientID", "PatientBirthDate")


class ScanError(Exception):
    """A scan could not be read; the message says why in plain words."""


@dataclass
class Scan:
    pixels: np.ndarray            # float32, H×W, H×W×3, or F×H×W (frames / slices)
    model_image: np.ndarray       # float32 in [0, 1], H×W or H×W×3: what the backbone sees
    display: np.ndarray           # uint8 display image (same geometry as model_image)
    name: str = ""
    format: str = ""
    metadata: dict = field(default_factory=dict)
    phi: dict = field(default_factory=dict, repr=False)  # never logged, never stored
    frames: int = 1
    frame_index: int = 0

    @property
    def sha256(self) -> str:
        """Hash of the model input pixels: identifies a scan without any PHI."""
        return hashlib.sha256(np.ascontiguousarray(self.model_image).tobytes()).hexdigest()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.model_image.shape[:2])


def percentile_window(x: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    x = np.asarray(x, np.float32)
    a, b = np.percentile(x, [lo, hi])
    if b <= a:
        b = a + 1.0
    return np.clip((x - a) / (b - a), 0.0, 1.0).astype(np.float32)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x01, 0, 1) * 255).astype(np.uint8)


def _name_of(source, filename) -> str:
    if filename:
        return str(filename)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "upload"


def _read_bytes(source) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        if path.is_dir():
            raise ScanError(f"{path.name}: is a folder, not a scan file")
        return path.read_bytes()
    except FileNotFoundError:
        raise ScanError(f"{path.name}: file not found") from None
    except OSError as exc:
        raise ScanError(f"{path.name}: cannot be read ({exc.strerror or exc})") from None


def _is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def load_scan(source, filename: str | None = None) -> Scan:
    """Read a DICOM or image file (path or bytes). Raises only :class:`ScanError`."""
    name = _name_of(source, filename)
    try:
        data = _read_bytes(source)
        if not data:
            raise ScanError(f"{name}: the file is empty")
        if _is_dicom(data) or Path(name).suffix.lower() in (".dcm", ".dicom", ".ima"):
            return _load_dicom(data, name)
        return _load_image(data, name)
    except ScanError:
        raise
    except MemoryError:
        raise ScanError(f"{name}: too large to load in memory") from None
    except Exception as exc:  # a decoder's internal error must not escape as a traceback
        raise ScanError(f"{name}: could not be decoded ({exc.__class__.__name__}: {exc})") from None


def _finish(pixels: np.ndarray, model: np.ndarray, name: str, fmt: str, metadata: dict, phi: dict | None = None,
            frames: int = 1, frame_index: int = 0) -> Scan:
    if model.shape[0] < MIN_SIDE or model.shape[1] < MIN_SIDE:
        raise ScanError(f"{name}: image is only {model.shape[1]}×{model.shape[0]} px, too small to analyse")
    if not np.isfinite(model).all():
        raise ScanError(f"{name}: pixel data contains invalid (NaN or infinite) values")
    metadata = dict(metadata, rows=int(model.shape[0]), columns=int(model.shape[1]), frames=frames)
    return Scan(pixels=pixels, model_image=model.astype(np.float32), display=to_uint8(model), name=name,
                format=fmt, metadata=metadata, phi=phi or {}, frames=frames, frame_index=frame_index)


def _load_image(data: bytes, name: str) -> Scan:
    try:
        img = Image.open(_io.BytesIO(data))
    except UnidentifiedImageError:
        raise ScanError(f"{name}: not a DICOM or image file") from None
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise ScanError(f"{name}: image of {w}×{h} px is larger than the {MAX_PIXELS:,} px limit")
    n_frames = getattr(img, "n_frames", 1)
    img = ImageOps.exif_transpose(img)  # photos from phones and some scanners are stored rotated
    mode = img.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in img.info):
        # composite on black: transparent background is "no tissue", not white paper
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (0, 0, 0, 255))
        img = Image.alpha_composite(bg, img).convert("RGB")
    elif mode in ("P", "CMYK", "YCbCr", "HSV", "LAB"):
        img = img.convert("RGB")
    elif mode == "1":
        img = img.convert("L")
    arr = np.asarray(img)
    if arr.ndim == 3 and arr.shape[2] > 3:
        arr = arr[..., :3]
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 1], arr[..., 2]):
        arr = arr[..., 0]  # grey stored as RGB: keep one channel so grey and RGB copies hash the same
    pixels = arr.astype(np.float32)
    if arr.dtype == np.uint8:
        model = pixels / 255.0
        depth = 8
    else:
        model = percentile_window(pixels)
        depth = 16 if arr.dtype in (np.uint16, np.int16, np.int32) else 32
    meta = dict(modality=None, body_part=None, bit_depth=depth, color=arr.ndim == 3, source_format=img.format
                or Path(name).suffix.lstrip(".").upper(), n_frames_in_file=n_frames)
    return _finish(pixels, model, name, "image", meta)


def _load_dicom(data: bytes, name: str) -> Scan:
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    try:
        ds = pydicom.dcmread(_io.BytesIO(data), force=not _is_dicom(data))
    except InvalidDicomError:
        raise ScanError(f"{name}: not a DICOM or image file") from None
    except Exception as exc:
        raise ScanError(f"{name}: the DICOM header is damaged ({exc.__class__.__name__})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds:
        raise ScanError(f"{name}: DICOM file has no image (it may be a report, structure set or other object)")
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if rows * cols > MAX_PIXELS or rows * cols * frames > MAX_TOTAL_PIXELS:
        raise ScanError(f"{name}: DICOM header claims {cols}×{rows}×{frames} pixels, beyond the size limit")
    if rows < 1 or cols < 1:
        raise ScanError(f"{name}: DICOM header has no valid image size")
    try:
        arr = ds.pixel_array
    except Exception as exc:
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        ts_name = getattr(ts, "name", str(ts)) if ts else "unknown transfer syntax"
        msg = str(exc).lower()
        if "no pixel data handler" in msg or "unable to decompress" in msg or "plugin" in msg or "missing" in msg:
            raise ScanError(f"{name}: compressed with {ts_name} and no decoder is installed") from None
        raise ScanError(f"{name}: the DICOM pixel data could not be decoded ({ts_name})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    frame_index = 0
    color = arr.ndim == 4 or (arr.ndim == 3 and frames == 1 and arr.shape[-1] == 3)
    if frames > 1:
        frame_index = frames // 2
        frame = arr[frame_index]
    else:
        frame = arr
    if color:
        model = frame.astype(np.float32) / (255.0 if frame.max() <= 255 else float(frame.max()))
        pixels = arr.astype(np.float32)
    else:
        hu = apply_modality_lut(frame, ds).astype(np.float32)
        pixels = hu
        windowed = None
        if "WindowCenter" in ds and "WindowWidth" in ds or "VOILUTSequence" in ds:
            try:
                windowed = apply_voi_lut(hu, ds, index=0, prefer_lut=True).astype(np.float32)
            except Exception:
                windowed = None
        model = percentile_window(windowed if windowed is not None else hu, 0.0, 100.0) \
            if windowed is not None else percentile_window(hu)
        if photometric == "MONOCHROME1":
            model = 1.0 - model
    meta = dict(modality=str(ds.get("Modality", "")) or None, body_part=str(ds.get("BodyPartExamined", "")) or None,
                photometric=photometric, pixel_spacing=[float(v) for v in ds.get("PixelSpacing", [])] or None,
                study_uid=str(ds.get("StudyInstanceUID", "")) or None,
                series_uid=str(ds.get("SeriesInstanceUID", "")) or None,
                sop_instance_uid=str(ds.get("SOPInstanceUID", "")) or None, color=bool(color))
    phi = {t: str(ds.get(t, "")) for t in PHI_TAGS}
    return _finish(pixels, model, name, "dicom", meta, phi, frames=frames, frame_index=frame_index)


# -- cohort intake --------------------------------------------------------------------------------
@dataclass
class IntakeLimits:
    max_files: int = 20_000
    max_file_bytes: int = 512 << 20
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0  # uncompressed / compressed, per zip member


@dataclass
class IntakeReport:
    accepted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)   # (name, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (name, duplicate of)
    sizes: dict = field(default_factory=dict)  # "W×H" → count

    def to_dict(self) -> dict:
        return dict(accepted=len(self.accepted), skipped=[dict(file=n, reason=r) for n, r in self.skipped],
                    duplicates=[dict(file=n, duplicate_of=d) for n, d in self.duplicates], sizes=self.sizes)


def _iter_folder(root: Path):
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            yield p.relative_to(root).as_posix(), ScanError(f"{p.name}: symbolic links are not followed")
        elif p.is_file() and not p.name.startswith("."):
            yield p.relative_to(root).as_posix(), p


def _read_zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits, budget: list[int]) -> bytes:
    """Read one member, enforcing size and ratio caps on the bytes actually produced."""
    out = bytearray()
    with zf.open(info) as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            out += chunk
            if len(out) > limits.max_file_bytes:
                raise ScanError(f"{info.filename}: larger than the {limits.max_file_bytes >> 20} MB per-file limit")
            if len(out) > limits.max_ratio * max(info.compress_size, 1) and len(out) > (1 << 20):
                raise ScanError(f"{info.filename}: compression ratio is suspicious (possible zip bomb)")
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise ScanError("zip: total uncompressed size exceeds the limit (possible zip bomb)")
    return bytes(out)


def _iter_zip(path_or_bytes, limits: IntakeLimits):
    try:
        zf = zipfile.ZipFile(path_or_bytes if not isinstance(path_or_bytes, bytes) else _io.BytesIO(path_or_bytes))
    except (zipfile.BadZipFile, OSError) as exc:
        raise ScanError(f"not a readable zip archive ({exc})") from None
    budget = [limits.max_total_bytes]
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) > limits.max_files:
            raise ScanError(f"zip holds {len(members)} files, more than the {limits.max_files} limit")
        for info in members:
            n = info.filename
            mode = info.external_attr >> 16
            if n.startswith(("/", "\\")) or ".." in Path(n.replace("\\", "/")).parts or ":" in n.split("/")[0]:
                yield n, ScanError(f"{n}: unsafe path in zip (absolute or '..'), skipped")
            elif stat.S_ISLNK(mode):
                yield n, ScanError(f"{n}: symbolic link in zip, skipped")
            elif Path(n).name.startswith(".") or n.startswith("__MACOSX/"):
                continue
            else:
                try:
                    yield n, _read_zip_member(zf, info, limits, budget)
                except ScanError as exc:
                    if "total uncompressed" in str(exc):
                        raise
                    yield n, exc


def load_cohort(source, limits: IntakeLimits | None = None, progress=None) -> tuple[list[Scan], IntakeReport]:
    """Folder, zip (path or bytes), or list of files → accepted scans and an intake report."""
    limits = limits or IntakeLimits()
    if isinstance(source, (list, tuple)):
        entries = [(Path(p).name, Path(p)) for p in source]
    elif isinstance(source, (bytes, bytearray)):
        entries = _iter_zip(bytes(source), limits)
    else:
        path = Path(source)
        if path.is_dir():
            entries = _iter_folder(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            entries = _iter_zip(path, limits)
        elif path.is_file():
            entries = [(path.name, path)]
        else:
            raise ScanError(f"{path.name}: no such file or folder")
    scans, report, seen = [], IntakeReport(), {}
    for count, (name, item) in enumerate(entries, 1):
        if count > limits.max_files:
            raise ScanError(f"more than {limits.max_files} files; split the cohort")
        if isinstance(item, ScanError):
            report.skipped.append((name, str(item)))
            continue
        try:
            if isinstance(item, Path) and item.stat().st_size > limits.max_file_bytes:
                raise ScanError(f"{name}: larger than the {limits.max_file_bytes >> 20} MB per-file limit")
            scan = load_scan(item, filename=name)
        except ScanError as exc:
            report.skipped.append((name, str(exc)))
            continue
        digest = scan.sha256
        if digest in seen:
            report.duplicates.append((name, seen[digest]))
            continue
        seen[digest] = name
        scans.append(scan)
        report.accepted.append(name)
        key = f"{scan.shape[1]}×{scan.shape[0]}"
        report.sizes[key] = report.sizes.get(key, 0) + 1
        if progress is not None:
            progress(count, None)
    return scans, report
