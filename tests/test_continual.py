"""End to end on real images: MNI152 brain slices and a CR chest radiograph, with synthetic lesions."""
import numpy as np
import pytest

from core import EnrollmentError, PatchCoreCL, ScanError


def test_anomalies_score_higher_and_routing_is_right(two_domain_model, demo_files, auroc):
    model, _ = two_domain_model
    for domain in ("brain", "chest"):
        assert auroc(model, domain) > 0.7, domain
        files = demo_files(domain, "test/good") + demo_files(domain, "test/Ungood/img")
        results = model.score_many(files, with_map=False)
        routed = [r.nearest_domain for r in results]
        assert routed.count(domain) == len(files), (domain, routed)


def test_no_forgetting_of_the_first_domain(two_domain_model, auroc):
    model, before = two_domain_model
    # the brain bank shrank from 12k to 6k patches when chest arrived
    assert len(model.domains["brain"].bank) == 6000 < len(model.domains["brain"].coreset)
    assert auroc(model, "brain") >= before["brain"] - 0.02


def test_result_object(two_domain_model, demo_files):
    model, _ = two_domain_model
    path = demo_files("brain", "test/Ungood/img")[0]
    r = model.score(path)
    assert r.decision in ("normal", "suspicious") and r.domain == "brain"
    assert r.anomaly_map.shape == (224, 224) and np.isfinite(r.anomaly_map).all()
    assert 0 <= r.routing_confidence <= 1
    assert r.calibrated_score == pytest.approx(r.raw_score / r.threshold)
    assert set(r.timings_ms) >= {"features", "route", "score", "total"}
    d = r.to_dict()
    assert "anomaly_map" not in d and d["message"]


def test_heatmap_peaks_at_the_lesion(two_domain_model, demo_root, demo_files):
    import cv2

    model, _ = two_domain_model
    hits = 0
    bad = demo_files("chest", "test/Ungood/img")
    for path in bad:
        mask = cv2.imread(str(demo_root / "chest/test/Ungood/label" / path.name), cv2.IMREAD_GRAYSCALE) > 0
        amap = model.score(path).anomaly_map
        y, x = np.unravel_index(np.argmax(amap), amap.shape)
        ys, xs = np.nonzero(mask)
        hits += np.hypot(ys - y, xs - x).min() < 20
    assert hits >= len(bad) * 0.6


def test_same_input_same_score(two_domain_model, demo_files):
    model, _ = two_domain_model
    path = demo_files("chest", "test/good")[0]
    assert model.score(path).raw_score == model.score(path).raw_score


def test_unknown_domain_for_an_unenrolled_modality(two_domain_model, demo_files):
    model, _ = two_domain_model
    results = model.score_many(demo_files("histology", "test/good"), with_map=False)
    assert all(r.decision == "unknown_domain" and r.raw_score is None for r in results)
    assert "enroll it first" in results[0].message


def test_held_out_normals_set_the_threshold(two_domain_model):
    model, _ = two_domain_model
    for d in model.domains.values():
        cal = d.calibration
        assert cal.n == len(d.heldout) >= 1
        assert (cal.normal_scores > cal.threshold).mean() <= cal.fpr + 1e-9


def test_enrolment_is_order_independent(demo_files):
    files = demo_files("brain", "train/good")[:8]
    a = PatchCoreCL(budget=3000)
    b = PatchCoreCL(budget=3000)
    a.enroll("brain", files)
    b.enroll("brain", files[::-1])
    assert np.array_equal(a.domains["brain"].coreset, b.domains["brain"].coreset)
    assert a.domains["brain"].calibration.threshold == b.domains["brain"].calibration.threshold


def _snapshot(model):
    return {n: (len(d.bank), d.coreset.copy(), d.calibration.threshold) for n, d in model.domains.items()}


def _same(a, b):
    return a.keys() == b.keys() and all(a[k][0] == b[k][0] and np.array_equal(a[k][1], b[k][1]) and
                                        a[k][2] == b[k][2] for k in a)


@pytest.fixture(scope="module")
def small_model(demo_root):
    from tests.conftest import pngs

    model = PatchCoreCL(budget=4000)
    model.enroll("brain", pngs(demo_root, "brain", "train/good")[:6])
    return model


@pytest.mark.parametrize("bad", ["empty", "duplicate", "one_image", "bad_name", "non_images", "bad_mode"])
def test_bad_enrolments_change_nothing(small_model, demo_files, tmp_path, bad):
    before = _snapshot(small_model)
    files = demo_files("chest", "train/good")[:4]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    cases = {"empty": lambda: small_model.enroll("chest", []),
             "duplicate": lambda: small_model.enroll("brain", files),
             "one_image": lambda: small_model.enroll("chest", files[:1] * 3),
             "bad_name": lambda: small_model.enroll("../etc", files),
             "non_images": lambda: small_model.enroll("chest", tmp_path),
             "bad_mode": lambda: small_model.enroll("chest", files, mode="merge")}
    with pytest.raises((EnrollmentError, ScanError)) as err:
        cases[bad]()
    assert str(err.value)
    assert _same(before, _snapshot(small_model))


def test_budget_smaller_than_domain_count(demo_files):
    model = PatchCoreCL(budget=1)
    model.enroll("brain", demo_files("brain", "train/good")[:3])
    with pytest.raises(EnrollmentError, match="budget"):
        model.enroll("chest", demo_files("chest", "train/good")[:3])
    assert list(model.domains) == ["brain"]


def test_mixed_sizes_16bit_and_rgba_are_handled(tmp_path, demo_files):
    from PIL import Image

    src = [np.asarray(Image.open(p)) for p in demo_files("brain", "train/good")[:4]]
    Image.fromarray(src[0]).resize((180, 200)).save(tmp_path / "a_small.png")
    Image.fromarray((src[1].astype(np.uint16) * 257)).save(tmp_path / "b_16bit.png")
    rgba = np.dstack([src[2]] * 3 + [np.full_like(src[2], 255)])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "c_rgba.png")
    Image.fromarray(src[3]).save(tmp_path / "d.png")
    model = PatchCoreCL(budget=2000)
    model.enroll("brain", tmp_path)
    assert model.domains["brain"].n_images == 4
    r = model.score(tmp_path / "a_small.png")
    assert r.anomaly_map.shape == (200, 180)


def test_extend_replace_remove(demo_files):
    model = PatchCoreCL(budget=4000)
    brain = demo_files("brain", "train/good")
    model.enroll("brain", brain[:5])
    model.enroll("chest", demo_files("chest", "train/good")[:5])
    assert model.share == 2000
    model.enroll("brain", brain[5:8], mode="extend")
    assert model.domains["brain"].n_images == 8
    with pytest.raises(EnrollmentError, match="already part"):
        model.enroll("brain", brain[5:8], mode="extend")
    model.enroll("brain", brain[10:14], mode="replace")
    assert model.domains["brain"].n_images == 4
    model.remove("chest")
    assert list(model.domains) == ["brain"] and model.share == 4000
    assert len(model.domains["brain"].bank) == min(4000, len(model.domains["brain"].coreset))
    with pytest.raises(KeyError):
        model.remove("chest")


def test_progress_is_reported(demo_files):
    seen = []
    PatchCoreCL(budget=1000).enroll("brain", demo_files("brain", "train/good")[:4],
                                    progress=lambda stage, frac: seen.append((stage, frac)))
    stages = [s for s, _ in seen]
    assert stages[0] == "features" and stages[-1] == "done" and "coreset" in stages
    assert all(0 <= f <= 1 for _, f in seen)


def test_metadata_hint_routes_directly(demo_files):
    from core.io import load_scan

    model = PatchCoreCL(budget=2000, route_hints={"MR": "brain"})
    model.enroll("brain", demo_files("brain", "train/good")[:4])
    model.enroll("chest", demo_files("chest", "train/good")[:4])
    scan = load_scan(demo_files("brain", "test/good")[0])
    scan.metadata["modality"] = "MR"
    r = model.score(scan)
    assert r.routed_by == "metadata" and r.domain == "brain"


def test_per_domain_intensity_pipeline_is_recorded_and_reused():
    from pydicom.data import get_testdata_file

    from core.io import load_scan

    ct = [get_testdata_file(n) for n in ("CT_small.dcm", "693_UNCR.dcm", "693_UNCI.dcm")]
    model = PatchCoreCL(budget=2000)
    with pytest.raises(EnrollmentError, match="preset"):
        model.enroll("ct", ct, intensity="preset:nonsense")
    model.enroll("ct", ct, intensity="preset:brain")
    assert model.domains["ct"].info["intensity"] == "preset:brain"
    scan = load_scan(ct[0])
    windowed = model.features([scan.with_intensity("preset:brain")])[0]
    # scoring the raw scan goes through the domain's recorded window, not the file's default
    assert model.route(windowed)[2]["ct"] == pytest.approx(model.score(scan).route_distances["ct"], rel=1e-5)
