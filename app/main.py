"""PatchCoreCL clinician app: streamlit run app/main.py"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st  # noqa: E402

from app import auth, state  # noqa: E402

st.set_page_config(page_title="PatchCoreCL", page_icon="🩻", layout="wide")

user = auth.current_user(state.settings().users_file)
if user is None:
    st.stop()
st.session_state["current_user"] = user

with st.sidebar:
    st.markdown(f"**{user.name}** · {user.role}")
    if user.mode == "local":
        st.caption("Single-user local mode: no sign-in, because the server is bound to localhost only.")
    else:
        st.button("Sign out", on_click=auth.sign_out)
    version = state.serving_version()
    st.caption(f"Model version: {version or 'none yet'}")
    job = state.jobs().active()
    if job is not None:
        st.progress(job.fraction, text=f"Enrolling {job.label}")

views = Path(__file__).parent / "views"
pages = [st.Page(views / "review.py", title="Review", icon="🔎", default=True),
         st.Page(views / "worklist.py", title="Worklist", icon="📋"),
         st.Page(views / "enroll.py", title="Enroll domain", icon="➕"),
         st.Page(views / "model.py", title="Model", icon="🧠"),
         st.Page(views / "audit.py", title="Audit", icon="📜")]
st.navigation(pages).run()
