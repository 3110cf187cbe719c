"""Core engine benchmark: ours next to a straightforward reference, in one process.

Reports (JSON): enrolment images/s, scoring ms/image p50/p95 at 1, 3 and 6
domains with a 30k total budget, coreset seconds against N, peak RSS, faiss
recall against exact search, and the machine and settings.

The reference is written the way the published code does it: batch 1, fp32,
``torch.cdist`` against every bank for routing, the re-weighted image score,
and a naive k-center loop (``torch.linalg.norm`` over all raw features each
step).

    python benchmarks/bench_core.py --out benchmarks/results/bench_core.json
    python benchmarks/bench_core.py --quick        # a smaller run (minutes)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core import PatchCoreCL  # noqa: E402
from core.bank import MemoryBank  # noqa: E402
from core.coreset import greedy_coreset, naive_greedy_coreset  # noqa: E402
from core.demo import DOMAINS, _Source, add_lesion, vary  # noqa: E402
from core.scoring import reweighted_max  # noqa: E402


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), torch=torch.__version__, torch_threads=torch.get_num_threads(),
                cuda=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                python=platform.python_version(), platform=platform.platform())


def images(domain: str, n: int, seed: int, lesions: bool = False):
    rng = np.random.default_rng([seed, DOMAINS.index(domain)])
    src = _Source(domain, 224)
    out = []
    for _ in range(n):
        img = vary(src.sample(rng), rng)
        out.append(add_lesion(img, rng)[0] if lesions else img)
    return out


def pct(values, q):
    return float(np.percentile(np.asarray(values) * 1e3, q))


def reference_score(model: PatchCoreCL, img) -> tuple[str, float]:
    """Batch 1, fp32, torch.cdist against every bank, route by mean NN distance, re-weighted score."""
    x = model.preprocessing(img)[None]
    feats = model.extractor._embed(x, "fp32")[0].cpu()
    best = None
    for name, dom in model.domains.items():
        bank = torch.from_numpy(dom.bank.patches)
        d = torch.cdist(feats, bank)
        nn_dist, nn_idx = d.min(dim=1)
        mean = float(nn_dist.mean())
        if best is None or mean < best[0]:
            best = (mean, name, nn_dist.numpy(), nn_idx.numpy(), dom.bank)
    _, name, nn_dist, nn_idx, bank = best
    return name, reweighted_max(feats.numpy(), nn_dist, nn_idx, bank, 3)


def auroc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def bench_scoring(model, domains, tests, n_timed, out):
    names = list(model.domains)
    timed = [img for d in names for img in tests[d][0][: max(1, n_timed // len(names))]]
    for img in timed[:2]:
        model.score(img)  # warm-up
    ours, ref = [], []
    for img in timed:
        t = time.perf_counter()
        model.score(img)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        reference_score(model, img)
        ref.append(time.perf_counter() - t)
    # detection quality of both on the same banks
    q_ours, q_ref, routed_ours, routed_ref = {}, {}, [], []
    for d in names:
        good, bad = tests[d]
        y = [0] * len(good) + [1] * len(bad)
        r = [model.score(img, with_map=False) for img in good + bad]
        q_ours[d] = auroc(y, [x.raw_score if x.raw_score is not None else np.inf for x in r])
        routed_ours += [x.nearest_domain == d for x in r]
        rr = [reference_score(model, img) for img in good + bad]
        q_ref[d] = auroc(y, [s for _, s in rr])
        routed_ref += [n == d for n, _ in rr]
    out[f"{len(names)}_domains"] = dict(
        bank_size_per_domain=model.share, ours_ms_p50=pct(ours, 50), ours_ms_p95=pct(ours, 95),
        reference_ms_p50=pct(ref, 50), reference_ms_p95=pct(ref, 95),
        speedup_p50=pct(ref, 50) / pct(ours, 50), n_timed=len(timed),
        image_auroc_ours=q_ours, image_auroc_reference=q_ref,
        mean_auroc_ours=float(np.mean(list(q_ours.values()))), mean_auroc_reference=float(np.mean(list(q_ref.values()))),
        routing_accuracy_ours=float(np.mean(routed_ours)), routing_accuracy_reference=float(np.mean(routed_ref)))
    print(json.dumps({f"{len(names)}_domains": out[f"{len(names)}_domains"]}), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="benchmarks/results/bench_core.json")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--n-enroll", type=int, default=1000, help="images in the enrolment-throughput run")
    ap.add_argument("--per-domain", type=int, default=60, help="training images per domain for scoring runs")
    ap.add_argument("--budget", type=int, default=30_000)
    ap.add_argument("--parts", default="enrollment,coreset,scoring,index",
                    help="comma-separated subset of: enrollment, coreset, scoring, index")
    args = ap.parse_args()
    if args.quick:
        args.n_enroll, args.per_domain = 200, 30
    torch.manual_seed(0)
    res = dict(machine=machine(), settings=dict(vars(args), backbone="efficientnet_lite0", image_size=224,
                                                 score_rule="topk_mean", index="flat"))

    parts = set(args.parts.split(","))
    if "enrollment" in parts:
        bench_enrollment(args, res)
    ours_sub = PatchCoreCL(budget=args.budget)
    if "coreset" in parts:
        bench_coreset(args, res, ours_sub)
    if "scoring" in parts or "index" in parts:
        model, tests = bench_scoring_all(args, res)
        if "index" in parts:
            bench_index(res, model, tests)
    res["peak_rss_mb"] = peak_rss_mb()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print(json.dumps(dict(written=args.out, peak_rss_mb=res["peak_rss_mb"])))


def bench_enrollment(args, res):
    """Enrolment throughput: N images of one domain into an empty model (share = the whole budget)."""
    pool = images("brain", args.n_enroll, seed=1)
    model = PatchCoreCL(budget=args.budget)
    stages = {}
    last = [time.perf_counter(), None]

    def progress(stage, frac):
        now = time.perf_counter()
        if last[1] is not None and last[1] != stage:
            stages[last[1]] = stages.get(last[1], 0.0) + now - last[0]
            last[0] = now
        last[1] = stage

    t = time.perf_counter()
    last[0] = t
    model.enroll("brain", pool, progress=progress)
    ours_s = time.perf_counter() - t
    n_ref = min(100, args.n_enroll)  # the reference is slow: time it on a subset at the same budget per patch
    ref_model = PatchCoreCL(budget=args.budget, batch_size=1)
    sub = pool[:n_ref]
    t = time.perf_counter()
    feats = np.concatenate([ref_model.features([im]) for im in sub]).reshape(-1, ref_model.extractor.dim)
    ref_feat_s = time.perf_counter() - t
    n_pick = min(args.budget, len(feats) - 1) // 10  # 10 % of the naive loop, extrapolated linearly (it is linear)
    t = time.perf_counter()
    naive_greedy_coreset(feats, n_pick)
    ref_core_s = (time.perf_counter() - t) * (min(args.budget, len(feats) - 1) / n_pick)
    t = time.perf_counter()
    ours_sub = PatchCoreCL(budget=args.budget)
    ours_sub.enroll("brain", sub)
    ours_sub_s = time.perf_counter() - t
    res["enrollment"] = dict(
        n_images=args.n_enroll, seconds=ours_s, images_per_s=args.n_enroll / ours_s, stage_seconds=stages,
        bank_size=len(model.domains["brain"].bank),
        same_workload_subset=dict(n_images=n_ref, ours_seconds=ours_sub_s, reference_seconds=ref_feat_s + ref_core_s,
                                  reference_feature_seconds=ref_feat_s, reference_coreset_seconds_extrapolated=ref_core_s,
                                  speedup=(ref_feat_s + ref_core_s) / ours_sub_s))
    print(json.dumps({"enrollment": res["enrollment"]}), flush=True)


def bench_coreset(args, res, ours_sub):
    """Coreset seconds vs N (n = 5,000 picks, Lite0 features; naive reference on the smaller N)."""
    rows = []
    base = np.concatenate([ours_sub.features(images(d, 40, seed=2)).reshape(-1, 152) for d in DOMAINS[:5]])
    for n_points in ([25_000, 50_000, 100_000] if args.quick else [25_000, 50_000, 100_000, 200_000]):
        x = base[np.random.default_rng(0).choice(len(base), n_points, replace=n_points > len(base))]
        x = x + np.random.default_rng(1).normal(0, 1e-3, x.shape).astype(np.float32)
        t = time.perf_counter()
        greedy_coreset(x, 5000)
        row = dict(n_points=n_points, n_picks=5000, ours_seconds=time.perf_counter() - t)
        if n_points <= 50_000:
            t = time.perf_counter()
            naive_greedy_coreset(x, 500)
            row["reference_seconds_extrapolated"] = (time.perf_counter() - t) * 10
        rows.append(row)
        print(json.dumps(row), flush=True)
    res["coreset"] = rows


def bench_scoring_all(args, res):
    """Scoring latency at 1, 3 and 6 domains, total budget fixed."""
    model = PatchCoreCL(budget=args.budget)
    tests = {}
    res["scoring"] = {}
    enroll_s = {}
    for k, d in enumerate(DOMAINS):
        t = time.perf_counter()
        model.enroll(d, images(d, args.per_domain, seed=3))
        enroll_s[d] = time.perf_counter() - t
        n_test = 10 if args.quick else 20
        tests[d] = (images(d, n_test, seed=4), images(d, n_test, seed=5, lesions=True))
        if k + 1 in (1, 3, 6):
            bench_scoring(model, DOMAINS[:k + 1], tests, 30 if args.quick else 60, res["scoring"])
    res["scoring_enroll_seconds"] = enroll_s
    return model, tests


def bench_index(res, model, tests):
    """Approximate indexes: recall@1 against exact on one 5,000-patch bank."""
    bank_x = model.domains["brain"].coreset[:5000]
    q = model.features(tests["brain"][1][:5]).reshape(-1, 152)
    exact = MemoryBank(bank_x, "flat")
    t = time.perf_counter()
    _, ei = exact.search(q)
    flat_ms = (time.perf_counter() - t) * 1e3
    res["index_recall"] = {"flat": dict(recall_at_1=1.0, search_ms_per_image=flat_ms / 5)}
    for kind in ("hnsw", "ivf", "ivfpq"):
        b = MemoryBank(bank_x, kind)
        t = time.perf_counter()
        _, ai = b.search(q)
        res["index_recall"][kind] = dict(recall_at_1=float((ai[:, 0] == ei[:, 0]).mean()),
                                         search_ms_per_image=(time.perf_counter() - t) * 1e3 / 5)


if __name__ == "__main__":
    main()
