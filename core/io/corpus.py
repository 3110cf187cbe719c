"""The offline test corpus: every DICOM / NIfTI test file shipped by pydicom, pydicom-data and nibabel."""
from __future__ import annotations

import os
from pathlib import Path

SUFFIXES = (".dcm", ".nii", ".nii.gz", ".ima", "")


def corpus_files() -> list[Path]:
    roots = []
    import pydicom

    roots.append(Path(pydicom.__file__).parent / "data" / "test_files")
    try:
        import data_store  # the pydicom-data package

        roots.append(Path(data_store.__file__).parent / "data")
    except ImportError:
        pass
    try:
        import nibabel

        roots.append(Path(nibabel.__file__).parent / "tests" / "data")
        roots.append(Path(nibabel.__file__).parent / "nicom" / "tests" / "data")
    except ImportError:
        pass
    files = []
    for root in roots:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix in (".py", ".pyc", ".txt", ".json", ".md", ".mat", ".npy", ".npz"):
                continue
            name = p.name.lower()
            if name.endswith((".nii", ".nii.gz", ".dcm", ".ima", ".dicom")) or (p.suffix == "" and
                                                                               os.path.getsize(p) > 132):
                files.append(p)
    return files
