"""The Scan object and the intensity pipelines that turn its pixels into a model input.

A pipeline is a short string, recorded per domain at enrolment and reused at scoring:
- ``default``: the file's own window (DICOM VOI LUT or window centre / width), else a
  percentile window; 8-bit images as they are;
- ``auto``: a percentile window (0.5 – 99.5 %) of the frame, for MR and other
  modalities without absolute units;
- ``preset:NAME``: a fixed window on absolute units (CT Hounsfield units), see
  ``WINDOW_PRESETS``;
- ``window:C/W``: a fixed window centre / width.
A fixed window needs absolute units; on a scan without them the ``default``
pipeline is used and ``Scan.intensity_fallback`` says so.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

# (centre, width) in HU, the usual radiology presets; configurable by editing or passing window:C/W
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (90.0, 150.0),
    "bone": (480.0, 2500.0),
    "brain": (40.0, 80.0),
}
MIN_SIDE = 8


class ScanError(Exception):
    """A scan could not be read; the message says why in plain words."""


def percentile_window(x: np.ndarray, lo: float = 0.5, hi: float = 99.5) -> np.ndarray:
    x = np.asarray(x, np.float32)
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        raise ScanError("pixel data holds no finite values")
    a, b = np.percentile(finite, [lo, hi])
    if b <= a:
        b = a + 1.0
    return np.clip((x - a) / (b - a), 0.0, 1.0).astype(np.float32)


def apply_window(x: np.ndarray, centre: float, width: float, function: str = "LINEAR") -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing, straight to [0, 1] (pydicom's version maps to the stored
    bit range, which then needs a second, file-dependent rescale)."""
    x = np.asarray(x, np.float64)
    width = max(float(width), 1e-6)
    function = (function or "LINEAR").upper()
    if function == "SIGMOID":
        y = 1.0 / (1.0 + np.exp(-4.0 * (x - centre) / width))
    elif function == "LINEAR_EXACT":
        y = (x - (centre - width / 2)) / width
    else:  # LINEAR
        width = max(width, 1.0)
        y = (x - (centre - 0.5)) / (width - 1) + 0.5
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def to_uint8(x01: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x01, 0, 1) * 255).astype(np.uint8)


def parse_pipeline(pipeline: str) -> tuple[str, tuple[float, float] | None]:
    """'default' | 'auto' | 'preset:NAME' | 'window:C/W' → (kind, window)."""
    if pipeline in ("default", "auto"):
        return pipeline, None
    if pipeline.startswith("preset:"):
        name = pipeline.split(":", 1)[1]
        if name not in WINDOW_PRESETS:
            raise ValueError(f"unknown window preset {name!r}; choose from {sorted(WINDOW_PRESETS)}")
        return "window", WINDOW_PRESETS[name]
    if pipeline.startswith("window:"):
        try:
            c, w = (float(v) for v in pipeline.split(":", 1)[1].split("/"))
        except ValueError:
            raise ValueError(f"window pipeline must look like window:40/400, got {pipeline!r}") from None
        return "window", (c, w)
    raise ValueError(f"unknown intensity pipeline {pipeline!r}")


# render(frame_index, pipeline) → float32 [0, 1] model image (H×W or H×W×3)
Renderer = Callable[[int, str], np.ndarray]


@dataclass
class Scan:
    """One scan (or one selected frame / slice of it), ready for the model.

    ``pixels``: float32 in the file's units (HU for CT), H×W, H×W×3, F×H×W or F×H×W×3.
    ``model_image``: the selected frame after the intensity pipeline, float32 in [0, 1].
    ``display``: 8-bit version of the model image. ``phi`` is kept apart: never logged or stored.
    """

    pixels: np.ndarray
    model_image: np.ndarray
    display: np.ndarray
    name: str = ""
    format: str = ""
    metadata: dict = field(default_factory=dict)
    phi: dict = field(default_factory=dict, repr=False)
    frames: int = 1
    frame_index: int = 0
    intensity: str = "default"
    absolute_units: bool = False
    intensity_fallback: bool = False
    _render: Renderer | None = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:  # never print PHI or pixel arrays
        return (f"Scan(name={self.name!r}, format={self.format!r}, shape={self.shape}, frames={self.frames}, "
                f"frame_index={self.frame_index}, intensity={self.intensity!r})")

    @property
    def sha256(self) -> str:
        """Hash of the model input pixels: identifies a scan without any PHI."""
        return hashlib.sha256(np.ascontiguousarray(self.model_image).tobytes()).hexdigest()

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.model_image.shape[:2])

    def frame(self, index: int) -> "Scan":
        """The same scan with another frame / slice selected."""
        if not 0 <= index < self.frames:
            raise ScanError(f"{self.name}: frame {index} is out of range (0–{self.frames - 1})")
        return self._rerender(index, self.intensity)

    def with_intensity(self, pipeline: str) -> "Scan":
        """The same frame through another intensity pipeline (e.g. a domain's recorded one)."""
        return self if pipeline == self.intensity else self._rerender(self.frame_index, pipeline)

    def _rerender(self, index: int, pipeline: str) -> "Scan":
        kind, _ = parse_pipeline(pipeline)
        fallback = kind == "window" and not self.absolute_units
        if self._render is None:
            if index != self.frame_index or (pipeline != self.intensity and not fallback):
                raise ScanError(f"{self.name}: this scan cannot be re-rendered")
            return self
        model = self._render(index, "default" if fallback else pipeline)
        return replace(self, model_image=model, display=to_uint8(model), frame_index=index, intensity=pipeline,
                       intensity_fallback=fallback)


def finish(pixels: np.ndarray, name: str, fmt: str, metadata: dict, render: Renderer, *, phi: dict | None = None,
           frames: int = 1, frame_index: int = 0, absolute_units: bool = False) -> Scan:
    """Render the selected frame with the default pipeline and check it is usable."""
    model = render(frame_index, "default")
    if model.ndim not in (2, 3) or model.shape[0] < MIN_SIDE or model.shape[1] < MIN_SIDE:
        raise ScanError(f"{name}: image is only {model.shape[1] if model.ndim > 1 else 0}×{model.shape[0]} px, "
                        f"too small to analyse")
    if not np.isfinite(model).all():
        raise ScanError(f"{name}: pixel data contains invalid (NaN or infinite) values")
    metadata = dict(metadata, rows=int(model.shape[0]), columns=int(model.shape[1]), frames=frames)
    return Scan(pixels=pixels, model_image=model.astype(np.float32), display=to_uint8(model), name=name, format=fmt,
                metadata=metadata, phi=phi or {}, frames=frames, frame_index=frame_index,
                absolute_units=absolute_units, _render=render)


def scan_from_array(arr, name: str = "array") -> Scan:
    """An in-memory image (grey or RGB; uint8, uint16 or float) as a Scan."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] in (1, 4):
        a = a[..., :3] if a.shape[2] == 4 else a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] != 3):
        raise ScanError(f"array of shape {a.shape} is not an H×W or H×W×3 image")
    if a.dtype == np.uint8:
        model = a.astype(np.float32) / 255.0
    elif a.dtype.kind == "f" and np.isfinite(a).all() and a.min() >= 0 and a.max() <= 1:
        model = a.astype(np.float32)
    else:
        model = percentile_window(a)
    pixels = a.astype(np.float32)

    def render(i: int, pipeline: str) -> np.ndarray:
        return percentile_window(pixels) if pipeline == "auto" else model

    return finish(pixels, name, "array", {}, render)
