"""Cohort intake for enrolment: a folder, a list of files, or a zip; one bad file never aborts it.

Zip safety is enforced on the bytes actually read, never trusted from headers:
no absolute paths, no '..', no symlinks; caps on the number of files, each
file's size, the total size and each member's compression ratio. Nothing is
extracted to disk: members are read into memory one at a time.
"""
from __future__ import annotations

import io
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .scan import Scan, ScanError

SKIP_NAMES = ("__MACOSX/", "Thumbs.db", "desktop.ini")


@dataclass
class IntakeLimits:
    max_files: int = 20_000
    max_file_bytes: int = 512 << 20
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0  # uncompressed / compressed, per zip member


@dataclass
class IntakeReport:
    accepted: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)     # (file, reason)
    duplicates: list[tuple[str, str]] = field(default_factory=list)  # (file, duplicate of)
    sizes: dict = field(default_factory=dict)                        # "W×H" → count

    def to_dict(self) -> dict:
        return dict(accepted=len(self.accepted), skipped=[dict(file=n, reason=r) for n, r in self.skipped],
                    duplicates=[dict(file=n, duplicate_of=d) for n, d in self.duplicates], sizes=self.sizes)


def _unsafe(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return name.startswith(("/", "\\")) or ".." in p.parts or (p.parts and ":" in p.parts[0])


def _iter_folder(root: Path):
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            yield rel, ScanError(f"{rel}: symbolic links are not followed")
        elif p.is_file() and not p.name.startswith(".") and p.name not in SKIP_NAMES:
            yield rel, p


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limits: IntakeLimits, budget: list[int]) -> bytes:
    out = bytearray()
    with zf.open(info) as f:
        while chunk := f.read(1 << 20):
            out += chunk
            budget[0] -= len(chunk)
            if len(out) > limits.max_file_bytes:
                raise ScanError(f"{info.filename}: larger than the {limits.max_file_bytes >> 20} MB per-file limit")
            if len(out) > (1 << 20) and len(out) > limits.max_ratio * max(info.compress_size, 1):
                raise ScanError(f"{info.filename}: compression ratio over {limits.max_ratio:.0f}:1 "
                                f"(possible zip bomb), skipped")
            if budget[0] < 0:
                raise _TotalExceeded("the zip's total uncompressed size exceeds the limit (possible zip bomb)")
    return bytes(out)


class _TotalExceeded(ScanError):
    pass


def _iter_zip(source, limits: IntakeLimits):
    try:
        zf = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ScanError(f"not a readable zip archive ({exc})") from None
    budget = [limits.max_total_bytes]
    with zf:
        members = [i for i in zf.infolist() if not i.is_dir()]
        if len(members) > limits.max_files:
            raise ScanError(f"the zip holds {len(members)} files, more than the {limits.max_files} limit")
        for info in members:
            n = info.filename
            if _unsafe(n):
                yield n, ScanError(f"{n}: unsafe path in zip (absolute or '..'), skipped")
            elif stat.S_ISLNK(info.external_attr >> 16):
                yield n, ScanError(f"{n}: symbolic link in zip, skipped")
            elif PurePosixPath(n).name.startswith(".") or n.startswith(SKIP_NAMES[0]) or \
                    PurePosixPath(n).name in SKIP_NAMES:
                continue
            else:
                try:
                    yield n, _read_member(zf, info, limits, budget)
                except _TotalExceeded:
                    raise
                except ScanError as exc:
                    yield n, exc
                except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
                    yield n, ScanError(f"{n}: damaged zip member ({exc})")


def load_cohort(source, limits: IntakeLimits | None = None, progress=None) -> tuple[list[Scan], IntakeReport]:
    """Folder, zip (path or bytes), list of files, or a single file → accepted scans and an intake report.

    Multi-frame files and volumes contribute every frame / slice as a scan.
    """
    from . import load_scan

    limits = limits or IntakeLimits()
    if isinstance(source, (list, tuple)):
        entries = ((Path(p).name, Path(p)) for p in source)
    elif isinstance(source, (bytes, bytearray)):
        entries = _iter_zip(bytes(source), limits)
    else:
        path = Path(source)
        if path.is_dir():
            entries = _iter_folder(path)
        elif path.is_file() and zipfile.is_zipfile(path):
            entries = _iter_zip(path, limits)
        elif path.is_file():
            entries = iter([(path.name, path)])
        else:
            raise ScanError(f"{path.name}: no such file or folder")
    scans, report, seen = [], IntakeReport(), {}
    for count, (name, item) in enumerate(entries, 1):
        if count > limits.max_files:
            raise ScanError(f"more than {limits.max_files} files: split the cohort")
        if isinstance(item, ScanError):
            report.skipped.append((name, str(item)))
            continue
        try:
            if isinstance(item, Path) and item.stat().st_size > limits.max_file_bytes:
                raise ScanError(f"{name}: larger than the {limits.max_file_bytes >> 20} MB per-file limit")
            scan = load_scan(item, filename=name)
        except ScanError as exc:
            report.skipped.append((name, str(exc)))
            continue
        for k, s in enumerate(scan.frame(i) for i in range(scan.frames)) if scan.frames > 1 else [(0, scan)]:
            label = f"{name}#{k}" if scan.frames > 1 else name
            digest = s.sha256
            if digest in seen:
                report.duplicates.append((label, seen[digest]))
                continue
            seen[digest] = label
            scans.append(s)
            report.accepted.append(label)
            key = f"{s.shape[1]}×{s.shape[0]}"
            report.sizes[key] = report.sizes.get(key, 0) + 1
        if progress is not None:
            progress(count)
    return scans, report
