"""Model: domains, versions with rollback, remove a domain (admin), memory use."""
from __future__ import annotations

import pandas as pd
import streamlit as st

from app import state
from core.store import StoreConflict, StoreError

user = st.session_state["current_user"]
st.title("Model")
model = state.serving_model()
if model is None:
    st.info("No domain is enrolled yet.")
    st.stop()
rows = [dict(domain=n, images=d.n_images, bank_patches=len(d.bank), threshold=d.calibration.threshold,
             calibration_scans=d.calibration.n, intensity=d.info.get("intensity"), enrolled_at=d.enrolled_at,
             enrolled_by=d.enrolled_by) for n, d in model.domains.items()]
st.dataframe(pd.DataFrame(rows), hide_index=True, use_container_width=True)
st.caption(f"Version {model.version} · total budget {model.params['budget']:,} patches · memory banks "
           f"{model.memory_bytes() / 2**20:.1f} MiB · backbone {model.params['backbone']}")

st.subheader("Versions")
versions = state.store().versions()
st.dataframe(pd.DataFrame(versions)[::-1], hide_index=True, use_container_width=True)
if not user.is_admin:
    st.caption("Rollback and removal need the admin role.")
    st.stop()
c1, c2 = st.columns(2)
with c1:
    target = st.selectbox("Roll back to", [v["version"] for v in versions if not v.get("current")][::-1])
    if target and st.button(f"Roll back to {target}"):
        try:
            v = state.store().rollback(target, user=user.name)
            state.audit().record("rollback", user.name, model_version=v, action="rollback",
                                 details=dict(rolled_back_to=target))
            st.success(f"Now serving {v} (a copy of {target}).")
            st.rerun()
        except StoreError as exc:
            st.error(str(exc))
with c2:
    victim = st.selectbox("Remove domain", list(model.domains), index=None)
    if victim:
        sure = st.checkbox(f"Yes, remove '{victim}' (a new version; roll back to undo)")
        if st.button("Remove", disabled=not sure, type="primary"):
            try:
                m = state.store().load()
                m.remove(victim)
                v = state.store().commit(m, action="remove", message=f"remove {victim}", user=user.name)
                state.audit().record("remove", user.name, model_version=v, domain=victim, action="remove")
                st.success(f"Removed {victim}: now serving {v}.")
                st.rerun()
            except (StoreError, StoreConflict, KeyError) as exc:
                st.error(str(exc))
