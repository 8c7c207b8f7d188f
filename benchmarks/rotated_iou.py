"""Rotated IoU benchmark: vistudio's vectorised polygon IoU against shapely 2's vectorised
intersection (GEOS) on the same random pairs, one core, with the largest difference.

    .venv/bin/python benchmarks/rotated_iou.py [--pairs 100000] [--repeat 3]

Half the pairs overlap (the second box is drawn near the first), half mostly do not. Prints one
JSON document: pairs per second of both (best of ``--repeat``), the ratio, the max |difference|.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import shapely

from vistudio.ml.inference.rotated import corners_from_cxcywha, rotated_iou


def pairs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = np.c_[
        rng.uniform(0, 1000, n),
        rng.uniform(0, 1000, n),
        rng.uniform(5, 80, (n, 2)),
        rng.uniform(-math.pi, math.pi, n),
    ]
    b = a.copy()
    b[:, :2] += np.where(rng.random((n, 1)) < 0.5, rng.normal(0, 15, (n, 2)), rng.uniform(-300, 300, (n, 2)))
    b[:, 2:4] = rng.uniform(5, 80, (n, 2))
    b[:, 4] = rng.uniform(-math.pi, math.pi, n)
    return corners_from_cxcywha(a), corners_from_cxcywha(b)


def shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa, pb = shapely.polygons(a), shapely.polygons(b)
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    return inter / union


def best(fn, repeat: int) -> tuple[float, np.ndarray]:  # type: ignore[no-untyped-def]
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out  # type: ignore[return-value]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    a, b = pairs(args.pairs)
    ours_s, ours = best(lambda: rotated_iou(a, b), args.repeat)
    ref_s, ref = best(lambda: shapely_iou(a, b), args.repeat)
    print(
        json.dumps(
            {
                "benchmark": "rotated_iou",
                "machine": platform.machine(),
                "pairs": args.pairs,
                "overlapping": int((ref > 0).sum()),
                "vistudio_pairs_per_s": round(args.pairs / ours_s),
                "shapely_pairs_per_s": round(args.pairs / ref_s),
                "ratio": round(ref_s / ours_s, 3),
                "max_abs_diff": float(np.abs(ours - ref).max()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
