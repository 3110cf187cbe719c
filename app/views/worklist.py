"""Worklist: score a batch and triage it by calibrated score."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state

st.title("Worklist")
model = state.serving_model()
if model is None:
    st.info("No domain is enrolled yet.")
    st.stop()
files = st.file_uploader("Scans or a zip of scans", type=state.SCAN_TYPES, accept_multiple_files=True,
                         key="worklist_upload")
scans, errors = state.read_uploads(files)
for name, msg in errors:
    st.error(f"**{name}** — {msg}")
if not scans:
    st.stop()


@st.cache_data(max_entries=16, show_spinner="Scoring the batch…")
def _rows(_scans, key):
    results = model.score_many([s for _, s in _scans], with_map=False)
    return [dict(file=n, domain=r.domain or f"unknown (nearest {r.nearest_domain})", decision=r.decision,
                 calibrated_score=r.calibrated_score, normal_percentile=r.normal_percentile,
                 routing_confidence=r.routing_confidence, model_version=r.model_version, scan_sha256=s.sha256)
            for (n, s), r in zip(_scans, results)]


df = pd.DataFrame(_rows(scans, (tuple(s.sha256 for _, s in scans), model.version)))
df = df.sort_values("calibrated_score", ascending=False, na_position="first")
f1, f2 = st.columns(2)
dom = f1.multiselect("Domain", sorted(df.domain.unique()))
dec = f2.multiselect("Decision", sorted(df.decision.unique()))
view = df[(df.domain.isin(dom) if dom else True) & (df.decision.isin(dec) if dec else True)]
sel = st.dataframe(view, use_container_width=True, hide_index=True, on_select="rerun", selection_mode="single-row")
st.download_button("Export CSV", view.to_csv(index=False), file_name="worklist.csv", mime="text/csv")
rows = sel.selection.rows if sel else []
if rows:
    row = view.iloc[rows[0]]
    if st.button(f"Open {row.file} in the viewer", type="primary"):
        scan = dict(scans)[row.file]
        st.session_state["worklist_open"] = state.recent_scans().put(row.file, scan)
        st.switch_page("views/review.py")
