"""The model store: a directory of immutable, checksummed model versions.

Layout::

    STORE/
      objects/<sha256>.safetensors   per-domain tensors, content-addressed (shared between versions)
      versions/v000001.json          manifests: config, preprocessing, backbone + weights sha256,
                                     code version, per-domain metadata and calibration
      CURRENT                        the serving version's id, replaced atomically
      .lock                          cross-process lock held while writing

Every file is written to a temporary name, fsynced, then ``os.replace``d, and
CURRENT is switched last: a process killed at any moment leaves the previous
version intact and loadable. Nothing is pickled; faiss indexes are rebuilt
from the safetensors banks. Patient identifiers are never written here (only
pixel hashes).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import platformdirs
from filelock import FileLock
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

from . import __version__
from .bank import MemoryBank
from .calibration import Calibration
from .continual import Domain, PatchCoreCL

STORE_ENV = "PATCHCORECL_STORE"
FORMAT = 1
VERSION_RE = re.compile(r"^v(\d{6})$")


class StoreError(RuntimeError):
    """The store is missing, corrupt, or changed under us."""


class StoreConflict(StoreError):
    """Another writer committed a new version since this model was loaded."""


def default_store_dir() -> Path:
    return Path(os.environ.get(STORE_ENV) or Path(platformdirs.user_data_dir("patchcorecl")) / "store")


def _git_sha() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write, fsync, rename: readers see the old file or the whole new one, never a partial one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ModelStore:
    """Versions of a :class:`PatchCoreCL` model on disk, with rollback."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root is not None else default_store_dir()
        self.objects = self.root / "objects"
        self.version_dir = self.root / "versions"
        self.lock = FileLock(str(self.root / ".lock"), timeout=600)

    def _ensure(self) -> None:
        for p in (self.root, self.objects, self.version_dir):
            p.mkdir(parents=True, exist_ok=True)

    # -- reading ------------------------------------------------------------------
    def current(self) -> str | None:
        try:
            v = (self.root / "CURRENT").read_text().strip()
        except FileNotFoundError:
            return None
        if not VERSION_RE.match(v):
            raise StoreError(f"{self.root}/CURRENT is corrupt ({v!r})")
        return v

    def version_ids(self) -> list[str]:
        if not self.version_dir.exists():
            return []
        return sorted(p.stem for p in self.version_dir.glob("v*.json") if VERSION_RE.match(p.stem))

    def manifest(self, version: str | None = None) -> dict:
        version = version or self.current()
        if version is None:
            raise StoreError(f"the store at {self.root} holds no model yet: enroll a domain first")
        path = self.version_dir / f"{version}.json"
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise StoreError(f"version {version} does not exist") from None
        except json.JSONDecodeError:
            raise StoreError(f"manifest of {version} is corrupt") from None
        body = {k: v for k, v in doc.items() if k != "checksum"}
        if hashlib.sha256(_canonical(body)).hexdigest() != doc.get("checksum"):
            raise StoreError(f"manifest of {version} fails its checksum")
        return doc

    def versions(self) -> list[dict]:
        cur = self.current()
        out = []
        for v in self.version_ids():
            try:
                m = self.manifest(v)
            except StoreError as exc:
                out.append(dict(version=v, error=str(exc)))
                continue
            out.append(dict(version=v, created_at=m["created_at"], action=m["action"], message=m.get("message", ""),
                            user=m.get("user"), parent=m.get("parent"), domains=sorted(m["domains"]),
                            current=v == cur))
        return out

    def _read_object(self, digest: str) -> dict:
        path = self.objects / f"{digest}.safetensors"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(f"object {digest[:12]} is missing from the store") from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"object {digest[:12]} fails its checksum (the store is damaged)")
        return st_load(data)

    def load(self, version: str | None = None, device: str = "auto", **overrides) -> PatchCoreCL:
        """Rebuild the model of ``version`` (default: current), verifying every checksum."""
        m = self.manifest(version)
        params = dict(m["config"]["params"], device=device, **overrides)
        model = PatchCoreCL(**params)
        want = m["config"]["features"]["weights_sha256"]
        if model.extractor.weights_sha256 != want:
            raise StoreError(f"backbone weights differ from the ones this model was enrolled with "
                             f"(sha256 {model.extractor.weights_sha256[:12]} vs {want[:12]})")
        domains = {}
        for name, meta in m["domains"].items():
            t = self._read_object(meta["object"])
            cal = meta["calibration"]
            d = Domain(name=name, coreset=t["coreset"], heldout=t["heldout"], global_embeddings=t["globals"],
                       n_images=meta["n_images"], input_hashes=meta["input_hashes"], enrolled_at=meta["enrolled_at"],
                       enrolled_by=meta.get("enrolled_by"), info=meta.get("info", {}))
            d.calibration = Calibration.fit(cal["normal_scores"], cal["normal_route_dist"], cal["normal_map_max"],
                                            cal["fpr"], cal["ood_fpr"], cal["ood_margin"])
            domains[name] = d
            d.bank = MemoryBank(d.coreset[:meta["bank_size"]], params["index_type"], params["seed"])
        model.domains = domains
        model.version = m["version"]
        return model

    # -- writing ------------------------------------------------------------------
    def _write_object(self, tensors: dict[str, np.ndarray]) -> str:
        data = st_save({k: np.ascontiguousarray(v) for k, v in tensors.items()})
        digest = hashlib.sha256(data).hexdigest()
        path = self.objects / f"{digest}.safetensors"
        if not path.exists():
            atomic_write(path, data)
        return digest

    def _next_id(self) -> str:
        ids = self.version_ids()
        n = int(VERSION_RE.match(ids[-1]).group(1)) + 1 if ids else 1
        return f"v{n:06d}"

    def _write_manifest(self, body: dict) -> str:
        body = dict(body, version=self._next_id(), created_at=_now(), format=FORMAT)
        doc = dict(body, checksum=hashlib.sha256(_canonical(body)).hexdigest())
        atomic_write(self.version_dir / f"{body['version']}.json", json.dumps(doc, indent=1).encode())
        atomic_write(self.root / "CURRENT", (body["version"] + "\n").encode())
        return body["version"]

    def commit(self, model: PatchCoreCL, action: str, message: str = "", user: str | None = None,
               expected_parent: str | None | object = ...) -> str:
        """Write ``model`` as a new version and make it current.

        ``expected_parent`` defaults to the version the model was loaded from; if
        another writer has committed since, :class:`StoreConflict` is raised and
        nothing changes.
        """
        parent = model.version if expected_parent is ... else expected_parent
        self._ensure()
        with self.lock:
            cur = self.current()
            if cur != parent:
                raise StoreConflict(f"the store moved to {cur} since this model was loaded from {parent}; "
                                    f"reload and try again")
            domains = {}
            for name, d in model.domains.items():
                cal = d.calibration
                # calibration changes with every budget split, the tensors don't: keep it in the manifest
                obj = self._write_object(dict(coreset=d.coreset, heldout=d.heldout, globals=d.global_embeddings))
                domains[name] = dict(object=obj, n_images=d.n_images, input_hashes=d.input_hashes,
                                     bank_size=len(d.bank), stored_patches=int(len(d.coreset)),
                                     n_calibration=int(len(d.heldout)), enrolled_at=d.enrolled_at,
                                     enrolled_by=d.enrolled_by, info=d.info,
                                     calibration=dict(cal.summary(), normal_scores=cal.normal_scores.tolist(),
                                                      normal_route_dist=cal.normal_route_dist.tolist(),
                                                      normal_map_max=cal.normal_map_max.tolist()))
            body = dict(parent=cur, action=action, message=message, user=user, config=model.config(),
                        domains=domains, code=dict(package_version=__version__, git_sha=_git_sha()),
                        memory_bytes=model.memory_bytes())
            version = self._write_manifest(body)
        model.version = version
        return version

    def rollback(self, version: str, user: str | None = None) -> str:
        """Make an earlier version current again, as a new version (history stays append-only)."""
        target = self.manifest(version)
        for meta in target["domains"].values():
            self._read_object(meta["object"])  # refuse to roll back onto damaged data
        with self.lock:
            body = {k: v for k, v in target.items() if k not in ("checksum", "version", "created_at", "format")}
            body.update(parent=self.current(), action="rollback", message=f"rollback to {version}", user=user,
                        rolled_back_to=version)
            return self._write_manifest(body)
