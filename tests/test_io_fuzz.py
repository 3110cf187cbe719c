"""Seeded mutations of real files: truncation, bit flips, header edits. Bounded here; see benchmarks/fuzz_io.py."""
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.data import get_testdata_file

from core.io import Scan, ScanError, load_scan

SEEDS = {}


def seed_bytes():
    if not SEEDS:
        for name in ("CT_small.dcm", "MR_small.dcm", "emri_small_RLE.dcm", "SC_rgb.dcm", "JPEG2000.dcm"):
            SEEDS[name] = Path(get_testdata_file(name)).read_bytes()
        import io

        import nibabel as nib
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray((np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)).save(buf, "PNG")
        SEEDS["img.png"] = buf.getvalue()
        SEEDS["vol.nii"] = nib.Nifti1Image(np.arange(16 * 16 * 8, dtype=np.float32).reshape(16, 16, 8),
                                           np.eye(4)).to_bytes()
    return SEEDS


def mutate(data: bytes, kind: int, pos: float, value: int, span: int) -> bytes:
    i = int(pos * (len(data) - 1))
    if kind == 0:  # truncate
        return data[:i]
    if kind == 1:  # bit flips around a position
        b = bytearray(data)
        for k in range(span):
            b[(i + k * 7) % len(b)] ^= 1 << (value % 8)
        return bytes(b)
    if kind == 2:  # header edit: overwrite bytes near the start with a value (sizes, VRs, lengths)
        b = bytearray(data)
        j = int(pos * min(len(b) - 4, 1024))
        b[j:j + 4] = int(value).to_bytes(4, "little", signed=False)
        return bytes(b)
    return data[:i] + data[i + span:]  # cut a chunk out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(st.sampled_from(sorted(["CT_small.dcm", "MR_small.dcm", "emri_small_RLE.dcm", "SC_rgb.dcm", "JPEG2000.dcm",
                               "img.png", "vol.nii"])),
       st.integers(0, 3), st.floats(0, 1), st.integers(0, 2 ** 32 - 1), st.integers(1, 64))
def test_mutated_files_load_or_raise_scan_error(name, kind, pos, value, span):
    data = mutate(seed_bytes()[name], kind, pos, value, span)
    try:
        scan = load_scan(data, filename=name)
    except ScanError as exc:
        assert str(exc)
        return
    assert isinstance(scan, Scan)
    assert np.isfinite(scan.model_image).all()
