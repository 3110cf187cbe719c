"""Scan I/O: the one place that parses files.

``load_scan(source)`` turns a path or bytes into a :class:`Scan` (DICOM, NIfTI,
PNG / JPEG / TIFF / BMP); every failure is a :class:`ScanError` with a message a
clinician can act on, and no other exception escapes. ``load_cohort`` reads a
folder, a list of files or a zip of normal scans with an intake report.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

from .dicom import is_dicom, load_dicom
from .images import load_image
from .intake import IntakeLimits, IntakeReport, load_cohort
from .nifti import is_nifti, load_nifti
from .scan import (WINDOW_PRESETS, Scan, ScanError, apply_window, parse_pipeline, percentile_window,
                   scan_from_array, to_uint8)

DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")

__all__ = ["Scan", "ScanError", "load_scan", "load_cohort", "IntakeLimits", "IntakeReport", "WINDOW_PRESETS",
           "apply_window", "percentile_window", "parse_pipeline", "scan_from_array", "to_uint8"]


def _name_of(source, filename) -> str:
    if filename:
        return str(filename)
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return "upload"


def _read_bytes(source, name: str) -> bytes:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    if path.is_dir():
        raise ScanError(f"{name}: is a folder, not a scan file")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ScanError(f"{name}: file not found") from None
    except OSError as exc:
        raise ScanError(f"{name}: cannot be read ({exc.strerror or exc})") from None


def load_scan(source, filename: str | None = None) -> Scan:
    """Read one scan file (path or bytes). Raises only :class:`ScanError`."""
    name = _name_of(source, filename)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # malformed files make pydicom / nibabel warn; we raise ScanError instead
        return _load(source, name)


def _load(source, name: str) -> Scan:
    try:
        data = _read_bytes(source, name)
        if not data:
            raise ScanError(f"{name}: the file is empty")
        if is_dicom(data) or name.lower().endswith(DICOM_SUFFIXES):
            return load_dicom(data, name)
        if is_nifti(data, name):
            return load_nifti(data, name)
        try:
            return load_image(data, name)
        except ScanError as exc:
            if "not a DICOM or image file" not in str(exc):
                raise
            return load_dicom(data, name)  # DICOM without preamble: read only when it looks like one
    except ScanError:
        raise
    except MemoryError:
        raise ScanError(f"{name}: too large to load into memory") from None
    except RecursionError:
        raise ScanError(f"{name}: the file structure is nested too deeply (damaged)") from None
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: B036 — a decoder's internal error must never escape as a traceback;
        # BaseException because Rust decoders (pylibjpeg-rle via pyo3) raise PanicException, which is not an
        # Exception (found by the fuzz test)
        raise ScanError(f"{name}: could not be decoded ({exc.__class__.__name__})") from None
