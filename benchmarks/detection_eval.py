"""Detection evaluation benchmark: vistudio's COCO box metrics against pycocotools in the same run.

Generates ``--images`` images (640×480) with 1–15 ground-truth boxes of ``--classes`` classes
(log-uniform sizes from 4 to 400 px, so every area range is populated, about 3 % crowd regions)
and exactly ``--detections`` predictions per image (jittered copies of the objects, some of the
wrong class, the rest random boxes; scores with two decimals, so many ties). Then, on the same
input:

- **pycocotools**: ``COCO`` built from the dicts, ``loadRes``, ``COCOeval(..., "bbox")``
  ``evaluate`` / ``accumulate`` / ``summarize`` and the per-class AP read from ``eval["precision"]``;
- **vistudio**: ``vistudio.ml.inference.detection_metrics.coco_box_metrics`` from the plain
  inputs (building its own dicts included);
- **vistudio matching** (reported separately, no baseline): the per-image matching at IoU 0.5 of
  every image and the summary the evaluation page uses (confusion matrix, PR curves, F1 curve).

Both engines get the same dicts; the 12 statistics and the per-class AP/AP50 must agree within
1e-6 (``max_abs_diff``). Prints one JSON document.

    .venv/bin/python benchmarks/detection_eval.py [--images 5000] [--detections 100]
        [--classes 80] [--seed 0] [--repeat 1] [--out FILE]

``--repeat N`` runs each engine N times, taking turns, and reports the fastest of each (the
ratio is then less sensitive to other work on a shared machine).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.ml.inference.detection_metrics import (
    STAT_NAMES,
    PredictedBox,
    TruthBox,
    TruthImage,
    coco_box_metrics,
    coco_datasets,
)

WIDTH, HEIGHT = 640, 480


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def generate(
    images: int, detections: int, classes: int, seed: int
) -> tuple[list[TruthImage], dict[int, list[PredictedBox]]]:
    rng = np.random.default_rng(seed)
    truths: list[TruthImage] = []
    predictions: dict[int, list[PredictedBox]] = {}

    def boxes(n: int) -> np.ndarray:
        wh = np.exp(rng.uniform(np.log(4), np.log(400), size=(n, 2)))
        wh = np.minimum(wh, [WIDTH - 1, HEIGHT - 1])
        xy = rng.uniform(0, 1, size=(n, 2)) * ([WIDTH, HEIGHT] - wh)
        return np.concatenate([xy, wh], axis=1)

    for i in range(images):
        image_id = i + 1
        n = int(rng.integers(1, 16))
        gt = boxes(n)
        cls = rng.integers(0, classes, n)
        crowd = rng.random(n) < 0.03
        truths.append(
            TruthImage(
                image_id,
                WIDTH,
                HEIGHT,
                [
                    TruthBox(int(c), tuple(float(v) for v in b), bool(k))
                    for c, b, k in zip(cls, gt, crowd, strict=True)
                ],  # type: ignore[misc]
            )
        )
        hits = min(detections, int(n * rng.uniform(0.5, 1.5)))
        src = rng.integers(0, n, hits)
        jitter = rng.normal(0, 0.1, size=(hits, 4)) * np.tile(gt[src, 2:], 2)
        near = gt[src] + jitter
        near[:, 2:] = np.maximum(near[:, 2:], 1.0)
        near_cls = np.where(rng.random(hits) < 0.9, cls[src], rng.integers(0, classes, hits))
        rand = boxes(detections - hits)
        all_boxes = np.concatenate([near, rand])
        all_cls = np.concatenate([near_cls, rng.integers(0, classes, detections - hits)])
        scores = np.round(
            np.concatenate([rng.uniform(0.3, 1.0, hits), rng.uniform(0.0, 0.7, detections - hits)]), 2
        )
        predictions[image_id] = [
            PredictedBox(int(c), tuple(float(v) for v in b), float(s))  # type: ignore[arg-type]
            for c, b, s in zip(all_cls, all_boxes, scores, strict=True)
        ]
    return truths, predictions


def run_pycocotools(
    truths: list[TruthImage], predictions: dict[int, list[PredictedBox]], classes: int
) -> tuple[float, list[float], dict[int, tuple[float, float]]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset, results = coco_datasets(truths=truths, predictions=predictions, class_ids=range(classes))
    dataset, results = copy.deepcopy(dataset), copy.deepcopy(results)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    per_class = {}
    for k, cat in enumerate(ev.params.catIds):
        out = []
        for p in (ev.eval["precision"][:, :, k, 0, -1], ev.eval["precision"][0, :, k, 0, -1]):
            out.append(float(np.mean(p[p > -1])) if (p > -1).any() else -1.0)
        per_class[int(cat)] = (out[0], out[1])
    return time.perf_counter() - start, [float(v) for v in ev.stats], per_class


def run_matching(truths: list[TruthImage], predictions: dict[int, list[PredictedBox]], classes: int) -> float:
    from vistudio.ml.inference.detection_matching import Truths, match_image, summarise
    from vistudio.ml.inference.detections import Detections

    start = time.perf_counter()
    matches = []
    for t in truths:
        preds = predictions.get(t.image_id, [])
        order = np.argsort([-p.score for p in preds], kind="stable")
        b = np.array([preds[k].box for k in order], np.float64).reshape(-1, 4)
        b[:, 2:] += b[:, :2]
        dets = Detections(
            b,
            np.array([preds[k].class_id for k in order], np.int64),
            np.array([preds[k].score for k in order], np.float32),
        )
        tb = np.array([x.box for x in t.boxes], np.float64).reshape(-1, 4)
        tb[:, 2:] += tb[:, :2]
        truth = Truths.from_lists([x.class_id for x in t.boxes], tb, [x.iscrowd for x in t.boxes])
        matches.append(match_image(truth, dets, iou_threshold=0.5))
    summarise(matches, classes, iou_threshold=0.5, score_threshold=0.5)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--detections", type=int, default=100)
    ap.add_argument("--classes", type=int, default=80, help="COCO has 80")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--repeat", type=int, default=1, help="runs of each engine, interleaved; the fastest of each counts"
    )
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    log(f"generating {args.images} images × {args.detections} detections")
    truths, predictions = generate(args.images, args.detections, args.classes, args.seed)
    # the engines take turns, so that a change of load on a shared machine hits both alike
    py_times, vs_times = [], []
    for r in range(max(1, args.repeat)):
        log(f"pycocotools (run {r + 1})")
        py_s, py_stats, py_per_class = run_pycocotools(truths, predictions, args.classes)
        py_times.append(py_s)
        log(f"pycocotools {py_s:.2f} s; vistudio (run {r + 1})")
        start = time.perf_counter()
        ours = coco_box_metrics(truths=truths, predictions=predictions, class_ids=range(args.classes))
        vs_times.append(time.perf_counter() - start)
        log(f"vistudio {vs_times[-1]:.2f} s")
    py_s, vs_s = min(py_times), min(vs_times)
    log("matching")
    match_s = run_matching(truths, predictions, args.classes)
    diffs = [abs(a - b) for a, b in zip(ours.stats(), py_stats, strict=True)]
    for cat, (ap_, ap50) in py_per_class.items():
        diffs += [abs(ours.per_class[cat].ap - ap_), abs(ours.per_class[cat].ap50 - ap50)]
    result: dict[str, Any] = {
        "benchmark": "detection_eval",
        "images": args.images,
        "detections_per_image": args.detections,
        "ground_truth_boxes": sum(len(t.boxes) for t in truths),
        "classes": args.classes,
        "pycocotools_s": round(py_s, 3),
        "vistudio_s": round(vs_s, 3),
        "runs": {
            "pycocotools_s": [round(x, 3) for x in py_times],
            "vistudio_s": [round(x, 3) for x in vs_times],
        },
        "ratio": round(py_s / vs_s, 2) if vs_s > 0 else None,
        "matching_s": round(match_s, 3),
        "max_abs_diff": max(diffs),
        "equal": max(diffs) <= 1e-6,
        "stats": dict(zip(STAT_NAMES, ours.stats(), strict=True)),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
