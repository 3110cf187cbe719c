"""The continual benchmark: enrol domains in order, score every test set after each step.

Protocol (per step i, after enrolling domains 0..i):
- every enrolled domain's test set is scored *without* its domain label (routing), for
  detection and, where real masks exist, localisation;
- every not-yet-enrolled domain's test set is an unknown-domain probe;
- validation normals are used for calibration only (never for training or metrics).
Features are extracted once per test image and cached (fp16): the backbone is frozen,
so they do not change between steps.

Baselines: ``joint`` (one bank over all domains' training data, same total budget) and
``task_specific`` (one model per domain, each with the full budget, domain given).
"""
from __future__ import annotations

import base64
import json
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import __version__
from .bmad import DomainData, read_benchmark
from .continual import PatchCoreCL
from .io import ScanError, load_scan
from .metrics import aupro, auroc, backward_transfer, f1_max, forgetting

METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1max", "pixel_f1max")
DIFFERENCES_FROM_PUBLISHED = [
    "Scores and maps are never min-max normalised over a test set; thresholds come from validation normals.",
    "Forgetting is the mean over the T−1 earlier tasks (the published code divides by a constant 9).",
    "Pixel metrics are computed only for domains with real masks (the published code invents all-0 / all-1 "
    "masks for image-label datasets and averages them in).",
    "Every split is used as given and all randomness is seeded (the published code subsamples ≤ 2,000 images per "
    "class with an unseeded RNG and moves validation images into train / test).",
]


@dataclass
class _Prepared:
    data: DomainData
    train: list
    valid: list
    test: list            # scans
    labels: np.ndarray
    masks: list           # model-frame boolean masks (None where the dataset has none)


def _load_all(paths, limit: int | None, what: str, skipped: list):
    out = []
    for p in paths[: limit or None]:
        try:
            out.append(load_scan(p))
        except ScanError as exc:
            skipped.append(dict(file=str(p), reason=str(exc), split=what))
    return out


def _limit_samples(samples, limit):
    if not limit:
        return samples
    normal = [s for s in samples if s.label == 0][:limit]
    bad = [s for s in samples if s.label == 1][:limit]
    return normal + bad


def _prepare(d: DomainData, pre, limit: int | None, skipped: list) -> _Prepared:
    test_samples = _limit_samples(d.test, limit)
    valid = [s.path for s in d.valid if s.label == 0]
    test, labels, masks = [], [], []
    for s in test_samples:
        try:
            scan = load_scan(s.path)
        except ScanError as exc:
            skipped.append(dict(file=str(s.path), reason=str(exc), split="test"))
            continue
        mask = None
        if s.mask is not None:
            m = load_scan(s.mask).model_image
            mask = pre.mask((m if m.ndim == 2 else m.mean(axis=2)) > 0.5)
        elif s.label == 0 and d.has_masks:
            mask = np.zeros((pre.size, pre.size), bool)
        test.append(scan)
        labels.append(s.label)
        masks.append(mask)
    return _Prepared(d, _load_all(d.train, limit, "train", skipped), _load_all(valid, limit, "valid", skipped),
                     test, np.asarray(labels), masks)


def _make_model(mode: str, backbone: str | None, budget: int, seed: int, device: str) -> PatchCoreCL:
    if mode == "paper":
        return PatchCoreCL.paper(backbone=backbone or "wide_resnet50_2", budget=budget, seed=seed, device=device)
    return PatchCoreCL(backbone=backbone or "efficientnet_lite0", budget=budget, seed=seed, device=device)


def _detection(model: PatchCoreCL, feats: np.ndarray, prep: _Prepared, domain: str | None, with_pixels: bool):
    """Scores of one test set: routed (domain None) or with the domain given."""
    rows = []
    for f in feats:
        f = f.astype(np.float32)
        if domain is None:
            r = model.score_features({p: f for p in model.pipelines()}, reject_unknown=False)
            rows.append((r.raw_score, r.model_map, r.nearest_domain, r.ood_ratio, r.decision))
        else:
            raw, mmap = model.score_in_domain(f, domain)
            rows.append((raw, mmap, domain, 0.0, None))
    scores = np.array([r[0] for r in rows])
    out = dict(image_auroc=auroc(prep.labels, scores), image_f1max=f1_max(prep.labels, scores))
    if with_pixels and any(m is not None for m in prep.masks):
        idx = [k for k, m in enumerate(prep.masks) if m is not None]
        gts = np.stack([prep.masks[k] for k in idx])
        maps = np.stack([rows[k][1] for k in idx])
        out.update(pixel_auroc=auroc(gts, maps), pixel_f1max=f1_max(gts, maps), aupro=aupro(list(gts), list(maps)))
    else:
        out.update(pixel_auroc=None, pixel_f1max=None, aupro=None)
    return out, scores, rows


def _thumb_png(img: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR) if img.ndim == 3 else img)
    return base64.b64encode(buf.tobytes()).decode()


def evaluate(root, out_dir, order: list[str] | None = None, mode: str = "default", backbone: str | None = None,
             budget: int | None = None, baselines=("joint", "task_specific"), limit_per_split: int | None = None,
             seed: int = 0, device: str = "auto", progress=print) -> dict:
    t_start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    budget = budget or 30_000
    domains = read_benchmark(Path(root), order)
    names = [d.name for d in domains]
    model = _make_model(mode, backbone, budget, seed, device)
    pre = model.preprocessing
    skipped: list = []
    prepared = {d.name: _prepare(d, pre, limit_per_split, skipped) for d in domains}
    for d in domains:
        progress(f"{d.name}: layout {d.layout}, " + ", ".join(f"{k} {v}" for k, v in d.summary().items()
                                                                   if k != "layout"))
    cache = {n: model.features(p.test).astype(np.float16) for n, p in prepared.items()}  # frozen backbone
    t_count = len(names)
    matrix = {m: [[None] * t_count for _ in range(t_count)] for m in METRICS}
    enroll_s, unknown_aurocs, step_scores = [], [], {}
    for i, name in enumerate(names):
        p = prepared[name]
        t = time.perf_counter()
        model.enroll(name, p.train, calibration=p.valid or None)
        enroll_s.append(time.perf_counter() - t)
        progress(f"step {i}: enrolled {name} in {enroll_s[-1]:.1f} s (each bank keeps {model.share} patches)")
        in_ratio, out_ratio = [], []
        for j, other in enumerate(names):
            q = prepared[other]
            if j <= i:
                res, scores, rows = _detection(model, cache[other], q, None, with_pixels=True)
                for m in METRICS:
                    matrix[m][i][j] = res[m]
                in_ratio += [r[3] for r in rows]
                step_scores[other] = (scores, rows)
            else:
                out_ratio += [model.score_features({pp: f.astype(np.float32) for pp in model.pipelines()},
                                                   reject_unknown=False).ood_ratio for f in cache[other]]
        if out_ratio:
            unknown_aurocs.append(auroc([0] * len(in_ratio) + [1] * len(out_ratio), in_ratio + out_ratio))

    # final-step decision quality at the normal-calibrated thresholds
    routed, sens_hits, sens_n, spec_hits, spec_n, unknown = [], 0, 0, 0, 0, 0
    per_domain_final = {}
    for name in names:
        q = prepared[name]
        scores, rows = step_scores[name]
        routed += [r[2] == name for r in rows]
        decisions = [r[4] for r in rows]
        unknown += decisions.count("unknown_domain")
        bad = q.labels == 1
        sens_hits += sum(d == "suspicious" for d, b in zip(decisions, bad) if b)
        sens_n += int(bad.sum())
        spec_hits += sum(d == "normal" for d, b in zip(decisions, bad) if not b)
        spec_n += int((~bad).sum())
        cal = model.domains[name].calibration
        per_domain_final[name] = dict(threshold=cal.threshold, n_calibration=cal.n,
                                      normal_scores=scores[~bad].tolist(), anomalous_scores=scores[bad].tolist())
    final = {m: _mean([v for v in matrix[m][-1] if v is not None]) for m in METRICS}
    final.update(forgetting_image_auroc=_points(forgetting(matrix["image_auroc"])),
                 bwt_image_auroc=_points(backward_transfer(matrix["image_auroc"])),
                 routing_accuracy=float(np.mean(routed)), unknown_domain_auroc=_mean(unknown_aurocs),
                 sensitivity_at_threshold=sens_hits / max(sens_n, 1),
                 specificity_at_threshold=spec_hits / max(spec_n, 1),
                 unknown_domain_rate_on_enrolled=unknown / max(len(routed), 1))

    # timing: full score() (features included) on a sample of the final model's test scans
    sample = [s for n in names for s in prepared[n].test[:max(1, 40 // t_count)]]
    lat = []
    for s in sample:
        t = time.perf_counter()
        model.score(s)
        lat.append(time.perf_counter() - t)

    res = dict(tasks=names, mode=mode, backbone=model.params["backbone"], budget=budget, seed=seed,
               limit_per_split=limit_per_split, layouts={d.name: d.summary() for d in domains},
               matrix=matrix, final=final, unknown_domain_auroc_per_step=unknown_aurocs,
               thresholds={n: dict(threshold=v["threshold"], n_calibration=v["n_calibration"])
                           for n, v in per_domain_final.items()},
               params=model.get_params(), code_version=__version__,
               differences_from_published=DIFFERENCES_FROM_PUBLISHED if mode == "paper" else [],
               skipped_files=skipped)
    res["baselines"] = _baselines(baselines, mode, backbone, budget, seed, device, prepared, cache, names, progress)
    res["timing"] = dict(enroll_seconds_per_step=enroll_s, score_ms_p50=float(np.percentile(lat, 50) * 1e3),
                         score_ms_p95=float(np.percentile(lat, 95) * 1e3), n_timed=len(lat),
                         total_seconds=time.perf_counter() - t_start)
    res["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    (out_dir / "results.json").write_text(json.dumps(res, indent=1))
    examples = _examples(model, prepared, names)
    from .report import write_reports

    write_reports(out_dir, res, per_domain_final, examples)
    progress(f"wrote {out_dir / 'results.json'}, report.md, report.html")
    return res


def _mean(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _points(v):
    return None if v is None else 100.0 * v  # AUROC points


def _baselines(which, mode, backbone, budget, seed, device, prepared, cache, names, progress) -> dict:
    out = {}
    which = [w for w in (which or []) if w]
    if "joint" in which:
        t = time.perf_counter()
        joint = _make_model(mode, backbone, budget, seed, device)
        joint.enroll("joint", [s for n in names for s in prepared[n].train],
                     calibration=[s for n in names for s in prepared[n].valid] or None)
        per = {n: _detection(joint, cache[n], prepared[n], "joint", True)[0] for n in names}
        out["joint"] = dict(per_domain=per, enroll_seconds=time.perf_counter() - t,
                            **{m: _mean([per[n][m] for n in names]) for m in METRICS})
        progress(f"baseline joint: image AUROC {out['joint']['image_auroc']:.3f}")
    if "task_specific" in which:
        per, t = {}, time.perf_counter()
        for n in names:
            single = _make_model(mode, backbone, budget, seed, device)
            single.enroll(n, prepared[n].train, calibration=prepared[n].valid or None)
            per[n] = _detection(single, cache[n], prepared[n], n, True)[0]
        out["task_specific"] = dict(per_domain=per, enroll_seconds=time.perf_counter() - t,
                                    **{m: _mean([per[n][m] for n in names]) for m in METRICS})
        progress(f"baseline task_specific: image AUROC {out['task_specific']['image_auroc']:.3f}")
    return out


def _examples(model: PatchCoreCL, prepared, names, per_domain: int = 2) -> list[dict]:
    from .overlay import overlay

    out = []
    for n in names:
        q = prepared[n]
        bad = [k for k, y in enumerate(q.labels) if y == 1][:per_domain]
        for k in bad:
            r = model.score(q.test[k])
            if r.anomaly_map is None:
                continue
            out.append(dict(domain=n, decision=r.decision, score=r.calibrated_score,
                            png=_thumb_png(overlay(q.test[k].display, r.anomaly_map, r.map_threshold))))
    return out
