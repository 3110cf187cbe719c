"""Audit: enrolments, rollbacks, removals and review decisions (append-only), filterable, CSV export."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from core.audit import EVENT_TYPES

st.title("Audit trail")
c1, c2, c3 = st.columns(3)
event = c1.selectbox("Event", ["all", *EVENT_TYPES])
user = c2.text_input("User")
domain = c3.text_input("Domain")
rows = state.audit().query(event=None if event == "all" else event, user=user or None, domain=domain or None)
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
st.download_button("Export CSV", state.audit().to_csv(rows), file_name="audit.csv", mime="text/csv")
st.caption("Append-only: the database refuses updates and deletions of audit rows.")
