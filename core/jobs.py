"""Enrolment as a background job: progress that outlives the caller, cancel that changes nothing.

The job loads its own copy of the model from the store, enrols, and commits a new
version. Whoever is scoring keeps using the version they loaded until the commit.
Cancelling raises inside the progress callback, so enrolment stops before the
commit and the store is untouched.
"""
from __future__ import annotations

import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field


class Cancelled(Exception):
    pass


@dataclass
class EnrollmentJob:
    domains: list[tuple]              # [(domain, scans)] or [(domain, scans, calibration scans)], in order
    store: object
    user: str
    mode: str = "new"
    intensity: str = "default"
    new_model: object = None          # callable building a fresh model when the store is empty
    on_commit: object = None          # callable(version, domain, model_before, model_after)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    stage: str = "queued"
    fraction: float = 0.0
    state: str = "queued"             # queued | running | done | failed | cancelled
    error: str | None = None
    versions: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> "EnrollmentJob":
        self._thread = threading.Thread(target=self._run, name=f"enroll-{self.id}", daemon=True)
        self.state, self.started = "running", time.time()
        self._thread.start()
        return self

    def cancel(self) -> None:
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def label(self) -> str:
        names = ", ".join(d[0] for d in self.domains)
        return f"{names}: {self.stage} {100 * self.fraction:.0f}%"

    def _progress(self, k: int, stage: str, frac: float) -> None:
        if self._cancel.is_set():
            raise Cancelled()
        n = len(self.domains)
        weights = {"features": (0.0, 0.6), "coreset": (0.6, 0.3), "calibration": (0.9, 0.1), "done": (1.0, 0.0)}
        base, span = weights.get(stage, (0.0, 0.0))
        self.stage = f"{self.domains[k][0]} – {stage}"
        self.fraction = (k + base + span * frac) / n

    def _run(self) -> None:
        from .continual import EnrollmentError
        from .io import ScanError
        from .store import StoreError

        try:
            for k, (domain, scans, *calibration) in enumerate(self.domains):
                cur = self.store.current()
                model = self.store.load() if cur is not None else self.new_model()
                before = self.store.load() if cur is not None else None
                model.enroll(domain, scans, mode=self.mode, user=self.user, intensity=self.intensity,
                             calibration=calibration[0] if calibration else None,
                             progress=lambda s, f, k=k: self._progress(k, s, f))
                if self._cancel.is_set():
                    raise Cancelled()
                version = self.store.commit(model, action="enroll", message=f"{self.mode} {domain}", user=self.user)
                self.versions.append(version)
                if self.on_commit is not None:
                    self.on_commit(version, domain, before, model)
            self.state, self.fraction, self.stage = "done", 1.0, "done"
        except Cancelled:
            self.state, self.stage = "cancelled", "cancelled: the store is unchanged"
        except (EnrollmentError, ScanError, StoreError, ValueError) as exc:
            self.state, self.error = "failed", str(exc)
        except Exception as exc:  # keep the app alive; the message is shown, the trace kept for the log
            self.state, self.error = "failed", f"{exc.__class__.__name__}: {exc}"
            traceback.print_exc()
        finally:
            self.finished = time.time()
