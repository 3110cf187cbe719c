"""Enroll domain (admin): upload normal scans, preview the intake, enrol in the background."""
from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from app import state
from core.continual import DOMAIN_NAME
from core.io import WINDOW_PRESETS

user = st.session_state["current_user"]
st.title("Enroll a domain")
if not user.is_admin:
    st.error("Enrolling a domain needs the admin role. You are signed in as a reviewer.")
    st.stop()

model = state.serving_model()
job_id = st.session_state.get("enroll_job")


@st.fragment(run_every=1.0)
def progress_panel():
    job = state.jobs().get(st.session_state.get("enroll_job")) or state.jobs().active()
    if job is None:
        return
    if job.state == "running":
        st.progress(job.fraction, text=f"Enrolling {job.label}")
        if st.button("Cancel enrolment"):
            job.cancel()
        st.caption("Other users keep reviewing with the current model version until the new one is committed.")
    elif job.state == "done":
        st.success(f"Enrolled {', '.join(d[0] for d in job.domains)} → model version {', '.join(job.versions)}")
        _after(job)
    elif job.state == "cancelled":
        st.warning("Enrolment cancelled: the model store is unchanged.")
    elif job.state == "failed":
        st.error(f"Enrolment failed, the model store is unchanged: {job.error}")


def _after(job):
    new = state.serving_model()
    if new is None:
        return
    domain = job.domains[-1][0]
    d = new.domains[domain]
    cal = d.calibration
    st.markdown(f"**{domain}**: threshold {cal.threshold:.2f} at {100 * cal.fpr:.0f}% normal false positives "
                f"({cal.n} held-out normals); bank {len(d.bank):,} patches.")
    from app.viewer import normal_distribution_figure

    st.plotly_chart(normal_distribution_figure(cal.normal_scores, None, cal.threshold), use_container_width=True)
    if job.versions:
        before_v = state.store().manifest(job.versions[-1]).get("parent")
        if before_v:
            old = state.store().manifest(before_v)["domains"]
            rows = []
            for name, meta in old.items():
                if name in new.domains and name != domain:
                    b = np.median(meta["calibration"]["normal_scores"])
                    a = float(np.median(new.domains[name].calibration.normal_scores))
                    rows.append(dict(domain=name, median_normal_score_before=b, median_normal_score_after=a,
                                     change_pct=100 * (a - b) / b if b else None,
                                     threshold_before=meta["calibration"]["threshold"],
                                     threshold_after=new.domains[name].calibration.threshold))
            if rows:
                st.markdown("**Retention check** — held-out normals of earlier domains, before vs after:")
                st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)


progress_panel()
if state.jobs().active() is not None:
    st.stop()

if model is None and st.button("Enroll the bundled demo domains (brain MRI, chest X-ray, histology)"):
    st.session_state["enroll_job"] = state.start_demo_enrollment(user.name).id
    st.rerun()

files = st.file_uploader("Normal scans: drop a folder, several files, or a zip", type=state.SCAN_TYPES,
                         accept_multiple_files="directory", key="enroll_upload")
name = st.text_input("Domain name", placeholder="e.g. chest_xray")
existing = model is not None and name in model.domains
mode = "new"
if existing:
    mode = st.radio(f"'{name}' is already enrolled", ["extend", "replace"], horizontal=True,
                    captions=["add these scans to it", "start it over with these scans"])
intensity = st.selectbox("Intensity pipeline (recorded with the domain, reused at scoring)",
                         ["default", "auto"] + [f"preset:{p}" for p in WINDOW_PRESETS],
                         help="default: the file's own window; auto: percentile window (MR); presets: fixed CT windows")
if not files:
    st.stop()
scans, errors = state.read_uploads(files if isinstance(files, list) else [files])
st.subheader("Intake report")
c1, c2 = st.columns(2)
c1.metric("Accepted", len(scans))
c2.metric("Skipped", len(errors))
if errors:
    st.dataframe(pd.DataFrame(errors, columns=["file", "reason"]), hide_index=True, use_container_width=True)
seen, dups = {}, []
for n, s in scans:
    if s.sha256 in seen:
        dups.append((n, seen[s.sha256]))
    seen.setdefault(s.sha256, n)
if dups:
    st.warning(f"{len(dups)} duplicate scans (same pixels) will be counted once.")
    st.dataframe(pd.DataFrame(dups, columns=["file", "duplicate of"]), hide_index=True)
if scans:
    st.image([s.display for _, s in scans[:12]], caption=[n for n, _ in scans[:12]], width=120)
count = (len(model.domains) if model else 0) + (0 if existing else 1)
budget = model.params["budget"] if model else 30_000
st.info(f"After enrolling, each of the {count} domains keeps {budget // count:,} patches "
        f"(total budget {budget:,}).")
problem = None
if not DOMAIN_NAME.match(name or ""):
    problem = "Give the domain a name: 1–64 letters, digits, spaces, '.', '_' or '-'."
elif len(seen) < 2 and mode != "extend":
    problem = "At least 2 distinct normal scans are needed."
if problem:
    st.caption(problem)
if st.button("Enroll", type="primary", disabled=problem is not None):
    try:
        st.session_state["enroll_job"] = state.start_enrollment([(name, [s for _, s in scans])], user.name,
                                                                mode=mode, intensity=intensity).id
    except RuntimeError as exc:
        st.error(str(exc))
    st.rerun()
