"""Real-browser end-to-end test: streamlit run app/main.py, driven by Playwright in Debian's Chromium.

Skipped (with the reason) when /usr/bin/chromium or the playwright package is missing; .ci/run
installs Chromium with apt. Screenshots go to test-artifacts/e2e/.
"""
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SHOTS = ROOT / "test-artifacts" / "e2e"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"no Chromium at {CHROMIUM}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path):
    from app.auth import hash_password

    users = tmp_path / "users.toml"
    users.write_text(f'[users.ada]\nrole = "admin"\npassword_hash = "{hash_password("ada-pw")}"\n'
                     f'[users.rita]\nrole = "reviewer"\npassword_hash = "{hash_password("rita-pw")}"\n')
    port = _free_port()
    env = dict(os.environ, PATCHCORECL_STORE=str(tmp_path / "store"), PATCHCORECL_DB=f"sqlite:///{tmp_path}/a.db",
               PATCHCORECL_SPOOL=str(tmp_path / "spool"), PATCHCORECL_USERS=str(users), PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"),
                             "--server.headless=true", "--server.address=127.0.0.1", f"--server.port={port}",
                             "--browser.gatherUsageStats=false"], env=env, cwd=ROOT,
                            stdout=open(tmp_path / "server.log", "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)  # loopback only
            conn.request("GET", "/_stcore/health")
            if conn.getresponse().read().strip() == b"ok":
                break
        except OSError:
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("the app did not become healthy:\n" + (tmp_path / "server.log").read_text()[-3000:])
    yield dict(url=url, db=tmp_path / "a.db", t0=t0, log=tmp_path / "server.log")
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


def _non_blank(png: bytes) -> float:
    from PIL import Image

    a = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    background = np.median(a.reshape(-1, 3), axis=0)
    return float((np.abs(a - background).sum(axis=2) > 30).mean())


def _sign_in(page, url, name, password):
    page.goto(url)
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_browser_enroll_review_confirm_and_access(server, demo_root):
    playwright = pytest.importorskip("playwright.sync_api")
    from pydicom.data import get_testdata_file

    SHOTS.mkdir(parents=True, exist_ok=True)
    png = sorted((demo_root / "chest" / "test" / "Ungood" / "img").glob("*.png"))[0]
    dcm = Path(get_testdata_file("CT_small.dcm"))
    junk = Path(server["log"]).parent / "not_a_scan.png"
    junk.write_bytes(b"this is not an image")
    timings = {}
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.set_default_timeout(90_000)
        _sign_in(page, server["url"], "ada", "ada-pw")
        page.get_by_role("button", name="Enroll the demo domains").click()
        page.get_by_text("Or try a bundled demo scan").wait_for(timeout=400_000)  # enrolment finished
        page.screenshot(path=str(SHOTS / "01_enrolled.png"))
        page.locator('[data-testid="stFileUploader"] input[type="file"]').first.set_input_files([str(png), str(dcm),
                                                                                          str(junk)])
        page.get_by_text("Decision:").wait_for()
        page.get_by_text("not_a_scan.png: not a DICOM or image file").wait_for()  # a readable message, no traceback
        assert page.get_by_text("Traceback").count() == 0
        timings["first_heatmap_s"] = time.perf_counter() - server["t0"]
        charts = page.locator('[data-testid="stPlotlyChart"]')
        charts.nth(1).wait_for()
        time.sleep(1.0)
        overlay_png = charts.nth(1).screenshot(path=str(SHOTS / "02_overlay.png"))
        assert _non_blank(overlay_png) > 0.2
        page.screenshot(path=str(SHOTS / "03_review.png"), full_page=True)
        confirm = page.get_by_role("button", name="Confirm abnormal")
        confirm.scroll_into_view_if_needed()
        try:
            confirm.click(timeout=30_000)
        except Exception:
            page.screenshot(path=str(SHOTS / "failed_confirm.png"), full_page=True)
            print([b.inner_text() for b in page.get_by_role("button").all()])
            raise
        page.get_by_text("Last recorded action: confirm abnormal").wait_for()
        # the DICOM: pick it in the scan selector; CT is not enrolled, so the answer is "unknown domain"
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Scan").first.locator("input").click()
        page.get_by_role("option", name=dcm.name).click()
        page.get_by_text("Unknown domain").wait_for()
        page.screenshot(path=str(SHOTS / "04_dicom.png"), full_page=True)

        import sqlalchemy as sa

        with sa.create_engine(f"sqlite:///{server['db']}").connect() as conn:
            rows = conn.exec_driver_sql("SELECT user, action, scan_sha256, model_version FROM audit_events "
                                        "WHERE event = 'review'").fetchall()
        assert rows and rows[0][0] == "ada" and rows[0][1] == "confirm_abnormal" and len(rows[0][2]) == 64

        page.get_by_role("button", name="Sign out").click()
        _sign_in(page, server["url"], "rita", "rita-pw")
        page.get_by_role("link", name="Enroll domain").click()
        page.get_by_text("needs the admin role").wait_for()
        page.screenshot(path=str(SHOTS / "05_reviewer_refused.png"))
        browser.close()
    (SHOTS / "timings.json").write_text(json.dumps(timings))
