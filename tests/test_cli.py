import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args, store):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.run([sys.executable, "-m", "core", "--store", str(store), *map(str, args)], env=env,
                       capture_output=True, text=True, timeout=600)
    return p.returncode, p.stdout, p.stderr


def test_cli_end_to_end(tmp_path, demo_root):
    store = tmp_path / "store"
    brain = demo_root / "brain" / "train" / "good"
    code, out, err = run("enroll", "brain", brain, "--budget", "3000", store=store)
    assert code == 0, err
    assert json.loads(out.splitlines()[-1])["version"] == "v000001"
    assert "features" in err and "100%" in err  # progress
    code, out, err = run("enroll", "brain", brain, store=store)
    assert code == 2 and "already enrolled" in err and "Traceback" not in err
    code, out, _ = run("enroll", "chest", demo_root / "chest" / "train" / "good", store=store)
    assert code == 0
    rows = [json.loads(x) for x in run("domains", store=store)[1].splitlines()]
    assert [r["domain"] for r in rows] == ["brain", "chest"] and rows[0]["bank_size"] == 1500

    bad = sorted((demo_root / "chest" / "test" / "Ungood" / "img").glob("*.png"))[:2]
    junk = tmp_path / "junk.png"
    junk.write_text("nope")
    code, out, _ = run("score", *bad, junk, "--heatmaps", tmp_path / "hm", store=store)
    assert code == 0
    results = [json.loads(x) for x in out.splitlines()]
    assert [r.get("domain") for r in results[:2]] == ["chest", "chest"]
    assert "error" in results[2] and "junk.png" in results[2]["error"]
    assert all(Path(r["heatmap"]).stat().st_size > 1000 for r in results[:2])

    versions = [json.loads(x) for x in run("versions", store=store)[1].splitlines()]
    assert [v["version"] for v in versions] == ["v000001", "v000002"]
    assert run("rollback", "v000001", store=store)[0] == 0
    assert [json.loads(x)["domain"] for x in run("domains", store=store)[1].splitlines()] == ["brain"]
    code, out, err = run("remove", "chest", store=store)
    assert code == 2 and "not enrolled" in err
    code, _, err = run("rollback", "v000009", store=store)
    assert code == 2 and "does not exist" in err


def test_cli_empty_folder_changes_nothing(tmp_path):
    store = tmp_path / "store"
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run("enroll", "brain", empty, store=store)
    assert code == 2 and "no usable scan" in err
    assert not (store / "CURRENT").exists()


def test_help_everywhere():
    for cmd in ([], ["enroll"], ["score"], ["rollback"], ["make-demo"]):
        p = subprocess.run([sys.executable, "-m", "core", *cmd, "--help"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        assert p.returncode == 0 and "usage" in p.stdout
