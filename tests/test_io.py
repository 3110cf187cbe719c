import json
import os
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.data import get_testdata_file

from core.io import IntakeLimits, ScanError, load_cohort, load_scan
from core.io.corpus import corpus_files

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def sane(scan):
    m = scan.model_image
    assert m.dtype == np.float32 and np.isfinite(m).all() and 0 <= m.min() and m.max() <= 1
    assert scan.display.dtype == np.uint8 and scan.display.shape[:2] == m.shape[:2]
    if np.nanstd(scan.pixels) > 0:
        assert scan.display.std() > 0, scan.name


def test_every_corpus_file_loads_sanely_or_is_refused_clearly():
    files = corpus_files()
    assert len(files) > 200
    counts, refused = Counter(), Counter()
    for f in files:
        try:
            sane(load_scan(f))
            counts["loaded"] += 1
        except ScanError as exc:  # anything else escaping fails the test
            counts["refused"] += 1
            assert str(exc).startswith(f.name), exc
            refused[str(exc).split(": ", 1)[1].split(" (")[0][:70]] += 1
    assert counts["loaded"] >= 150
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "io_corpus.json").write_text(json.dumps(dict(files=len(files), **counts, refused_by_reason=refused),
                                                         indent=1))


def test_ct_hounsfield_units_match_an_independent_decode():
    path = get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    raw = np.frombuffer(ds.PixelData, dtype="<i2" if ds.PixelRepresentation else "<u2").reshape(ds.Rows, ds.Columns)
    scan = load_scan(path)
    for y, x in [(0, 0), (64, 64), (100, 27), (127, 127)]:
        assert scan.pixels[y, x] == raw[y, x] * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert scan.metadata["modality"] == "CT" and scan.metadata["units"] == "HU"


def _mono1_file(tmp_path):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName, ds.PatientID = "CR", "Doe^Jane", "12345"
    ds.Rows = ds.Columns = 32
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME1"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    img = np.tile(np.arange(32, dtype=np.uint16) * 100, (32, 1))
    ds.PixelData = img.tobytes()
    path = tmp_path / "mono1.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_is_inverted_and_phi_kept_apart(tmp_path):
    scan = load_scan(_mono1_file(tmp_path))
    assert scan.model_image[0, 0] > 0.99 and scan.model_image[0, -1] < 0.01  # low raw value = bright
    assert scan.phi["PatientName"] == "Doe^Jane"
    assert "Doe" not in repr(scan) and "Doe" not in json.dumps(scan.metadata)


def test_multiframe_and_frame_selection():
    scan = load_scan(get_testdata_file("emri_small.dcm"))
    assert scan.frames == 10 and scan.pixels.shape == (10, 64, 64)
    other = scan.frame(2)
    assert other.frame_index == 2 and not np.array_equal(other.model_image, scan.model_image)
    with pytest.raises(ScanError):
        scan.frame(10)
    enhanced = load_scan(get_testdata_file("eCT_Supplemental.dcm"))
    assert enhanced.frames == 2
    sane(enhanced)


@pytest.mark.parametrize("compressed,reference", [
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),                           # JPEG 2000 lossless
    ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),      # JPEG-LS
    ("emri_small_RLE.dcm", "emri_small.dcm"),                   # RLE
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
    ("JPEG2000.dcm", "JPEG2000_UNC.dcm"),
    ("SC_rgb_rle.dcm", "SC_rgb.dcm"),
    ("MR_small_jpeg_ls_lossless.dcm", "MR_small.dcm"),
])
def test_compressed_transfer_syntaxes_decode_losslessly(compressed, reference):
    a, b = load_scan(get_testdata_file(compressed)), load_scan(get_testdata_file(reference))
    np.testing.assert_array_equal(a.pixels, b.pixels)


def test_jpeg_lossless_decodes():
    for name in ("JPEG-LL.dcm", "JPGLosslessP14SV1_1s_1f_8b.dcm"):
        sane(load_scan(get_testdata_file(name)))


def test_colour_dicoms():
    palette = load_scan(get_testdata_file("OBXXXX1A.dcm"))
    assert palette.model_image.shape == (600, 800, 3)
    ybr = load_scan(get_testdata_file("SC_ybr_full_uncompressed.dcm"))
    rgb = load_scan(get_testdata_file("SC_rgb.dcm"))
    assert np.abs(ybr.model_image - rgb.model_image).mean() < 0.02
    baseline = load_scan(get_testdata_file("color3d_jpeg_baseline.dcm"))
    assert baseline.frames == 120 and baseline.model_image.shape == (480, 640, 3)


def test_window_presets_and_pipelines(tmp_path):
    ct = load_scan(get_testdata_file("CT_small.dcm"))
    lung = ct.with_intensity("preset:lung")
    assert lung.intensity == "preset:lung" and not lung.intensity_fallback
    assert not np.array_equal(lung.model_image, ct.with_intensity("preset:bone").model_image)
    custom = ct.with_intensity("window:40/400")
    assert 0 <= custom.model_image.min() and custom.model_image.max() <= 1
    png = tmp_path / "x.png"
    Image.fromarray((np.random.default_rng(0).random((40, 40)) * 255).astype(np.uint8)).save(png)
    assert load_scan(png).with_intensity("preset:lung").intensity_fallback  # no HU in a PNG
    with pytest.raises(ValueError):
        ct.with_intensity("preset:nonsense")


def test_nifti_volumes_are_canonical_slices(tmp_path):
    import nibabel as nib

    vol = np.zeros((20, 24, 16), np.float32)
    vol[5:15, 6:18, 3:13] = np.random.default_rng(0).random((10, 12, 10)) + 1
    flipped = nib.Nifti1Image(vol[::-1], np.diag([-2.0, 2.0, 3.0, 1.0]))  # LAS on disk
    path = tmp_path / "v.nii.gz"
    nib.save(flipped, path)
    scan = load_scan(path)
    assert scan.frames == 16 and scan.frame_index == 8
    ras = nib.as_closest_canonical(flipped).get_fdata()
    np.testing.assert_allclose(scan.pixels[8], np.rot90(ras[:, :, 8]), rtol=1e-6)
    assert scan.metadata["pixel_spacing"] == [2.0, 2.0]
    example = Path(nib.__file__).parent / "tests" / "data" / "example4d.nii.gz"
    sane(load_scan(example))


def test_image_variants(tmp_path):
    rng = np.random.default_rng(0)
    grey = (rng.random((60, 40)) * 255).astype(np.uint8)
    Image.fromarray(grey.astype(np.uint16) * 200).save(tmp_path / "g16.png")
    s16 = load_scan(tmp_path / "g16.png")
    assert s16.metadata["bit_depth"] == 16 and s16.model_image.max() == 1.0
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 128)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert load_scan(tmp_path / "a.png").model_image.ndim == 2  # grey content, composited
    img = Image.fromarray(np.dstack([grey, grey // 2, grey // 3]))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90° clockwise
    img.save(tmp_path / "rot.jpg", exif=exif)
    assert load_scan(tmp_path / "rot.jpg").shape == (40, 60)
    Image.fromarray(grey).save(tmp_path / "g.tiff")
    Image.fromarray(grey).save(tmp_path / "g.bmp")
    assert load_scan(tmp_path / "g.tiff").sha256 == load_scan(tmp_path / "g.bmp").sha256


@pytest.mark.parametrize("data,match", [(b"", "empty"), (b"hello world" * 20, "not a DICOM or image"),
                                        (b"\x89PNG\r\n\x1a\n" + b"\0" * 40, "not a DICOM or image")])
def test_bad_bytes(data, match):
    with pytest.raises(ScanError, match=match):
        load_scan(data, filename="f.png")


def _huge_png_header() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + \
        chunk(b"IEND", b"")


def test_absurd_header_is_refused_before_decoding():
    with pytest.raises(ScanError, match="limit"):
        load_scan(_huge_png_header(), filename="huge.png")


def test_zip_intake_is_safe(tmp_path, demo_files):
    good = demo_files("brain", "train/good")[:3]
    zpath = tmp_path / "work" / "cohort.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as z:
        for p in good:
            z.write(p, f"scans/{p.name}")
        z.write(good[0], "scans/copy_of_first.png")
        z.writestr("../evil.png", good[0].read_bytes())
        z.writestr("/abs.png", good[0].read_bytes())
        link = zipfile.ZipInfo("scans/link.png")
        link.external_attr = (0o120777 << 16)
        z.writestr(link, "/etc/passwd")
        z.writestr("bomb.png", b"\0" * (60 << 20))
        z.writestr("notes.txt", "hello")
        z.writestr("huge.png", _huge_png_header())
    before = set(os.listdir(tmp_path))
    scans, report = load_cohort(zpath)
    assert len(scans) == 3 and len(report.accepted) == 3
    reasons = dict(report.skipped)
    assert "unsafe path" in reasons["../evil.png"] and "unsafe path" in reasons["/abs.png"]
    assert "symbolic link" in reasons["scans/link.png"]
    assert "zip bomb" in reasons["bomb.png"]
    assert "not a DICOM or image" in reasons["notes.txt"] and "limit" in reasons["huge.png"]
    assert report.duplicates == [("scans/copy_of_first.png", f"scans/{good[0].name}")]
    assert set(os.listdir(tmp_path)) == before and os.listdir(zpath.parent) == ["cohort.zip"]
    with pytest.raises(ScanError, match="total uncompressed"):
        load_cohort(zpath, limits=IntakeLimits(max_total_bytes=200_000))
    with pytest.raises(ScanError, match="more than"):
        load_cohort(zpath, limits=IntakeLimits(max_files=3))


def test_folder_intake_reports_every_skip(tmp_path, demo_files):
    for p in demo_files("chest", "train/good")[:2]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken.dcm").write_bytes(b"DICM" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mr.dcm").write_bytes(Path(get_testdata_file("MR_small.dcm")).read_bytes())
    (tmp_path / "volume.dcm").write_bytes(Path(get_testdata_file("emri_small.dcm")).read_bytes())
    scans, report = load_cohort(tmp_path)
    assert len(scans) == 2 + 1 + 10  # a multi-frame file contributes every frame
    assert [n for n, _ in report.skipped] == ["broken.dcm"]
    assert report.to_dict()["accepted"] == 13
    with pytest.raises(ScanError, match="no such"):
        load_cohort(tmp_path / "missing")
