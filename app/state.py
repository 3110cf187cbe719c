"""Shared services for all sessions: the store, the audit log, the serving model, enrolment jobs, the spool.

The serving model is cached per store version (``st.cache_resource``), so every session
scores with the version that is current when it asks, and a new commit simply becomes a
new cache entry. Scoring only reads the model; enrolment jobs work on their own copy.
"""
from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import streamlit as st

from core.audit import AuditLog
from core.continual import PatchCoreCL
from core.io import ScanError, load_cohort, load_scan
from core.jobs import EnrollmentJob
from core.store import ModelStore, StoreError

from .config import Settings, load_settings

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DEMO_DIR = ASSETS / "demo"
DEMO_DOMAINS = ("brain", "chest", "histology")
SCAN_TYPES = ["png", "jpg", "jpeg", "tif", "tiff", "bmp", "dcm", "dicom", "nii", "gz", "zip"]


@st.cache_resource
def settings() -> Settings:
    return load_settings()


@st.cache_resource
def store() -> ModelStore:
    return ModelStore(settings().store)


@st.cache_resource
def audit() -> AuditLog:
    return AuditLog(settings().database)


@st.cache_resource(max_entries=2)
def _model_at(root: str, version: str) -> PatchCoreCL:
    return ModelStore(root).load(version)


def serving_model() -> PatchCoreCL | None:
    """The current version's model, or None if nothing is enrolled yet."""
    s = store()
    version = s.current()
    if version is None:
        return None
    return _model_at(str(s.root), version)


def serving_version() -> str | None:
    try:
        return store().current()
    except StoreError:
        return None


class _Jobs:
    """Enrolment jobs of all sessions (one at a time: the store serialises commits anyway)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.jobs: list[EnrollmentJob] = []

    def active(self) -> EnrollmentJob | None:
        return next((j for j in self.jobs if j.state in ("queued", "running")), None)

    def submit(self, job: EnrollmentJob) -> EnrollmentJob:
        with self.lock:
            if self.active() is not None:
                raise RuntimeError("another enrolment is running; wait for it to finish")
            self.jobs.append(job)
            return job.start()

    def get(self, job_id: str | None) -> EnrollmentJob | None:
        return next((j for j in self.jobs if j.id == job_id), None)


@st.cache_resource
def jobs() -> _Jobs:
    return _Jobs()


def on_commit(version, domain, before, after) -> None:
    """Audit each committed enrolment (called from the job thread)."""
    d = after.domains[domain]
    audit().record("enroll", d.enrolled_by or "unknown", model_version=version, domain=domain,
                   threshold=d.calibration.threshold, action=d.info.get("mode"),
                   details=dict(n_images=d.n_images, bank_size=len(d.bank)))


def start_enrollment(domains: list[tuple[str, list]], user: str, mode: str = "new",
                     intensity: str = "default") -> EnrollmentJob:
    job = EnrollmentJob(domains=domains, store=store(), user=user, mode=mode, intensity=intensity,
                        new_model=PatchCoreCL, on_commit=on_commit)
    return jobs().submit(job)


def start_demo_enrollment(user: str) -> EnrollmentJob:
    cohorts = []
    for name in DEMO_DOMAINS:  # the demo's validation normals calibrate (more than a 10 % hold-out would)
        scans, _ = load_cohort(DEMO_DIR / name / "train" / "good")
        calibration, _ = load_cohort(DEMO_DIR / name / "valid" / "good")
        cohorts.append((name, scans, calibration))
    return start_enrollment(cohorts, user)


def demo_scans() -> list[Path]:
    return sorted((DEMO_DIR).glob("*/test/*/img/*.png")) + sorted((DEMO_DIR).glob("*/test/good/*.png"))


def demo_label(path: Path) -> str:
    domain = path.relative_to(DEMO_DIR).parts[0]
    return f"{domain} · {'abnormal' if 'Ungood' in path.parts else 'normal'} · {path.name}"


def spool(uploaded) -> Path:
    """Write an upload to disk (named by content hash) so that session state holds only a path."""
    data = uploaded.getvalue()
    digest = hashlib.sha256(data).hexdigest()[:24]
    folder = settings().spool
    folder.mkdir(parents=True, exist_ok=True)
    suffix = "".join(Path(uploaded.name).suffixes[-2:]) if uploaded.name.lower().endswith(".nii.gz") \
        else Path(uploaded.name).suffix
    path = folder / f"{digest}{suffix.lower()}"
    if not path.exists():
        tmp = path.with_suffix(path.suffix + ".part")
        tmp.write_bytes(data)
        tmp.replace(path)
    return path


def read_uploads(files) -> tuple[list[tuple[str, object]], list[tuple[str, str]]]:
    """Uploaded files (spooled) → ([(display name, Scan)], [(file name, error message)])."""
    scans, errors = [], []
    for f in files or []:
        path = spool(f)
        if path.suffix == ".zip":
            try:
                got, report = load_cohort(path)
            except ScanError as exc:
                errors.append((f.name, str(exc)))
                continue
            scans += [(f"{f.name}/{n}", s) for n, s in zip(report.accepted, got)]
            errors += [(f"{f.name}/{n}", r) for n, r in report.skipped]
            continue
        try:
            scans.append((f.name, load_scan(path, filename=f.name)))
        except ScanError as exc:
            errors.append((f.name, str(exc).replace(path.name, f.name)))
    return scans, errors


class _RecentScans:
    """A bounded, process-wide cache of recently loaded scans (for 'open in viewer'), kept out of session state."""

    def __init__(self, size: int = 256):
        from collections import OrderedDict

        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def put(self, name: str, scan) -> str:
        with self.lock:
            self.items[scan.sha256] = (name, scan)
            self.items.move_to_end(scan.sha256)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return scan.sha256

    def get(self, sha: str):
        with self.lock:
            return self.items.get(sha)


@st.cache_resource
def recent_scans() -> _RecentScans:
    return _RecentScans()
