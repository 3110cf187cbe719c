import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from core import PatchCoreCL
from core.store import ModelStore, StoreConflict, StoreError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def stored(tmp_path_factory, demo_root):
    from tests.conftest import pngs

    store = ModelStore(tmp_path_factory.mktemp("store"))
    model = PatchCoreCL(budget=3000)
    model.enroll("brain", pngs(demo_root, "brain", "train/good")[:6], user="alice")
    v1 = store.commit(model, action="enroll", message="brain", user="alice")
    model.enroll("chest", pngs(demo_root, "chest", "train/good")[:6], user="alice")
    v2 = store.commit(model, action="enroll", message="chest", user="alice")
    return store, model, v1, v2


def test_roundtrip_gives_identical_scores(stored, demo_files):
    store, model, _, v2 = stored
    loaded = store.load()
    assert loaded.version == v2 == store.current()
    for path in demo_files("chest", "test/Ungood/img")[:2] + demo_files("brain", "test/good")[:2]:
        a, b = model.score(path), loaded.score(path)
        assert (a.decision, a.domain, a.raw_score, a.threshold) == (b.decision, b.domain, b.raw_score, b.threshold)
        np.testing.assert_array_equal(a.anomaly_map, b.anomaly_map)


def test_manifest_records_config_and_no_phi(stored):
    store, model, _, v2 = stored
    m = store.manifest(v2)
    assert m["config"]["params"] == model.get_params()
    assert m["config"]["preprocessing"]["mean"] == [0.5, 0.5, 0.5]
    assert len(m["config"]["features"]["weights_sha256"]) == 64
    assert m["code"]["package_version"]
    brain = m["domains"]["brain"]
    assert brain["bank_size"] == 1500 and brain["n_images"] == 6 and brain["enrolled_by"] == "alice"
    assert all(len(h) == 64 for h in brain["input_hashes"])
    assert ".png" not in json.dumps(m)  # file names can carry patient names: never stored


def test_store_holds_no_pickle(stored):
    store, *_ = stored
    files = [p for p in store.root.rglob("*") if p.is_file()]
    assert files
    for p in files:
        assert p.suffix in (".json", ".safetensors", "") and p.name in (p.name,)
        assert not p.read_bytes().startswith(b"\x80")  # pickle protocol header


def test_unchanged_domains_share_objects(stored):
    store, _, v1, v2 = stored
    assert store.manifest(v1)["domains"]["brain"]["object"] == store.manifest(v2)["domains"]["brain"]["object"]


def test_rollback_is_a_new_version(stored, demo_files):
    store, model, v1, v2 = stored
    v3 = store.rollback(v1, user="bob")
    assert store.current() == v3 and list(store.load().domains) == ["brain"]
    versions = store.versions()
    assert [v["version"] for v in versions] == [v1, v2, v3] and versions[-1]["action"] == "rollback"
    v4 = store.rollback(v2)
    assert sorted(store.load().domains) == ["brain", "chest"] and store.current() == v4
    model.version = v4


def test_conflicting_writers_are_refused(stored):
    store, model, *_ = stored
    stale = store.load()
    fresh = store.load()
    store.commit(fresh, action="noop")
    with pytest.raises(StoreConflict):
        store.commit(stale, action="noop")
    model.version = store.current()


def test_corruption_is_detected(tmp_path, stored):
    import shutil

    store, *_ = stored
    copy = ModelStore(shutil.copytree(store.root, tmp_path / "copy"))
    obj = next(copy.objects.glob("*.safetensors"))
    data = bytearray(obj.read_bytes())
    data[-5] ^= 0xFF
    obj.write_bytes(bytes(data))
    with pytest.raises(StoreError, match="checksum"):
        for v in copy.version_ids():
            copy.load(v)
    mf = copy.version_dir / f"{copy.current()}.json"
    mf.write_text(mf.read_text().replace('"brain"', '"brajn"'))
    with pytest.raises(StoreError, match="checksum"):
        copy.manifest()


def test_empty_store_message(tmp_path):
    with pytest.raises(StoreError, match="no model yet"):
        ModelStore(tmp_path / "none").load()


def test_sigkill_during_enrolment_leaves_previous_version_intact(tmp_path, demo_root):
    """A real subprocess enrols and commits in a loop; SIGKILL it at several moments."""
    store_dir = tmp_path / "store"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    brain = demo_root / "brain" / "train" / "good"
    chest = demo_root / "chest" / "train" / "good"
    base = [sys.executable, "-m", "core", "--store", str(store_dir)]
    subprocess.run(base + ["enroll", "brain", str(brain), "--budget", "2000"], env=env, check=True,
                   capture_output=True)
    store = ModelStore(store_dir)
    good = store.current()
    reference = store.load().score(next(brain.glob("*.png"))).raw_score
    loop = ("import sys; from core.store import ModelStore; s = ModelStore(sys.argv[1]); from pathlib import Path\n"
            "for i in range(1000):\n"
            "    m = s.load(); m.enroll('chest', sys.argv[2], mode='replace' if 'chest' in m.domains else 'new')\n"
            "    s.commit(m, action='enroll')\n")
    for delay in (0.5, 2.0, 4.0, 6.5, 9.0):
        proc = subprocess.Popen([sys.executable, "-c", loop, str(store_dir), str(chest)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        cur = store.current()
        model = store.load()  # whatever is current must load and verify
        assert cur in store.version_ids() and cur >= good  # never points back or at a half-written version
        assert model.version == cur
        assert store.load(good).version == good  # the version before the kill is intact
        for v in store.version_ids():  # no version was damaged
            store.manifest(v)
        good = cur
    assert store.load(store.version_ids()[0]).score(next(brain.glob("*.png"))).raw_score == reference
