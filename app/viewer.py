"""Plotly figures for the viewer and the result panel (display only; the numbers come from core)."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go


def image_figure(rgb: np.ndarray, values: np.ndarray | None = None, title: str = "", height: int = 480) -> go.Figure:
    """An RGB image with zoom / pan; hover shows the pixel value of ``values`` (e.g. HU) when given."""
    img = rgb if rgb.ndim == 3 else np.repeat(rgb[..., None], 3, axis=2)
    fig = go.Figure(go.Image(z=img, customdata=values if values is not None else None,
                             hovertemplate=("x %{x}, y %{y}<br>value %{customdata:.1f}<extra></extra>"
                                            if values is not None else "x %{x}, y %{y}<extra></extra>")))
    fig.update_layout(title=title, height=height, margin=dict(l=0, r=0, t=30 if title else 0, b=0),
                      dragmode="pan", xaxis=dict(visible=False), yaxis=dict(visible=False, scaleanchor="x"))
    return fig


def normal_distribution_figure(normal_scores, score: float | None, threshold: float) -> go.Figure:
    fig = go.Figure(go.Histogram(x=list(normal_scores), name="held-out normals", nbinsx=20, opacity=0.7))
    fig.add_vline(x=threshold, line_dash="dash", line_color="orange", annotation_text="threshold")
    if score is not None:
        fig.add_vline(x=score, line_color="red", line_width=3, annotation_text="this scan")
    fig.update_layout(height=220, margin=dict(l=0, r=0, t=10, b=0), showlegend=False,
                      xaxis_title="raw image score", yaxis_title="scans")
    return fig
