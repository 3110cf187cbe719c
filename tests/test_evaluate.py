import json

from core.cli import main
from core.metrics import forgetting


def test_evaluate_contract_on_a_tiny_benchmark(tmp_path, demo_root):
    out = tmp_path / "eval"
    code = main(["evaluate", str(demo_root), "--out", str(out), "--order", "brain,chest,histology",
                 "--budget", "6000", "--limit-per-split", "6"])
    assert code == 0
    res = json.loads((out / "results.json").read_text())
    assert res["tasks"] == ["brain", "chest", "histology"]
    assert res["mode"] == "default" and res["backbone"] == "efficientnet_lite0" and res["budget"] == 6000
    assert res["seed"] == 0
    for m in ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max"):
        mat = res["matrix"][m]
        assert len(mat) == 3 and all(len(r) == 3 for r in mat)
        assert all(mat[i][j] is None for i in range(3) for j in range(3) if j > i)
        assert all(mat[i][j] is not None and 0 <= mat[i][j] <= 1 for i in range(3) for j in range(3) if j <= i)
    f = res["final"]
    for k in ("forgetting_image_auroc", "bwt_image_auroc", "routing_accuracy", "unknown_domain_auroc",
              "sensitivity_at_threshold", "specificity_at_threshold"):
        assert f[k] is not None, k
    assert f["forgetting_image_auroc"] == 100 * forgetting(res["matrix"]["image_auroc"])
    assert f["routing_accuracy"] > 0.9 and f["unknown_domain_auroc"] > 0.9
    assert len(res["unknown_domain_auroc_per_step"]) == 2  # steps with a not-yet-enrolled domain
    for b in ("joint", "task_specific"):
        assert 0 <= res["baselines"][b]["image_auroc"] <= 1
    assert len(res["timing"]["enroll_seconds_per_step"]) == 3 and res["timing"]["score_ms_p50"] > 0
    assert res["peak_rss_mb"] > 0
    assert res["layouts"]["brain"]["layout"] == "brain" and res["layouts"]["brain"]["pixel_masks"]
    md = (out / "report.md").read_text()
    assert "Accuracy matrices" in md and "routing accuracy" in md
    page = (out / "report.html").read_text()
    assert "plotly" in page.lower() and "data:image/png;base64" in page


def test_paper_mode_without_weights_is_a_clear_error(tmp_path, demo_root, capsys, monkeypatch):
    import core.features as features

    monkeypatch.setattr(features, "create_backbone", _offline(features.create_backbone))
    code = main(["evaluate", str(demo_root), "--out", str(tmp_path), "--mode", "paper", "--limit-per-split", "2"])
    assert code == 2
    err = capsys.readouterr().err
    assert "wide_resnet50_2" in err and "weights file" in err


def _offline(create):
    def create_offline(spec, weights=None, features_only=True, allow_download=True):
        return create(spec, weights, features_only, allow_download=False)  # no network in tests, ever
    return create_offline
