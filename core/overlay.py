"""Heatmap overlays on the display image, on a calibrated scale (never per-image min-max).

The colour scale runs from half the domain's map threshold (transparent) to
the threshold and above (fully coloured), so the same colour means the same
thing on every scan of a domain.
"""
from __future__ import annotations

import cv2
import numpy as np

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "turbo": cv2.COLORMAP_TURBO,
             "viridis": cv2.COLORMAP_VIRIDIS, "hot": cv2.COLORMAP_HOT}


def heat_level(anomaly_map: np.ndarray, map_threshold: float) -> np.ndarray:
    """0 at half the threshold, 1 at the threshold and above."""
    t = max(float(map_threshold), 1e-12)
    return np.clip((anomaly_map / t - 0.5) / 0.5, 0.0, 1.0).astype(np.float32)


def overlay(display: np.ndarray, anomaly_map: np.ndarray, map_threshold: float, opacity: float = 0.5,
            colormap: str = "jet", outline: bool = True) -> np.ndarray:
    """RGB uint8 image: the display image with the heatmap blended in, and the above-threshold outline."""
    base = display if display.ndim == 3 else np.repeat(display[..., None], 3, axis=2)
    base = base.astype(np.float32)
    level = heat_level(anomaly_map, map_threshold)
    colour = cv2.applyColorMap(np.round(level * 255).astype(np.uint8), COLORMAPS[colormap])
    colour = cv2.cvtColor(colour, cv2.COLOR_BGR2RGB).astype(np.float32)
    alpha = (opacity * np.sqrt(level))[..., None]
    out = np.clip(base * (1 - alpha) + colour * alpha, 0, 255).astype(np.uint8)
    if outline:
        above = (anomaly_map >= map_threshold).astype(np.uint8)
        contours, _ = cv2.findContours(above, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(min(out.shape[:2]) / 300)))
    return out
