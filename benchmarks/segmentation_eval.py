"""Semantic segmentation evaluation benchmark: vistudio's confusion histogram and scores against
the textbook NumPy baseline (``np.bincount`` of ``K·truth + prediction`` over the labelled pixels,
one image at a time) and torchmetrics' ``MulticlassJaccardIndex``, on the same label maps, one core.

    .venv/bin/python benchmarks/segmentation_eval.py [--images 1000] [--size 512] [--classes 21]

Ground truth: blobs of random classes with 5 % of the pixels ignored (255); predictions: the truth
with a fifth of it changed. Prints one JSON document: images per second of each, the ratios, and
the largest mIoU difference (all three must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from vistudio.ml.inference.segmentation_metrics import confusion_histogram, segmentation_scores

IGNORE = 255


def label_maps(n: int, size: int, classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` truth and prediction maps (uint8, ``size``×``size``): coarse blocks of random classes
    upsampled (regions, not noise), some pixels ignored, a fifth of the prediction changed."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (n, size // 32, size // 32), dtype=np.uint8)
    truth = coarse.repeat(32, axis=1).repeat(32, axis=2)
    pred = truth.copy()
    noise = rng.random(truth.shape) < 0.2
    pred[noise] = rng.integers(0, classes, int(noise.sum()), dtype=np.uint8)
    truth[rng.random(truth.shape) < 0.05] = IGNORE
    return truth, pred


def baseline_miou(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    hist = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        m = t != IGNORE
        hist += np.bincount(k * t[m].astype(np.int64) + p[m], minlength=k * k).reshape(k, k)
    tp = np.diag(hist)
    union = hist.sum(0) + hist.sum(1) - tp
    return float((tp[union > 0] / union[union > 0]).mean())


def vistudio_miou(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    hist = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(truth, pred, strict=True):
        confusion_histogram(t, p, k, out=hist)
    miou = segmentation_scores(hist).miou
    assert miou is not None
    return miou


def torchmetrics_miou(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    import torch
    from torchmetrics.classification import MulticlassJaccardIndex

    torch.set_num_threads(1)
    metric = MulticlassJaccardIndex(num_classes=k, average="macro", ignore_index=IGNORE)
    for t, p in zip(truth, pred, strict=True):
        metric.update(torch.from_numpy(p).long(), torch.from_numpy(t).long())
    return float(metric.compute())


def timed(fn, *args) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    value = fn(*args)
    return time.perf_counter() - start, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--classes", type=int, default=21)
    args = ap.parse_args()
    truth, pred = label_maps(args.images, args.size, args.classes)
    ours_s, ours = timed(vistudio_miou, truth, pred, args.classes)
    base_s, base = timed(baseline_miou, truth, pred, args.classes)
    tm_s, tm = timed(torchmetrics_miou, truth, pred, args.classes)
    print(
        json.dumps(
            {
                "benchmark": "segmentation_eval",
                "machine": platform.machine(),
                "images": args.images,
                "size": args.size,
                "classes": args.classes,
                "vistudio_images_per_s": round(args.images / ours_s, 1),
                "numpy_bincount_images_per_s": round(args.images / base_s, 1),
                "torchmetrics_images_per_s": round(args.images / tm_s, 1),
                "ratio_vs_numpy": round(base_s / ours_s, 3),
                "ratio_vs_torchmetrics": round(tm_s / ours_s, 3),
                "miou": round(ours, 6),
                "max_abs_diff": max(abs(ours - base), abs(ours - tm)),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
