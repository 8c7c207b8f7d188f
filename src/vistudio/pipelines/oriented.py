"""``detect_onnx`` with an oriented (rotated-box) detector: its rotated boxes, matched to the item's
rotated ground truth as the oriented evaluation matches them.

A part of the ``detect_onnx`` stage of ``pipelines/builtin`` (which calls :func:`detect_oriented`
when the exported file is an oriented detector); it borrows that module's helpers.

Ground truth: ``item.meta["objects"]`` (a project's items carry it, see ``services.runs``), each
``{"class", "points" [[x, y] × 4], "iscrowd"}`` in the pixels of the item's file
(``item.meta["width"]``×``["height"]``), ``iscrowd`` a difficult object (or a crowd region); an
object with only a ``box`` [x1, y1, x2, y2] (an axis-aligned project's) is the rotated box of that
rectangle at angle 0. The corners are mapped onto the image the detector saw (``builtin._to_image``:
resizes scale them). After a ``crop``, an object wholly outside the image is left out; one the
crop cuts is kept whole when more than :data:`KEPT_PART` of its area is inside, and becomes a
difficult object when that much or less is — the DOTA devkit's image splitting marks cut objects
difficult at the same threshold, but cuts the ones it keeps, while a cut rotated box would no
longer be a rectangle (a detection of the kept part of a box 70 % inside has a rotated IoU of
0.7 with the whole box).

Matching: :func:`vistudio.ml.inference.rotated.match_image`, the oriented evaluation's own — the
DOTA devkit's rule: predictions in decreasing score, each to the object of its class with the
largest rotated (polygon) IoU; above ``iou`` a true positive when that object was not found
before, a false positive when it was, ignored when it is difficult; at or under it a false
positive. Difficult objects are never missed. Predictions under the score threshold take no part
(greedy in score order, the outcome of the predictions kept is the one they have among all, so
the counts equal the evaluation's per-image counts at that threshold).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from vistudio.pipelines.stage import Item, StageError, StepOutput

KEPT_PART = 0.7  # the part of a rotated box a crop must keep (more than it) for it to stay an object


def _corners(obj: Any) -> np.ndarray | None:
    """An object's corners ``(4, 2)`` in its own pixels: its ``points``, or its ``box``'s corners;
    None when it has neither in a usable form."""
    if not isinstance(obj, dict):
        return None
    points, box = obj.get("points"), obj.get("box")
    try:
        if points is not None:
            corners = np.asarray(points, dtype=np.float64)
        elif isinstance(box, list | tuple) and len(box) == 4:
            x1, y1, x2, y2 = (float(v) for v in box)
            corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
        else:
            return None
    except (TypeError, ValueError):  # not numbers
        return None
    if corners.shape != (4, 2) or not np.isfinite(corners).all():
        return None
    return corners


def rotated_truths(item: Item, classes: list[str], size: tuple[int, int]) -> list[dict[str, Any]] | None:
    """The item's ground-truth objects (see the module's docstring) in the pixels of the ``size``
    (w, h) image the detector saw, as the matching reads them: ``{"class_index" (-1 for a class the
    model does not know: never found), "label", "points", "iscrowd"}``; None when the item has
    none."""
    objects = item.meta.get("objects")
    if not isinstance(objects, list):
        return None
    from vistudio.ml.inference.rotated import intersection_area, polygon_area
    from vistudio.pipelines.builtin import _to_image

    scale, offset, cropped = _to_image(item, size)
    index = {name: i for i, name in enumerate(classes)}
    usable = [(obj, c) for obj in objects if (c := _corners(obj)) is not None]
    corners = np.array([c for _, c in usable], dtype=np.float64).reshape(-1, 4, 2) * scale + offset
    area = polygon_area(corners)
    ignored = np.array([bool(obj.get("iscrowd")) for obj, _ in usable], dtype=bool)
    keep = area > 0  # no width or no height: nothing to find
    if cropped:
        image = np.array([[0.0, 0.0], [size[0], 0.0], [size[0], size[1]], [0.0, size[1]]])
        inside = intersection_area(corners, np.broadcast_to(image, corners.shape)) / np.where(keep, area, 1.0)
        keep &= inside > 0
        ignored |= inside <= KEPT_PART
    return [
        {
            "class_index": index.get(str(obj.get("class")), -1),
            "label": str(obj.get("class")),
            "points": corners[i].tolist(),
            "iscrowd": bool(ignored[i]),
        }
        for i, (obj, _) in enumerate(usable)
        if keep[i]
    ]


def detect_oriented(
    item: Item,
    det: Any,
    chw: Any,
    original: tuple[int, int],
    picture: Image.Image,
    *,
    score_threshold: float | None,
    iou: float,
) -> StepOutput:
    """``detect_onnx`` with an oriented detector ``det`` on ``chw`` (3, H, W) float32 in 0..1,
    detections in the pixels of ``original`` (w, h), drawn over ``picture``: the stage's result,
    with the matching's keys (``truth``, ``tp``, ``fp``, ``fn``, ``outcomes``, ``mistaken``, as the
    box detectors give them) when the item has ground truth."""
    from vistudio.ml.inference.onnx_oriented import draw_oriented, draw_oriented_outcomes
    from vistudio.ml.inference.rotated import match_image
    from vistudio.pipelines.builtin import _summary, _to_array

    try:
        found = det.detect(chw, original_size=original, score_threshold=score_threshold)
    except Exception as exc:  # onnxruntime's failure on this input, reported with its reason
        raise StageError(f"detect_onnx: {getattr(exc, 'message', exc)}") from exc
    classes = list(det.classes)
    detections = found.to_list(classes)
    result: dict[str, Any] = {
        "label": _summary([d["label"] for d in detections]),
        "count": len(found),
        "detections": detections,
    }
    metrics: dict[str, float] = {"detections": float(len(found))}
    if len(found):
        metrics["max_score"] = float(found.scores.max())
    truths = rotated_truths(item, classes, original)
    if truths is None:
        overlay = draw_oriented(picture, found, classes)
    else:
        preds = [dict(d) for d in detections]  # the matching marks its own copies
        match_image(preds, truths, iou)
        outcomes = [p["outcome"] for p in preds]
        tp, fp = outcomes.count("tp"), outcomes.count("fp")
        fn = sum(t["outcome"] == "fn" for t in truths)
        metrics |= {"tp": float(tp), "fp": float(fp), "fn": float(fn)}
        result |= {
            "truth": _summary([t["label"] for t in truths if not t["iscrowd"]]),
            "tp": tp,
            "fp": fp,
            "fn": fn,
            "outcomes": outcomes,
            "mistaken": bool(fp or fn),
        }
        overlay = draw_oriented_outcomes(
            picture,
            found,
            outcomes,
            np.asarray([t["points"] for t in truths], np.float64).reshape(-1, 4, 2),
            [t["outcome"] for t in truths],
            classes,
        )
    return StepOutput(
        data=result,
        outputs=[(_to_array(overlay), "overlay", "png"), (result, "detections", "json")],
        metrics=metrics,
    )
