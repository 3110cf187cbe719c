"""PatchCoreCL: PatchCore as a continual learner over imaging domains.

Each domain keeps its own greedy-coreset memory bank; all banks share one
fixed budget, split equally (each of T domains keeps ``budget // T``
patches). Banks are stored in greedy pick order, so re-coreseting an older
bank to a smaller share is exactly a prefix of it (see ``core.coreset``).

At inference no domain label is needed: a scan is routed to the bank with the
lowest mean nearest-neighbour patch distance (the paper's rule). A cheap first
stage, the nearest training image in a per-domain set of global embeddings,
shortlists ``route_shortlist`` banks so that only those are searched in full.

Usage::

    model = PatchCoreCL(budget=30_000)
    model.enroll("brain", brain_scans)
    model.enroll("chest", chest_scans)
    result = model.score(scan)   # routed domain, calibrated score, decision, heatmap
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from .bank import INDEX_TYPES, MemoryBank
from .calibration import Calibration
from .coreset import greedy_coreset
from .features import FeatureExtractor, extract
from .io import Scan, load_scan, parse_pipeline, scan_from_array
from .preprocess import Preprocessing
from .scoring import SCORE_RULES, anomaly_map, image_score, map_to_original

DOMAIN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,63}$")
ENROLL_MODES = ("new", "extend", "replace")
Progress = Callable[[str, float], None]  # (stage, fraction done in [0, 1])


class EnrollmentError(ValueError):
    """Enrolment refused; nothing was changed."""


@dataclass
class Domain:
    """Everything the model keeps about one enrolled domain."""

    name: str
    coreset: np.ndarray        # (M, D) float32, greedy pick order: the bank is a prefix of it
    heldout: np.ndarray        # (n_cal, P, D) float16 patch features of held-out normals
    global_embeddings: np.ndarray  # (n_train, D) float32 mean patch feature per training image
    n_images: int
    input_hashes: list[str]
    enrolled_at: str
    enrolled_by: str | None = None
    info: dict = field(default_factory=dict)
    # derived (rebuilt whenever the budget split changes)
    bank: MemoryBank | None = field(default=None, repr=False)
    calibration: Calibration | None = field(default=None, repr=False)

    def summary(self) -> dict:
        d = dict(name=self.name, n_images=self.n_images, n_train=int(len(self.global_embeddings)),
                 n_calibration=int(len(self.heldout)), bank_size=len(self.bank) if self.bank else 0,
                 stored_patches=int(len(self.coreset)), enrolled_at=self.enrolled_at,
                 enrolled_by=self.enrolled_by, info=self.info)
        if self.calibration is not None:
            d.update(self.calibration.summary())
        return d


@dataclass
class ScoreResult:
    decision: str                  # "normal" | "suspicious" | "unknown_domain"
    domain: str | None             # routed domain; None when the domain is unknown
    nearest_domain: str | None     # best bank even when unknown
    routing_confidence: float      # relative margin of the best bank over the runner-up, in [0, 1]
    route_distances: dict          # mean nearest-neighbour distance per searched bank
    out_of_domain: bool            # the nearest bank's mean distance is beyond its calibrated normal range
    ood_ratio: float               # that distance / the unknown-domain limit (> 1: out of domain)
    raw_score: float | None
    calibrated_score: float | None  # raw / threshold: 1.0 is at the threshold
    normal_percentile: float | None
    threshold: float | None
    map_threshold: float | None = None  # anomaly-map level that normals exceed at rate fpr: the heatmap's scale
    anomaly_map: np.ndarray | None = field(default=None, repr=False)  # at the scan's resolution
    model_map: np.ndarray | None = field(default=None, repr=False)    # at the model's resolution
    model_version: str | None = None
    routed_by: str = "distance"
    timings_ms: dict = field(default_factory=dict)

    @property
    def message(self) -> str:
        if self.decision == "unknown_domain":
            return (f"unknown domain: this scan matches none of the enrolled domains "
                    f"(nearest: {self.nearest_domain}); enroll it first")
        return f"{self.decision} ({self.domain}, score {self.calibrated_score:.2f}× threshold)"

    def to_dict(self) -> dict:
        d = {k: v for k, v in self.__dict__.items() if k not in ("anomaly_map", "model_map")}
        d["message"] = self.message
        return d


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def as_scan(item) -> Scan:
    """A Scan, a path, bytes or an array (grey / RGB, any dtype) → Scan."""
    if isinstance(item, Scan):
        return item
    if isinstance(item, (str, Path, bytes)):
        return load_scan(item)
    return scan_from_array(item)


class PatchCoreCL:
    """Continual PatchCore over imaging domains. Parameters are plain values (see ``get_params``)."""

    def __init__(self, backbone: str = "efficientnet_lite0", layers: tuple[int, ...] | None = None,
                 weights: str | None = None, aggregation: str = "same", reduction: str = "none",
                 target_dim: int | None = None, resize: str = "resize", budget: int = 30_000,
                 score_rule: str = "topk_mean", reweight_neighbours: int = 3, sigma: float = 4.0,
                 holdout_fraction: float = 0.1, max_calibration_images: int = 200, fpr: float = 0.05,
                 ood_fpr: float = 0.01, ood_margin: float = 0.5, route_shortlist: int | None = 2,
                 route_hints: dict | None = None, index_type: str = "flat", coreset_projection: str = "auto",
                 coreset_target_dim: int | None = None, coreset_eps: float = 0.9, coreset_start: str = "seeded",
                 coreset_max_patches: int | None = 200_000,
                 seed: int = 0, device: str = "auto", precision: str = "auto", batch_size: int = 16,
                 allow_download: bool = True):
        if budget < 1:
            raise ValueError("budget must be a positive number of patches")
        if score_rule not in SCORE_RULES:
            raise ValueError(f"score_rule must be one of {SCORE_RULES}")
        if index_type not in INDEX_TYPES:
            raise ValueError(f"index_type must be one of {INDEX_TYPES}")
        if not 0 < holdout_fraction < 1:
            raise ValueError("holdout_fraction must be in (0, 1)")
        if coreset_start not in ("seeded", "first"):
            raise ValueError("coreset_start must be 'seeded' or 'first'")
        self.params = dict(backbone=backbone, layers=list(layers) if layers else None, weights=weights,
                           aggregation=aggregation, reduction=reduction, target_dim=target_dim, resize=resize,
                           budget=int(budget), score_rule=score_rule, reweight_neighbours=int(reweight_neighbours),
                           sigma=float(sigma), holdout_fraction=float(holdout_fraction),
                           max_calibration_images=int(max_calibration_images), fpr=float(fpr),
                           ood_fpr=float(ood_fpr), ood_margin=float(ood_margin), route_shortlist=route_shortlist,
                           route_hints=dict(route_hints or {}), index_type=index_type,
                           coreset_projection=coreset_projection, coreset_target_dim=coreset_target_dim,
                           coreset_eps=float(coreset_eps), coreset_start=coreset_start,
                           coreset_max_patches=coreset_max_patches, seed=int(seed),
                           device=device, precision=precision, batch_size=int(batch_size),
                           allow_download=allow_download)
        torch.manual_seed(seed)
        self.extractor = FeatureExtractor(backbone=backbone, out_indices=tuple(layers) if layers else None,
                                          weights=weights, aggregation=aggregation, target_dim=target_dim,
                                          reduction=reduction, device=device, precision=precision,
                                          batch_size=batch_size, seed=seed, allow_download=allow_download)
        self.preprocessing: Preprocessing = self.extractor.preprocessing(resize)
        self.domains: dict[str, Domain] = {}
        self.version: str | None = None

    @classmethod
    def paper(cls, backbone: str = "wide_resnet50_2", budget: int = 30_000, **overrides) -> "PatchCoreCL":
        """The published PatchCoreCL settings (see shared reference and README for what differs)."""
        kw = dict(backbone=backbone, aggregation="paper", resize="resize_crop", budget=budget,
                  score_rule="reweighted", reweight_neighbours=3, route_shortlist=None,
                  coreset_projection="sparse", coreset_eps=0.9, coreset_start="first", coreset_max_patches=None)
        kw.update(overrides)
        return cls(**kw)

    # -- introspection ----------------------------------------------------------
    def get_params(self) -> dict:
        return dict(self.params)

    @property
    def share(self) -> int:
        """Patches each domain keeps under the equal split."""
        return self.params["budget"] // max(1, len(self.domains))

    def config(self) -> dict:
        """Everything needed to rebuild this model: recorded in each model version."""
        return dict(params=self.get_params(), features=self.extractor.get_params(),
                    preprocessing=self.preprocessing.to_dict())

    def memory_bytes(self) -> int:
        return sum(d.bank.nbytes for d in self.domains.values() if d.bank is not None)

    # -- enrolment --------------------------------------------------------------
    def enroll(self, domain: str, images: Iterable, *, mode: str = "new", user: str | None = None,
               progress: Progress | None = None, info: dict | None = None, intensity: str | None = None,
               calibration: Iterable | None = None) -> Domain:
        """Enroll a domain from normal scans. On any error nothing changes.

        ``mode``: ``new`` (refuses an existing name), ``extend`` (adds scans to an
        existing domain) or ``replace`` (discards the existing domain's bank first).
        ``intensity``: the scan-I/O pipeline feeding the model for this domain (``default``,
        ``auto``, ``preset:lung``, ``window:C/W``; see ``core.io.scan``). It is recorded and reused at
        scoring; ``extend`` keeps the domain's recorded one.
        ``calibration``: normal scans kept apart for calibration (e.g. a benchmark's validation
        normals); by default ``holdout_fraction`` of the cohort is held out instead.
        """
        report = progress or (lambda stage, frac: None)
        self._check_enroll(domain, mode)
        old = self.domains.get(domain)
        if mode == "extend":
            intensity = old.info.get("intensity", "default")
        intensity = intensity or "default"
        try:
            parse_pipeline(intensity)
        except ValueError as exc:
            raise EnrollmentError(str(exc)) from None
        scans = [s.with_intensity(intensity) for s in self._load_inputs(images)]
        known = set(old.input_hashes) if (old is not None and mode == "extend") else set()
        uniq: dict[str, Scan] = {}
        for s in scans:
            if s.sha256 not in known:
                uniq.setdefault(s.sha256, s)
        if mode == "extend" and not uniq:
            raise EnrollmentError(f"all scans are already part of domain '{domain}'")
        cal_scans = [s.with_intensity(intensity) for s in self._load_inputs(calibration)] if calibration else []
        if mode != "extend" and len(uniq) < (1 if cal_scans else 2):
            raise EnrollmentError("enrolment needs at least 2 distinct normal scans "
                                  "(one for the memory bank, one for calibration)")
        # sorted by content hash, then a seeded split: the same cohort in any file order gives the same model
        hashes = sorted(uniq)
        rng = np.random.default_rng([self.params["seed"], int(hashlib.sha256(domain.encode()).hexdigest()[:8], 16)])
        order = rng.permutation(len(hashes))
        n_cal = 0 if mode == "extend" or cal_scans else min(
            self.params["max_calibration_images"], max(1, round(self.params["holdout_fraction"] * len(hashes))))
        cal_ids, train_ids = sorted(order[:n_cal]), sorted(order[n_cal:])

        report("features", 0.0)
        images_in = [uniq[hashes[i]].model_image for i in list(train_ids) + list(cal_ids)]
        images_in += [s.model_image for s in cal_scans[:self.params["max_calibration_images"]]]
        feats = extract(self.extractor, self.preprocessing, images_in,
                        progress=lambda done, total: report("features", done / total))
        train, cal = feats[:len(train_ids)], feats[len(train_ids):]

        new_count = len(self.domains) + (0 if domain in self.domains and mode != "new" else 1)
        share = self.params["budget"] // new_count
        patches = train.reshape(-1, train.shape[-1])
        globals_ = train.mean(axis=1)
        heldout = cal.astype(np.float16)
        n_images = len(hashes)
        input_hashes = [hashes[i] for i in train_ids] + [hashes[i] for i in cal_ids]
        if mode == "extend":
            patches = np.concatenate([old.coreset, patches])
            globals_ = np.concatenate([old.global_embeddings, globals_])
            heldout = old.heldout
            n_images += old.n_images
            input_hashes = old.input_hashes + input_hashes
        report("coreset", 0.0)
        cap = self.params.get("coreset_max_patches")
        if cap and len(patches) > cap:
            # the greedy loop is O(N · picks) and memory-bound: above the cap it runs on a seeded uniform
            # subset of the patches (neighbouring patches are near-duplicates, so little is lost)
            keep = np.sort(np.random.default_rng(self.params["seed"]).choice(len(patches), cap, replace=False))
            patches = patches[keep]
        picks = greedy_coreset(patches, min(share, len(patches)), projection=self.params["coreset_projection"],
                               eps=self.params["coreset_eps"], target_dim=self.params["coreset_target_dim"],
                               seed=self.params["seed"], start=0 if self.params["coreset_start"] == "first" else None,
                               device=self.extractor._device,
                               progress=lambda done, total: report("coreset", done / total))
        new = Domain(name=domain, coreset=np.ascontiguousarray(patches[picks]), heldout=heldout,
                     global_embeddings=np.ascontiguousarray(globals_, dtype=np.float32), n_images=n_images,
                     input_hashes=input_hashes, enrolled_at=_now(), enrolled_by=user,
                     info=dict(info or {}, mode=mode, intensity=intensity))
        report("calibration", 0.0)
        domains = {k: replace(v) for k, v in self.domains.items()}
        domains[domain] = new
        self._rebuild(domains)
        self.domains = domains  # swap in only once everything succeeded
        report("done", 1.0)
        return new

    def _check_enroll(self, domain: str, mode: str) -> None:
        if mode not in ENROLL_MODES:
            raise EnrollmentError(f"mode must be one of {ENROLL_MODES}")
        if not isinstance(domain, str) or not DOMAIN_NAME.match(domain):
            raise EnrollmentError("domain name must be 1–64 letters, digits, spaces, '.', '_' or '-'")
        exists = domain in self.domains
        if mode == "new" and exists:
            raise EnrollmentError(f"domain '{domain}' is already enrolled: use mode='extend' to add scans "
                                  f"or mode='replace' to start it over")
        if mode != "new" and not exists:
            raise EnrollmentError(f"domain '{domain}' is not enrolled, so it cannot be {mode}ed")
        count = len(self.domains) + (0 if exists else 1)
        if self.params["budget"] < count:
            raise EnrollmentError(f"budget of {self.params['budget']} patches cannot be split over {count} domains")

    @staticmethod
    def _load_inputs(images) -> list[Scan]:
        if isinstance(images, (str, Path)):
            from .io import load_cohort
            scans, report = load_cohort(images)
            if not scans:
                reasons = "; ".join(r for _, r in report.skipped[:3])
                raise EnrollmentError(f"no usable scan in {Path(images).name}" + (f": {reasons}" if reasons else ""))
            return scans
        scans = [as_scan(x) for x in images]
        if not scans:
            raise EnrollmentError("the cohort is empty")
        return scans

    def remove(self, domain: str) -> None:
        """Drop a domain; the others get their larger share back (up to what they stored)."""
        if domain not in self.domains:
            raise KeyError(f"domain '{domain}' is not enrolled")
        domains = {k: replace(v) for k, v in self.domains.items() if k != domain}
        self._rebuild(domains)
        self.domains = domains

    def _rebuild(self, domains: dict[str, Domain]) -> None:
        """Apply the equal split to every bank and recalibrate on each domain's held-out normals."""
        share = self.params["budget"] // max(1, len(domains))
        for d in domains.values():
            m = min(share, len(d.coreset))
            if d.bank is None or len(d.bank) != m:
                d.bank = MemoryBank(d.coreset[:m], self.params["index_type"], self.params["seed"])
                d.calibration = None
            if d.calibration is None:
                scores, dists, map_max = [], [], []
                for feats in d.heldout.astype(np.float32):
                    s, r, mmap = self._score_against(feats, d.bank)
                    scores.append(s)
                    dists.append(r)
                    map_max.append(float(mmap.max()))
                d.calibration = Calibration.fit(scores, dists, map_max, self.params["fpr"], self.params["ood_fpr"],
                                                self.params["ood_margin"])

    # -- inference ----------------------------------------------------------------
    def _search(self, feats: np.ndarray, bank: MemoryBank) -> tuple[np.ndarray, np.ndarray]:
        nn_dist, nn_idx = bank.search(feats, 1)
        return nn_dist[:, 0], nn_idx[:, 0]

    def _score_from_nn(self, feats, nn_dist, nn_idx, bank) -> tuple[float, np.ndarray]:
        grid = self.extractor.grid(self.preprocessing.size)
        mmap = anomaly_map(nn_dist, grid, self.preprocessing.size, self.params["sigma"])
        score = image_score(self.params["score_rule"], feats, nn_dist, nn_idx, bank, mmap,
                            self.params["reweight_neighbours"])
        return score, mmap

    def _score_against(self, feats: np.ndarray, bank: MemoryBank):
        nn_dist, nn_idx = self._search(feats, bank)
        score, mmap = self._score_from_nn(feats, nn_dist, nn_idx, bank)
        return score, float(nn_dist.mean()), mmap

    def score_in_domain(self, feats: np.ndarray, domain: str) -> tuple[float, np.ndarray]:
        """Raw image score and model-resolution map of patch features against one domain's bank
        (the domain given, no routing: the task-specific setting)."""
        bank = self.domains[domain].bank
        return self._score_from_nn(feats, *self._search(feats, bank), bank)

    def features(self, images) -> np.ndarray:
        """Patch features (N, P, D) of model images (for evaluation and tests)."""
        return extract(self.extractor, self.preprocessing, [as_scan(x).model_image for x in images])

    def route(self, feats: np.ndarray, metadata: dict | None = None) -> tuple[str, float, dict, str]:
        """(domain, confidence, mean NN distance per searched bank, how it was routed)."""
        return self._route({p: feats for p in self.pipelines()}, metadata)[:4]

    def pipelines(self) -> set[str]:
        """The distinct intensity pipelines of the enrolled domains (usually just 'default')."""
        return {d.info.get("intensity", "default") for d in self.domains.values()} or {"default"}

    def _features_by_pipeline(self, scans: list[Scan]) -> dict[str, np.ndarray]:
        return {p: extract(self.extractor, self.preprocessing, [s.with_intensity(p).model_image for s in scans])
                for p in sorted(self.pipelines())}

    def _route(self, feats_by: dict[str, np.ndarray], metadata: dict | None):
        """Each domain is compared on features made with its own intensity pipeline."""
        if not self.domains:
            raise RuntimeError("no domain is enrolled yet")
        names = list(self.domains)
        how = "distance"
        hint = self._hint(metadata)
        k = self.params["route_shortlist"]
        if hint is not None:
            names, how = [hint], "metadata"
        feats = {n: feats_by[self.domains[n].info.get("intensity", "default")] for n in names}
        if hint is None and k and len(names) > k:  # stage 1: nearest training image by global embedding
            near = [float(np.min(np.linalg.norm(self.domains[n].global_embeddings - feats[n].mean(axis=0), axis=1)))
                    for n in names]
            names = [names[i] for i in np.argsort(near, kind="stable")[:k]]
        searches = {n: self._search(feats[n], self.domains[n].bank) for n in names}
        dists = {n: float(s[0].mean()) for n, s in searches.items()}
        ranked = sorted(dists, key=dists.get)
        conf = 1.0
        if len(ranked) > 1:
            d1, d2 = dists[ranked[0]], dists[ranked[1]]
            conf = float((d2 - d1) / d2) if d2 > 0 else 0.0
        return ranked[0], conf, dists, how, searches[ranked[0]], feats[ranked[0]]

    def _hint(self, metadata: dict | None) -> str | None:
        hints = self.params["route_hints"]
        if not hints or not metadata:
            return None
        modality, body = metadata.get("modality") or "", metadata.get("body_part") or ""
        for key in (f"{modality}/{body}".upper(), modality.upper()):
            name = {k.upper(): v for k, v in hints.items()}.get(key)
            if name in self.domains:
                return name
        return None

    def score(self, scan, with_map: bool = True) -> ScoreResult:
        """Route, score and decide for one scan (a Scan, path, bytes or array)."""
        t0 = time.perf_counter()
        scan = as_scan(scan)
        feats = {p: f[0] for p, f in self._features_by_pipeline([scan]).items()}
        t1 = time.perf_counter()
        return self._score_features(feats, scan, with_map, t0, t1)

    def score_many(self, scans, with_map: bool = True) -> list[ScoreResult]:
        """Batched feature extraction, then per-scan routing and scoring."""
        scans = [as_scan(s) for s in scans]
        t0 = time.perf_counter()
        feats = self._features_by_pipeline(scans)
        t1 = time.perf_counter()
        per = (t1 - t0) / max(1, len(scans))
        out = []
        for i, s in enumerate(scans):
            t = time.perf_counter()
            out.append(self._score_features({p: f[i] for p, f in feats.items()}, s, with_map, t - per, t))
        return out

    def _score_features(self, feats_by, scan: Scan, with_map: bool, t0: float, t1: float) -> ScoreResult:
        return self.score_features(feats_by, scan.metadata, scan.shape if with_map else None, t0=t0, t1=t1)

    def score_features(self, feats_by: dict[str, np.ndarray], metadata: dict | None = None,
                       shape: tuple[int, int] | None = None, reject_unknown: bool = True, t0: float | None = None,
                       t1: float | None = None) -> ScoreResult:
        """Route and score precomputed features ({pipeline: (P, D)}), e.g. cached ones in an evaluation.

        ``shape``: the scan's (H, W), for the full-resolution map. ``reject_unknown=False`` still scores a
        scan that is out of domain (against its nearest bank) and marks it, for evaluation.
        """
        t0 = time.perf_counter() if t0 is None else t0
        t1 = t0 if t1 is None else t1
        name, conf, dists, how, (nn_dist, nn_idx), feats = self._route(feats_by, metadata)
        t2 = time.perf_counter()
        dom = self.domains[name]
        cal = dom.calibration
        ood = cal.is_unknown_domain(dists[name])
        ratio = float(dists[name] / cal.ood_threshold) if cal.ood_threshold > 0 else float("inf")
        if ood and reject_unknown:
            return ScoreResult("unknown_domain", None, name, conf, dists, True, ratio, None, None, None, None,
                               model_version=self.version, routed_by=how,
                               timings_ms=dict(features=1e3 * (t1 - t0), route=1e3 * (t2 - t1)))
        raw, mmap = self._score_from_nn(feats, nn_dist, nn_idx, dom.bank)
        t3 = time.perf_counter()
        amap = map_to_original(mmap, self.preprocessing, *shape) if shape is not None else None
        decision = "unknown_domain" if ood else ("suspicious" if raw > cal.threshold else "normal")
        return ScoreResult(decision, name, name, conf, dists, ood, ratio, raw, cal.calibrated(raw),
                           cal.normal_percentile(raw),
                           cal.threshold, cal.map_threshold, amap, mmap, self.version, how,
                           dict(features=1e3 * (t1 - t0), route=1e3 * (t2 - t1), score=1e3 * (t3 - t2),
                                total=1e3 * (time.perf_counter() - t0)))
