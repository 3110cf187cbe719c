"""Command line: ``python -m core …`` (or ``patchcorecl …``). Every command has ``--help``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_USER_ERROR = 2


def _progress_printer(label: str):
    last = {"stage": None, "pct": -1}

    def report(stage: str, frac: float) -> None:
        pct = int(100 * frac)
        if stage != last["stage"] or pct >= last["pct"] + 10 or frac >= 1:
            print(f"{label}: {stage} {pct:3d}%", file=sys.stderr, flush=True)
            last.update(stage=stage, pct=pct)
    return report


def _model_params(args) -> dict:
    params = dict(budget=args.budget, backbone=args.backbone, weights=args.weights, device=args.device)
    return {k: v for k, v in params.items() if v is not None}


def cmd_enroll(args) -> int:
    from .continual import PatchCoreCL
    from .io import load_cohort
    from .store import ModelStore

    store = ModelStore(args.store)
    scans, report = load_cohort(args.path)
    print(json.dumps(dict(intake=report.to_dict()), indent=None), file=sys.stderr)
    if not scans:
        print(f"error: no usable scan in {args.path}", file=sys.stderr)
        return EXIT_USER_ERROR
    if store.current() is None:
        params = _model_params(args)
        model = PatchCoreCL.paper(**params) if args.paper else PatchCoreCL(**params)
    else:
        model = store.load(device=args.device or "auto")
    model.enroll(args.domain, scans, mode=args.mode, user=args.user, progress=_progress_printer(args.domain))
    version = store.commit(model, action="enroll", message=f"{args.mode} {args.domain}", user=args.user)
    print(json.dumps(dict(version=version, domain=model.domains[args.domain].summary())))
    return 0


def _score_inputs(paths):
    from .io import ScanError, load_cohort, load_scan

    for p in paths:
        path = Path(p)
        if path.is_dir() or path.suffix.lower() == ".zip":
            scans, report = load_cohort(path)
            for name, reason in report.skipped:
                yield name, ScanError(reason)
            yield from ((s.name, s) for s in scans)
        else:
            try:
                yield path.name, load_scan(path)
            except ScanError as exc:
                yield path.name, exc


def cmd_score(args) -> int:
    import cv2

    from .io import ScanError
    from .overlay import overlay
    from .store import ModelStore

    model = ModelStore(args.store).load(args.version, device=args.device or "auto")
    out_dir = Path(args.heatmaps) if args.heatmaps else None
    if out_dir:
        out_dir.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name, scan in _score_inputs(args.paths):
        if isinstance(scan, ScanError):
            print(json.dumps(dict(file=name, error=str(scan))))
            failures += 1
            continue
        r = model.score(scan, with_map=out_dir is not None)
        row = dict(file=name, sha256=scan.sha256, **r.to_dict())
        if out_dir and r.anomaly_map is not None:
            png = out_dir / f"{Path(name).stem}_overlay.png"
            cv2.imwrite(str(png), cv2.cvtColor(overlay(scan.display, r.anomaly_map, r.map_threshold),
                                               cv2.COLOR_RGB2BGR))
            row["heatmap"] = str(png)
        print(json.dumps(row))
    return 1 if failures and args.strict else 0


def cmd_domains(args) -> int:
    from .store import ModelStore

    m = ModelStore(args.store).manifest()
    for name, d in m["domains"].items():
        cal = d["calibration"]
        print(json.dumps(dict(domain=name, n_images=d["n_images"], bank_size=d["bank_size"],
                              threshold=cal["threshold"], fpr=cal["fpr"], n_calibration=cal["n_calibration"],
                              enrolled_at=d["enrolled_at"], enrolled_by=d["enrolled_by"])))
    return 0


def cmd_versions(args) -> int:
    from .store import ModelStore

    for v in ModelStore(args.store).versions():
        print(json.dumps(v))
    return 0


def cmd_rollback(args) -> int:
    from .store import ModelStore

    print(json.dumps(dict(version=ModelStore(args.store).rollback(args.version, user=args.user))))
    return 0


def cmd_remove(args) -> int:
    from .store import ModelStore

    store = ModelStore(args.store)
    model = store.load(device=args.device or "auto")
    model.remove(args.domain)
    print(json.dumps(dict(version=store.commit(model, action="remove", message=f"remove {args.domain}",
                                               user=args.user))))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate

    res = evaluate(args.root, args.out, order=args.order.split(",") if args.order else None, mode=args.mode,
                   backbone=args.backbone, budget=args.budget,
                   baselines=[b for b in (args.baselines or "").split(",") if b],
                   limit_per_split=args.limit_per_split, seed=args.seed, device=args.device or "auto",
                   progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(dict(final=res["final"], timing=res["timing"])))
    return 0


def cmd_make_demo(args) -> int:
    from .demo import make_demo

    summary = make_demo(args.dir, domains=tuple(args.domains.split(",")), n_train=args.n_train,
                        n_valid=args.n_valid, n_test=args.n_test, size=args.size, seed=args.seed)
    print(json.dumps(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .store import STORE_ENV

    p = argparse.ArgumentParser(prog="python -m core", description="PatchCoreCL: continual anomaly detection "
                                "on medical images, trained on normal scans only.")
    p.add_argument("--store", default=None, help=f"model store directory (default: ${STORE_ENV} or the user "
                   "data directory)")
    p.add_argument("--device", default=None, help="auto (default), cpu or cuda")
    p.add_argument("--user", default=None, help="who is acting (recorded in the model version)")
    sub = p.add_subparsers(dest="command", required=True)

    e = sub.add_parser("enroll", help="enroll a domain from a folder or zip of normal scans")
    e.add_argument("domain")
    e.add_argument("path", help="folder, zip or single file of normal scans")
    e.add_argument("--mode", choices=("new", "extend", "replace"), default="new",
                   help="new (default): refuse an existing name; extend: add scans; replace: start over")
    e.add_argument("--budget", type=int, default=None, help="total patch budget (first enrolment only)")
    e.add_argument("--backbone", default=None, help="timm backbone (first enrolment only)")
    e.add_argument("--weights", default=None, help="backbone weights file (first enrolment only)")
    e.add_argument("--paper", action="store_true", help="paper-faithful PatchCoreCL settings (first enrolment)")
    e.set_defaults(func=cmd_enroll)

    s = sub.add_parser("score", help="score scans; one JSON line per scan")
    s.add_argument("paths", nargs="+", help="files, folders or zips")
    s.add_argument("--heatmaps", default=None, help="write overlay PNGs into this folder")
    s.add_argument("--version", default=None, help="model version (default: current)")
    s.add_argument("--strict", action="store_true", help="exit 1 if any file could not be read")
    s.set_defaults(func=cmd_score)

    sub.add_parser("domains", help="list enrolled domains").set_defaults(func=cmd_domains)
    sub.add_parser("versions", help="list model versions").set_defaults(func=cmd_versions)
    r = sub.add_parser("rollback", help="make an earlier version current (as a new version)")
    r.add_argument("version")
    r.set_defaults(func=cmd_rollback)
    rm = sub.add_parser("remove", help="remove a domain (as a new version)")
    rm.add_argument("domain")
    rm.set_defaults(func=cmd_remove)

    ev = sub.add_parser("evaluate", help="continual benchmark on a BMAD-layout folder (one folder per domain)")
    ev.add_argument("root")
    ev.add_argument("--out", required=True, help="output folder for results.json, report.md, report.html")
    ev.add_argument("--order", default=None, help="domain order, comma-separated (default: alphabetical)")
    ev.add_argument("--mode", choices=("default", "paper"), default="default")
    ev.add_argument("--backbone", default=None, help="default: efficientnet_lite0 (default mode), "
                    "wide_resnet50_2 (paper mode)")
    ev.add_argument("--budget", type=int, default=None, help="total patch budget (default 30000)")
    ev.add_argument("--baselines", default="joint,task_specific", help="comma-separated; empty for none")
    ev.add_argument("--limit-per-split", type=int, default=None, help="at most N images per split and class")
    ev.add_argument("--seed", type=int, default=0)
    ev.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("make-demo", help="write the offline demo benchmark (BMAD layout)")
    d.add_argument("dir")
    d.add_argument("--domains", default="brain,chest,histology")
    d.add_argument("--n-train", type=int, default=40)
    d.add_argument("--n-valid", type=int, default=6)
    d.add_argument("--n-test", type=int, default=10)
    d.add_argument("--size", type=int, default=224)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_make_demo)
    return p


def main(argv=None) -> int:
    from .backbones import BackboneWeightsError
    from .continual import EnrollmentError
    from .io import ScanError
    from .store import StoreError

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (EnrollmentError, ScanError, StoreError, BackboneWeightsError, KeyError, ValueError) as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"error: {msg}", file=sys.stderr)
        return EXIT_USER_ERROR
