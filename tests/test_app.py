"""Page logic with streamlit.testing.v1.AppTest (the browser test is tests/test_e2e_browser.py)."""
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAIN = str(ROOT / "app" / "main.py")


@pytest.fixture
def app_env(tmp_path, monkeypatch):
    from streamlit import config

    monkeypatch.setenv("PATCHCORECL_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("PATCHCORECL_DB", f"sqlite:///{tmp_path / 'audit.sqlite'}")
    monkeypatch.setenv("PATCHCORECL_SPOOL", str(tmp_path / "spool"))
    monkeypatch.delenv("PATCHCORECL_USERS", raising=False)
    old = config.get_option("server.address")
    config.set_option("server.address", "localhost")
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield tmp_path
    config.set_option("server.address", old)
    st.cache_resource.clear()


def _run(at):
    at.run(timeout=120)
    assert not at.exception, at.exception
    return at


def _texts(at):
    return " ".join(str(e.value) for kind in ("markdown", "info", "error", "success", "warning", "caption")
                    for e in getattr(at, kind))


def _wait_for_jobs():
    from app import state

    for job in list(state.jobs().jobs):
        job.join(300)
        assert job.state == "done", job.error


def test_first_run_demo_enrolment_then_review_and_audit(app_env):
    from streamlit.testing.v1 import AppTest

    at = _run(AppTest.from_file(MAIN, default_timeout=120))
    assert "No domain is enrolled yet" in _texts(at)
    assert "Single-user local mode" in _texts(at)
    next(b for b in at.button if b.label == "Enroll the demo domains").click()
    _run(at)
    _wait_for_jobs()
    _run(at)
    demo = at.selectbox[0]
    assert demo.label == "Demo scan"
    abnormal = next(o for o in demo.options if "abnormal" in o and "chest" in o)
    demo.select(abnormal)
    _run(at)
    text = _texts(at)
    assert "Decision:" in text or "Unknown domain" in text
    assert len(at.get("plotly_chart")) >= 2  # original and overlay
    next(b for b in at.button if b.label == "Confirm abnormal").click()
    _run(at)
    from app import state

    rows = state.audit().query(event="review")
    assert rows and rows[0]["action"] == "confirm_abnormal" and len(rows[0]["scan_sha256"]) == 64
    assert rows[0]["model_version"] == state.store().current()
    assert len(state.audit().query(event="enroll")) == 3  # one per demo domain

    at.switch_page("views/model.py")
    _run(at)
    assert "Versions" in " ".join(h.value for h in at.subheader)
    at.switch_page("views/audit.py")
    _run(at)
    assert at.dataframe  # the audit table


def test_reviewer_is_refused_admin_pages(app_env, tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from app.auth import hash_password

    users = tmp_path / "users.toml"
    users.write_text(f'[users.rita]\nrole = "reviewer"\npassword_hash = "{hash_password("pw-rita")}"\n')
    monkeypatch.setenv("PATCHCORECL_USERS", str(users))
    at = _run(AppTest.from_file(MAIN, default_timeout=120))
    at.text_input[0].input("rita")
    at.text_input[1].input("wrong")
    at.button[0].click()
    _run(at)
    assert "wrong password" in _texts(at)
    at.text_input[1].input("pw-rita")
    at.button[0].click()
    _run(at)
    at.switch_page("views/enroll.py")
    _run(at)
    assert "needs the admin role" in _texts(at)


def test_network_bound_without_sign_in_is_refused(app_env):
    from streamlit import config
    from streamlit.testing.v1 import AppTest

    config.set_option("server.address", "0.0.0.0")
    at = _run(AppTest.from_file(MAIN, default_timeout=60))
    assert "No sign-in is configured" in _texts(at)


def test_password_hashes():
    from app.auth import hash_password, verify_password

    h = hash_password("secret")
    assert h.startswith("pbkdf2_sha256$") and "secret" not in h
    assert verify_password("secret", h) and not verify_password("Secret", h)
    assert not verify_password("secret", "garbage")


def test_scoring_sessions_stay_consistent_while_one_enrolls(tmp_path, demo_files):
    """Several sessions score while another enrols: no errors; every score names a committed version
    and a domain that version holds."""
    from core.continual import PatchCoreCL
    from core.jobs import EnrollmentJob
    from core.store import ModelStore

    store = ModelStore(tmp_path / "store")
    model = PatchCoreCL(budget=4000)
    model.enroll("brain", demo_files("brain", "train/good")[:8])
    store.commit(model, action="enroll")
    probes = demo_files("brain", "test/good")[:3] + demo_files("chest", "test/good")[:3]
    job = EnrollmentJob([("chest", demo_files("chest", "train/good")[:10])], store, user="admin").start()
    results, errors = [], []

    def session():
        cache = {}
        try:
            while job.state == "running" or len(cache) < 2:
                v = store.current()
                m = cache.setdefault(v, store.load(v))  # what st.cache_resource does per version
                for p in probes:
                    results.append((v, m.score(p, with_map=False)))
                if job.state != "running" and len(cache) >= 1 and store.current() in cache:
                    break
        except Exception as exc:  # noqa: BLE001 — any error fails the test below
            errors.append(exc)

    threads = [threading.Thread(target=session) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    job.join(300)
    assert job.state == "done" and not errors, errors
    assert results
    for v, r in results:
        assert r.model_version == v
        held = set(store.manifest(v)["domains"])
        assert (r.domain or r.nearest_domain) in held
    assert {v for v, _ in results} <= set(store.version_ids())


def test_cancelled_enrolment_leaves_the_store_unchanged(tmp_path, demo_files):
    from core.continual import PatchCoreCL
    from core.jobs import EnrollmentJob
    from core.store import ModelStore

    store = ModelStore(tmp_path / "store")
    model = PatchCoreCL(budget=2000)
    model.enroll("brain", demo_files("brain", "train/good")[:4])
    v = store.commit(model, action="enroll")
    job = EnrollmentJob([("chest", demo_files("chest", "train/good"))], store, user="admin")
    job.cancel()
    job.start().join(120)
    assert job.state == "cancelled" and store.current() == v and store.version_ids() == [v]
