"""Long fuzz run of core.io.load_scan (the CI test runs 150 cases of the same mutations).

    python benchmarks/fuzz_io.py --cases 5000 --out benchmarks/results/fuzz_io.json
Reports how many cases ran, how many loaded, how many were refused with ScanError,
and how many escaped with any other exception (must be 0).
"""
import argparse
import json
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.io import ScanError, load_scan  # noqa: E402
from tests.test_io_fuzz import mutate, seed_bytes  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/fuzz_io.json")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    seeds = seed_bytes()
    names = sorted(seeds)
    counts, escaped = Counter(), []
    t = time.perf_counter()
    for _ in range(args.cases):
        name = names[rng.integers(len(names))]
        case = (int(rng.integers(4)), float(rng.random()), int(rng.integers(2 ** 32)), int(rng.integers(1, 65)))
        data = mutate(seeds[name], *case)
        try:
            scan = load_scan(data, filename=name)
            counts["loaded" if np.isfinite(scan.model_image).all() else "loaded_non_finite"] += 1
        except ScanError:
            counts["refused"] += 1
        except BaseException as exc:  # noqa: B036 — counting escapes is the point
            counts["escaped"] += 1
            escaped.append(dict(seed_file=name, case=case, error=repr(exc)[:300],
                                where=traceback.format_exc().splitlines()[-3:]))
    res = dict(cases=args.cases, seconds=time.perf_counter() - t, seed=args.seed, seed_files=names, **counts,
               escaped_examples=escaped[:20])
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))
    print(json.dumps({k: v for k, v in res.items() if k != "escaped_examples"}))
    return 1 if counts["escaped"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
