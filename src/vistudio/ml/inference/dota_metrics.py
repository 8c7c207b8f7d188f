"""DOTA-style average precision of oriented detections: the DOTA devkit's ``voc_eval`` rules.

Per class, detections in decreasing score (ties in the order given); each is matched to the
ground-truth object of its image with the largest polygon IoU; it is a true positive when that IoU
is **above** the threshold (strictly, 0.5 by default) and the object was not matched before, a
false positive otherwise; a detection whose best object is ``difficult`` counts as neither, and
difficult objects are not counted in the recall. AP is the 11-point interpolated precision (the
devkit's and MMRotate's default) or the area under the interpolated precision-recall curve
(``method="area"``, VOC 2010+). A class without a (non-difficult) object has no AP (``None``) and
is left out of the mean. The devkit's horizontal-box pre-filter changes no result (a pair it drops
has polygon IoU 0) and is replaced by the exact bounding-box test of ``rotated_iou_matrix``.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.ml.inference.rotated import rotated_iou_matrix


@dataclass(frozen=True)
class OrientedObject:
    image: Any
    label: int
    corners: npt.ArrayLike  # (4, 2) pixels
    difficult: bool = False


@dataclass(frozen=True)
class OrientedDetection:
    image: Any
    label: int
    corners: npt.ArrayLike  # (4, 2) pixels
    score: float


def voc_ap(recall: npt.ArrayLike, precision: npt.ArrayLike, *, method: str = "11point") -> float:
    """AP from a precision-recall curve: 11-point interpolation or the area under the envelope."""
    rec = np.asarray(recall, dtype=np.float64)
    prec = np.asarray(precision, dtype=np.float64)
    if method == "11point":
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            above = prec[rec >= t]
            ap += (float(above.max()) if above.size else 0.0) / 11.0
        return ap
    if method != "area":
        raise ValueError(f"method is '11point' or 'area', got {method!r}")
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())


def dota_ap(
    detections: list[OrientedDetection],
    truths: list[OrientedObject],
    *,
    num_classes: int,
    iou_threshold: float = 0.5,
    method: str = "11point",
) -> dict[str, Any]:
    """``{"ap": [per class, None without objects], "map": mean over classes with objects,
    "recall": [final recall per class], "precision": [final precision per class]}``."""
    by_class_truth: dict[int, dict[Any, list[OrientedObject]]] = defaultdict(lambda: defaultdict(list))
    for t in truths:
        by_class_truth[t.label][t.image].append(t)
    by_class_det: dict[int, list[tuple[int, OrientedDetection]]] = defaultdict(list)
    for i, d in enumerate(detections):
        by_class_det[d.label].append((i, d))
    aps: list[float | None] = []
    recalls: list[float | None] = []
    precisions: list[float | None] = []
    for c in range(num_classes):
        images = by_class_truth.get(c, {})
        npos = sum(not t.difficult for objs in images.values() for t in objs)
        dets = sorted(by_class_det.get(c, []), key=lambda x: (-x[1].score, x[0]))
        tp = np.zeros(len(dets))
        fp = np.zeros(len(dets))
        # IoU of every detection with the objects of its image, per image at once
        per_image: dict[Any, list[int]] = defaultdict(list)
        for k, (_, d) in enumerate(dets):
            per_image[d.image].append(k)
        best = np.full(len(dets), -np.inf)
        best_j = np.zeros(len(dets), dtype=int)
        for image, ks in per_image.items():
            objs = images.get(image, [])
            if not objs:
                continue
            ious = rotated_iou_matrix(
                np.array([dets[k][1].corners for k in ks], dtype=np.float64),
                np.array([o.corners for o in objs], dtype=np.float64),
            )
            best[ks] = ious.max(1)
            best_j[ks] = ious.argmax(1)
        matched: dict[Any, set[int]] = defaultdict(set)
        for k, (_, d) in enumerate(dets):
            if best[k] > iou_threshold:
                obj = images[d.image][best_j[k]]
                if obj.difficult:
                    continue
                if best_j[k] not in matched[d.image]:
                    tp[k] = 1.0
                    matched[d.image].add(int(best_j[k]))
                else:
                    fp[k] = 1.0
            else:
                fp[k] = 1.0
        if npos == 0:
            aps.append(None)
            recalls.append(None)
            precisions.append(None)
            continue
        ctp, cfp = np.cumsum(tp), np.cumsum(fp)
        rec = ctp / npos
        prec = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, method=method))
        recalls.append(float(rec[-1]) if rec.size else 0.0)
        precisions.append(float(prec[-1]) if prec.size else 0.0)
    scored = [a for a in aps if a is not None]
    return {
        "ap": aps,
        "map": float(np.mean(scored)) if scored else None,
        "recall": recalls,
        "precision": precisions,
        "iou_threshold": iou_threshold,
        "method": method,
    }
