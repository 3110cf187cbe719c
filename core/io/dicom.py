"""DICOM through pydicom 3 (+ pylibjpeg / python-gdcm for compressed transfer syntaxes).

Grey images: modality LUT (rescale slope / intercept or a Modality LUT sequence → HU for CT),
then the VOI stage (a VOI LUT sequence, or window centre / width with LINEAR, LINEAR_EXACT or
SIGMOID), MONOCHROME1 inverted so that bright always means dense. Enhanced multi-frame files
take rescale and window per frame from their functional groups. Colour: PALETTE COLOR through
its LUT, YBR converted to RGB by pydicom.
"""
from __future__ import annotations

import io
import warnings

import numpy as np

from .scan import Scan, ScanError, apply_window, finish, parse_pipeline, percentile_window

MAX_PIXELS = 100_000_000          # one frame
GDCM_TIMEOUT_S = 120


def _keep_gdcm_out_of_process() -> bool:
    """Unregister GDCM from pydicom's in-process decoders (it can abort the process on damaged data);
    it is used through ``gdcm_worker`` in a child process instead. True if GDCM is installed."""
    try:
        import gdcm  # noqa: F401
    except ImportError:
        return False
    from pydicom.pixels.decoders import base

    for decoder in base._PIXEL_DATA_DECODERS.values():
        for d in (decoder if isinstance(decoder, (list, tuple)) else [decoder]):
            try:
                d.remove_plugin("gdcm")
            except (ValueError, KeyError, AttributeError):
                pass
    return True


HAVE_GDCM = _keep_gdcm_out_of_process()


def _decode_with_gdcm(data: bytes, name: str, ts_name: str) -> np.ndarray:
    import subprocess
    import sys

    try:
        out = subprocess.run([sys.executable, "-m", "core.io.gdcm_worker"], input=data, capture_output=True,
                             timeout=GDCM_TIMEOUT_S, cwd=str(__import__("pathlib").Path(__file__).parents[2]))
    except subprocess.TimeoutExpired:
        raise ScanError(f"{name}: decoding {ts_name} took too long (damaged data?)") from None
    if out.returncode != 0 or not out.stdout:
        raise ScanError(f"{name}: compressed with {ts_name}; the installed decoders could not decode it "
                        f"(damaged data or an unsupported variant)")
    return np.load(io.BytesIO(out.stdout), allow_pickle=False)
MAX_TOTAL_PIXELS = 1_000_000_000  # all frames
PHI_TAGS = ("PatientName", "PatientID", "PatientBirthDate")


def is_dicom(data: bytes) -> bool:
    return len(data) > 132 and data[128:132] == b"DICM"


def _looks_like_raw_dataset(data: bytes) -> bool:
    """A file without preamble / file meta is read only if it starts like a group 0008 element."""
    return len(data) > 8 and data[:2] in (b"\x08\x00", b"\x02\x00") and data[2:4] in (
        b"\x05\x00", b"\x08\x00", b"\x12\x00", b"\x16\x00", b"\x18\x00", b"\x00\x00", b"\x01\x00", b"\x10\x00")


def _first(value):
    """Multi-valued window centre / width: the first value is the file's default."""
    if value is None:
        return None
    try:
        return float(value[0]) if hasattr(value, "__len__") and not isinstance(value, str) else float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _frame_group(ds, i: int, seq: str):
    """An item of a functional-group sequence for frame i: per-frame first, then shared."""
    for groups in ("PerFrameFunctionalGroupsSequence", "SharedFunctionalGroupsSequence"):
        g = ds.get(groups)
        if not g:
            continue
        item = g[i] if groups.startswith("PerFrame") and i < len(g) else g[0]
        if seq in item and len(item[seq].value):
            return item[seq][0]
    return None


def _windows(ds) -> list[dict]:
    centres, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centres is None or widths is None:
        return []
    centres = list(centres) if hasattr(centres, "__iter__") and not isinstance(centres, str) else [centres]
    widths = list(widths) if hasattr(widths, "__iter__") and not isinstance(widths, str) else [widths]
    names = ds.get("WindowCenterWidthExplanation") or []
    names = [names] if isinstance(names, str) else list(names)
    out = []
    for k, (c, w) in enumerate(zip(centres, widths)):
        try:
            out.append(dict(centre=float(c), width=float(w), name=str(names[k]) if k < len(names) else None))
        except (TypeError, ValueError):
            continue
    return out


def load_dicom(data: bytes, name: str) -> Scan:
    import pydicom
    from pydicom.errors import InvalidDicomError

    has_meta = is_dicom(data)
    if not has_meta and not _looks_like_raw_dataset(data):
        raise ScanError(f"{name}: not a DICOM or image file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(io.BytesIO(data), force=not has_meta)
    except InvalidDicomError:
        raise ScanError(f"{name}: not a DICOM or image file") from None
    except Exception as exc:
        raise ScanError(f"{name}: the DICOM header is damaged ({exc.__class__.__name__})") from None
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ScanError(f"{name}: this DICOM file holds no image (it may be a report, structure set or "
                        f"other non-image object)")
    try:
        rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
        frames = int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise ScanError(f"{name}: the DICOM header has an invalid image size") from None
    if rows < 1 or cols < 1 or frames < 1:
        raise ScanError(f"{name}: the DICOM header has no valid image size")
    if rows * cols > MAX_PIXELS or rows * cols * frames > MAX_TOTAL_PIXELS:
        raise ScanError(f"{name}: the DICOM header claims {cols}×{rows}×{frames} pixels, beyond the size limit")
    if not has_meta and "TransferSyntaxUID" not in getattr(ds, "file_meta", {}):
        ds.file_meta = getattr(ds, "file_meta", pydicom.dataset.FileMetaDataset())
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian if not ds.is_little_endian or \
            ds.is_implicit_VR else pydicom.uid.ExplicitVRLittleEndian
    ts = getattr(ds.file_meta, "TransferSyntaxUID", None)
    ts_name = getattr(ts, "name", None) or "an unknown transfer syntax"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
    except (NotImplementedError, RuntimeError) as exc:
        msg = str(exc).lower()
        if HAVE_GDCM and ts is not None and ts.is_compressed and ("plugin" in msg or "unable to decode" in msg):
            arr = _decode_with_gdcm(data, name, ts_name)
        elif "exceptions were raised by all available plugins" in msg:
            raise ScanError(f"{name}: compressed with {ts_name}; the installed decoders could not decode it "
                            f"(damaged data or an unsupported variant)") from None
        elif "no pixel data handler" in msg or "plugin" in msg or "not supported" in msg or "no available" in msg:
            raise ScanError(f"{name}: compressed with {ts_name} and no decoder is installed") from None
        else:
            raise ScanError(f"{name}: the pixel data could not be decoded ({ts_name})") from None
    except Exception as exc:
        raise ScanError(f"{name}: the pixel data is damaged or truncated ({ts_name}: "
                        f"{exc.__class__.__name__})") from None
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    arr = np.asarray(arr)
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        arr = np.asarray(apply_color_lut(arr, ds))
    samples = int(ds.get("SamplesPerPixel") or 1)
    colour = samples == 3 or photometric == "PALETTE COLOR"
    if frames == 1:
        arr = arr[None]
    if arr.shape[0] != frames:
        raise ScanError(f"{name}: holds {arr.shape[0]} frames where the header says {frames}")
    return _colour_scan(ds, arr, name, frames) if colour else _grey_scan(ds, arr, name, frames, photometric)


def _metadata(ds, photometric: str, colour: bool) -> dict:
    def text(tag):
        v = ds.get(tag)
        return str(v) if v not in (None, "") else None

    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    try:
        spacing = [float(v) for v in spacing] if spacing else None
    except (TypeError, ValueError):
        spacing = None
    return dict(modality=text("Modality"), body_part=text("BodyPartExamined"), photometric=photometric,
                pixel_spacing=spacing, study_uid=text("StudyInstanceUID"), series_uid=text("SeriesInstanceUID"),
                sop_instance_uid=text("SOPInstanceUID"), transfer_syntax=str(getattr(
                    getattr(ds.file_meta, "TransferSyntaxUID", None), "name", "") or "") or None,
                color=colour, windows=_windows(ds))


def _phi(ds) -> dict:
    return {t: str(ds.get(t, "")) for t in PHI_TAGS}


def _colour_scan(ds, arr: np.ndarray, name: str, frames: int) -> Scan:
    pixels = arr.astype(np.float32)
    top = 255.0 if pixels.max() <= 255 else float(2 ** int(ds.get("BitsStored") or 16) - 1)
    pixels = pixels / top

    def render(i: int, pipeline: str) -> np.ndarray:
        return np.clip(pixels[i], 0, 1)

    meta = _metadata(ds, str(ds.get("PhotometricInterpretation", "")), True)
    return finish(pixels if frames > 1 else pixels[0], name, "dicom", meta, render, phi=_phi(ds), frames=frames,
                  frame_index=frames // 2)


def _grey_scan(ds, arr: np.ndarray, name: str, frames: int, photometric: str) -> Scan:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    hu = np.empty(arr.shape, np.float32)
    frame_windows = []
    for i in range(frames):
        tr = _frame_group(ds, i, "PixelValueTransformationSequence") if enhanced else None
        if tr is not None and "RescaleSlope" in tr:
            hu[i] = arr[i] * float(tr.RescaleSlope) + float(tr.get("RescaleIntercept", 0))
        else:
            hu[i] = apply_modality_lut(arr[i], ds)
        voi = _frame_group(ds, i, "FrameVOILUTSequence") if enhanced else None
        if voi is not None and "WindowCenter" in voi:
            frame_windows.append((_first(voi.WindowCenter), _first(voi.WindowWidth),
                                  str(voi.get("VOILUTFunction", "LINEAR"))))
        else:
            frame_windows.append(None)
    file_window = _windows(ds)
    voi_function = str(ds.get("VOILUTFunction", "LINEAR"))
    has_lut = "VOILUTSequence" in ds
    modality = str(ds.get("Modality", "")).upper()
    absolute = modality in ("CT", "PT") or "RescaleType" in ds and str(ds.RescaleType).upper() == "HU"
    invert = photometric == "MONOCHROME1"

    def render(i: int, pipeline: str) -> np.ndarray:
        kind, window = parse_pipeline(pipeline)
        x = hu[i]
        if kind == "window":
            out = apply_window(x, window[0], window[1])
        elif kind == "auto":
            out = percentile_window(x)
        elif frame_windows[i] is not None and frame_windows[i][0] is not None:
            c, w, f = frame_windows[i]
            out = apply_window(x, c, w, f)
        elif has_lut:
            lut = ds.VOILUTSequence[0]
            bits = int(lut.LUTDescriptor[2]) or 16
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # float input to a LUT: pydicom rounds it, which is what we want
                out = np.clip(np.asarray(apply_voi_lut(x, ds, prefer_lut=True), np.float32) / (2 ** bits - 1), 0, 1)
        elif file_window:
            out = apply_window(x, file_window[0]["centre"], file_window[0]["width"], voi_function)
        else:
            out = percentile_window(x)
        if kind == "default" and float(out.std()) < 1e-3 and float(np.nanstd(x)) > 0:
            out = percentile_window(x)  # the file's window saturates the whole image: it does not fit the data
        return (1.0 - out) if invert else out

    meta = _metadata(ds, photometric, False)
    meta["units"] = "HU" if modality == "CT" else None
    return finish(hu if frames > 1 else hu[0], name, "dicom", meta, render, phi=_phi(ds), frames=frames,
                  frame_index=frames // 2, absolute_units=absolute)
