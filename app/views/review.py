"""Review: upload scans, see the heatmap, the routed domain, the calibrated score and the decision; act on it."""
from __future__ import annotations

import io
import json

import numpy as np
import streamlit as st
from PIL import Image

from app import state
from app.viewer import image_figure, normal_distribution_figure
from core.io import WINDOW_PRESETS, apply_window, load_scan, to_uint8
from core.overlay import COLORMAPS, overlay

user = st.session_state["current_user"]
st.title("Review")

model = state.serving_model()
if model is None:
    st.info("No domain is enrolled yet. Enroll the bundled demo domains (brain MRI, chest X-ray, histology) "
            "to try the app, or enroll your own on the *Enroll domain* page.")
    job = state.jobs().active()
    if user.is_admin and job is None and st.button("Enroll the demo domains", type="primary"):
        state.start_demo_enrollment(user.name)
        st.rerun()
    if job is not None:
        @st.fragment(run_every=1.0)
        def _wait():
            j = state.jobs().active()
            if j is None:
                st.rerun()
            st.progress(j.fraction, text=f"Enrolling {j.label}")
        _wait()
    st.stop()

files = st.file_uploader("Scans (PNG, JPEG, TIFF, DICOM, NIfTI or a zip of them)", type=state.SCAN_TYPES,
                         accept_multiple_files=True, key="review_upload")
scans, errors = state.read_uploads(files)
for name, msg in errors:
    st.error(f"**{name}** — {msg}")
opened = state.recent_scans().get(st.session_state.get("worklist_open", ""))
if opened is not None:
    scans = [opened] + scans
if not scans:
    st.caption("Or try a bundled demo scan:")
    options = state.demo_scans()
    pick = st.selectbox("Demo scan", options, format_func=state.demo_label, index=None,
                        placeholder="choose a demo scan")
    if pick is None:
        st.stop()
    scans = [(pick.name, load_scan(pick))]

names = [n for n, _ in scans]
idx = st.selectbox("Scan", range(len(names)), format_func=lambda i: names[i]) if len(names) > 1 else 0
name, scan = scans[idx]
if scan.frames > 1:
    frame = st.slider("Frame / slice", 0, scan.frames - 1, scan.frame_index)
    scan = scan.frame(frame)


@st.cache_data(max_entries=256, show_spinner="Scoring…")
def _score(_scan, key: tuple):  # key: (scan hash, model version); the scan itself is not hashed
    return model.score(_scan)


result = _score(scan, (scan.sha256, model.version))

# -- viewer controls ------------------------------------------------------------------------------------
c1, c2, c3, c4 = st.columns(4)
show = c1.toggle("Heatmap", value=True)
opacity = c2.slider("Opacity", 0.0, 1.0, 0.5, 0.05)
cmap = c3.selectbox("Colormap", list(COLORMAPS), index=0)
outline = c4.toggle("Outline above threshold", value=True)
w1, w2, w3, w4 = st.columns(4)
grey = scan.model_image.ndim == 2
presets = ["as loaded"] + (list(WINDOW_PRESETS) if scan.absolute_units else []) + (["manual"] if grey else [])
preset = w1.selectbox("Window", presets, disabled=not grey)
centre = w2.number_input("Centre", value=40.0, disabled=preset != "manual")
width = w3.number_input("Width", value=400.0, min_value=1.0, disabled=preset != "manual")
invert = w4.toggle("Invert", value=False, disabled=not grey)

frame_pixels = scan.pixels[scan.frame_index] if scan.frames > 1 else scan.pixels
if not grey or preset == "as loaded":
    base = scan.display
elif preset == "manual":
    base = to_uint8(apply_window(frame_pixels, centre, width))
else:
    base = to_uint8(apply_window(frame_pixels, *WINDOW_PRESETS[preset]))
if invert and grey:
    base = 255 - base

left, right = st.columns(2)
hover = frame_pixels if grey and frame_pixels.shape == base.shape else None
left.plotly_chart(image_figure(base, hover, "Original"), use_container_width=True)
if result.anomaly_map is not None and show:
    over = overlay(base, result.anomaly_map, result.map_threshold, opacity=opacity, colormap=cmap, outline=outline)
else:
    over = base if base.ndim == 3 else np.repeat(base[..., None], 3, axis=2)
right.plotly_chart(image_figure(over, hover, "Heatmap overlay"), use_container_width=True)

# -- result panel -------------------------------------------------------------------------------------------
st.subheader("Result")
if result.decision == "unknown_domain":
    st.warning(f"**Unknown domain** — this scan matches none of the enrolled domains (nearest: "
               f"{result.nearest_domain}, {result.ood_ratio:.1f}× beyond its normal range). Enroll this kind "
               f"of scan first; no anomaly score is given.")
else:
    dom = model.domains[result.domain]
    k1, k2, k3 = st.columns(3)
    k1.metric("Domain", result.domain, f"routing confidence {result.routing_confidence:.0%}",
              delta_color="off")
    k2.metric("Calibrated score", f"{result.calibrated_score:.2f}× threshold",
              f"{result.normal_percentile:.0f}th percentile of normals", delta_color="off")
    verdict = "SUSPICIOUS" if result.decision == "suspicious" else "NORMAL"
    k3.metric("Decision", verdict, f"threshold at {100 * dom.calibration.fpr:.0f}% normal FPR",
              delta_color="off")
    if result.decision == "suspicious":
        st.error(f"Decision: suspicious — score {result.calibrated_score:.2f}× the {result.domain} threshold.")
    else:
        st.success(f"Decision: normal — score {result.calibrated_score:.2f}× the {result.domain} threshold.")
    st.plotly_chart(normal_distribution_figure(dom.calibration.normal_scores, result.raw_score,
                                               result.threshold), use_container_width=True)

# -- clinician actions --------------------------------------------------------------------------------------
st.subheader("Your review")
comment = st.text_input("Comment (optional)", key=f"comment_{scan.sha256}")
queue = st.checkbox("Queue as a normal example for this domain's next enrolment", value=False,
                    disabled=result.decision == "unknown_domain")
a1, a2, _ = st.columns([1, 1, 3])


def _record(action: str):
    state.audit().record("review", user.name, model_version=result.model_version, domain=result.domain,
                         scan_sha256=scan.sha256, score=result.calibrated_score, threshold=result.threshold,
                         decision=result.decision, action=action, comment=comment or None,
                         details=dict(queued_for_enrollment=bool(queue and action == "mark_normal"),
                                      frame=scan.frame_index))
    st.toast(f"Recorded: {action.replace('_', ' ')}")
    st.session_state["last_review"] = action


a1.button("Confirm abnormal", on_click=_record, args=("confirm_abnormal",), type="primary")
a2.button("Mark as normal", on_click=_record, args=("mark_normal",))
if st.session_state.get("last_review"):
    st.caption(f"Last recorded action: {st.session_state['last_review'].replace('_', ' ')}")

buf = io.BytesIO()
Image.fromarray(over).save(buf, "PNG")
finding = dict(file=name, scan_sha256=scan.sha256, frame=scan.frame_index, **result.to_dict())
d1, d2, _ = st.columns([1, 1, 3])
d1.download_button("Overlay PNG", buf.getvalue(), file_name=f"{name}_overlay.png", mime="image/png")
d2.download_button("Finding (JSON)", json.dumps(finding, indent=1, default=float), file_name=f"{name}_finding.json",
                   mime="application/json")
