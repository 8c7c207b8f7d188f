"""COCO box metrics (the 12 statistics of pycocotools' ``COCOeval.summarize`` plus per-class AP).

The engine is faster-coco-eval's ``COCOeval_faster``, which gives pycocotools' numbers (the tests
compare both on the same inputs) several times faster. Inputs are plain: ground truth per image
(:class:`TruthImage`) and predictions per image id (:class:`PredictedBox`), boxes in pixels as
``(x, y, w, h)`` with the top-left corner. Project annotations (normalised ``{"x", "y", "w", "h"}``
geometry) go through :func:`truth_box_from_geometry` or :func:`normalised_box_to_pixels` first.

Conventions, all pycocotools':

- **-1.0 means undefined**, never ``None``: a statistic with no ground truth to measure it (e.g.
  ``ap_small`` when no object is small, every statistic when there is no ground truth at all) and
  the per-class values of a class without ground truth are -1.0, and such classes are left out of
  the means. With ground truth but no predictions at all, the statistics are 0.0 (and -1.0 for
  the area ranges that hold no ground truth).
- **Ignored regions**: ``iscrowd`` boxes are matched but never counted (a detection on one is
  neither a true nor a false positive; several may match it; IoU = intersection / detection area).
  VOC's ``difficult`` objects are evaluated the same way, as crowd regions: VOC's own rule also
  ignores detections on a difficult object rather than counting them wrong.
- **Areas** for the small / medium / large ranges (32², 96² pixels) of ground truth are
  :attr:`TruthBox.area` when given (the mask area for objects with a mask, as in a COCO file's
  ``area``, which pycocotools uses for box evaluation too), else the box area ``w·h``; detections'
  areas are always ``w·h`` (pycocotools' ``loadRes``).
- **Ties**: detections are ranked by score with a stable sort, so equal scores keep input order
  (images in ascending id order, then each image's predictions in the order given).
- At most 100 detections per image and class count (``maxDets``), best scores first.

**Masks** (instance segmentation) go through :func:`coco_mask_metrics`, pycocotools'
``iouType="segm"``: ground truth :class:`TruthMask` and predictions :class:`PredictedMask` carry
COCO RLEs (``{"size": [h, w], "counts"}``, string or bytes counts) at the image size; areas are
mask areas; crowd regions as for boxes (IoU = intersection / detection mask area).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Box = tuple[float, float, float, float]

STAT_NAMES: tuple[str, ...] = (
    "ap",
    "ap50",
    "ap75",
    "ap_small",
    "ap_medium",
    "ap_large",
    "ar1",
    "ar10",
    "ar100",
    "ar_small",
    "ar_medium",
    "ar_large",
)
UNDEFINED = -1.0


class TruthBox(NamedTuple):
    """One ground-truth box: class id, ``(x, y, w, h)`` in pixels, ignored region (crowd/difficult),
    and the area that puts it in the small / medium / large range: ``w·h`` when None; for objects
    with a mask, the mask's area, as pycocotools reads a COCO file's ``area`` for box evaluation."""

    class_id: int
    box: Box
    iscrowd: bool = False
    area: float | None = None


class TruthImage(NamedTuple):
    """One evaluated image; an image with no boxes still counts (its detections are false positives)."""

    image_id: int
    width: int
    height: int
    # TruthBox objects for box metrics, TruthMask objects for mask metrics
    boxes: Sequence[TruthBox] | Sequence[TruthMask] = ()


class PredictedBox(NamedTuple):
    class_id: int
    box: Box
    score: float


class TruthMask(NamedTuple):
    """One ground-truth mask (COCO RLE at the image size) for :func:`coco_mask_metrics`."""

    class_id: int
    rle: Mapping[str, Any]
    iscrowd: bool = False


class PredictedMask(NamedTuple):
    class_id: int
    rle: Mapping[str, Any]
    score: float


@dataclass(frozen=True)
class ClassAP:
    """AP@[.5:.95] and AP50 of one class (all areas, 100 detections); -1.0 without ground truth."""

    ap: float
    ap50: float


@dataclass(frozen=True)
class CocoBoxMetrics:
    """The 12 COCO statistics (names of :data:`STAT_NAMES`) and AP per class id."""

    ap: float
    ap50: float
    ap75: float
    ap_small: float
    ap_medium: float
    ap_large: float
    ar1: float
    ar10: float
    ar100: float
    ar_small: float
    ar_medium: float
    ar_large: float
    per_class: Mapping[int, ClassAP] = field(default_factory=dict)

    def stats(self) -> tuple[float, ...]:
        """The 12 values in ``COCOeval.stats`` order."""
        return tuple(getattr(self, name) for name in STAT_NAMES)

    @classmethod
    def from_stats(cls, stats: Sequence[float], *, per_class: Mapping[int, ClassAP]) -> CocoBoxMetrics:
        """From the 12 values in ``COCOeval.stats`` order."""
        if len(stats) != len(STAT_NAMES):
            raise ValueError(f"expected {len(STAT_NAMES)} statistics, got {len(stats)}")
        s = [float(v) for v in stats]
        return cls(
            ap=s[0],
            ap50=s[1],
            ap75=s[2],
            ap_small=s[3],
            ap_medium=s[4],
            ap_large=s[5],
            ar1=s[6],
            ar10=s[7],
            ar100=s[8],
            ar_small=s[9],
            ar_medium=s[10],
            ar_large=s[11],
            per_class=per_class,
        )


def normalised_box_to_pixels(geometry: Mapping[str, Any], *, width: float, height: float) -> Box:
    """``{"x", "y", "w", "h"}`` in 0..1 of the image (the project's box geometry) → pixels xywh."""
    return (
        float(geometry["x"]) * width,
        float(geometry["y"]) * height,
        float(geometry["w"]) * width,
        float(geometry["h"]) * height,
    )


def is_ignored_region(geometry: Mapping[str, Any]) -> bool:
    """True for COCO crowd regions and VOC difficult objects, both evaluated as crowd regions."""
    return bool(geometry.get("iscrowd")) or bool(geometry.get("difficult"))


def truth_box_from_geometry(
    class_id: int, geometry: Mapping[str, Any], *, width: float, height: float
) -> TruthBox:
    """A project box annotation (normalised geometry with its flags) as a :class:`TruthBox`."""
    return TruthBox(
        class_id,
        normalised_box_to_pixels(geometry, width=width, height=height),
        is_ignored_region(geometry),
    )


def _rle(rle: Mapping[str, Any]) -> dict[str, Any]:
    from vistudio.ml.inference.detections import rle_for_json

    return rle_for_json(rle)


def _mask_geometry(rles: list[dict[str, Any]]) -> tuple[list[float], list[list[float]]]:
    """Areas and xywh boxes of RLE masks (the values pycocotools' ``loadRes`` gives results)."""
    if not rles:
        return [], []
    from faster_coco_eval.core import mask as mask_utils

    from vistudio.ml.inference.detections import rle_area, rle_for_coco

    areas = [float(a) for a in rle_area(rles)]
    boxes = [[float(v) for v in b] for b in mask_utils.toBbox([rle_for_coco(r) for r in rles])]
    return areas, boxes


def coco_datasets(
    *,
    truths: Sequence[TruthImage],
    predictions: Mapping[int, Sequence[PredictedBox]] | Mapping[int, Sequence[PredictedMask]],
    class_ids: Iterable[int] = (),
    iou_type: str = "bbox",
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The COCO ground-truth dict and the results list that :func:`coco_box_metrics` evaluates.

    Public so that a reference implementation can be run on exactly the same input. Categories are
    the union of ``class_ids``, the ground-truth classes and the predicted classes, so a class
    without ground truth is listed (and reported -1.0) instead of its predictions being dropped.
    """
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    categories = {int(c) for c in class_ids}
    for image in truths:
        image_id = int(image.image_id)
        images.append({"id": image_id, "width": int(image.width), "height": int(image.height)})
        objects: list[Any] = list(image.boxes)
        segm = [_rle(obj[1]) for obj in objects] if iou_type == "segm" else []
        areas, mask_boxes = _mask_geometry(segm)
        for n, obj in enumerate(objects):
            class_id, geometry, crowd = obj[0], obj[1], obj[2]
            categories.add(int(class_id))
            ann: dict[str, Any] = {
                # ids start at 1: pycocotools records a match as the matched ground truth's
                # id, so a ground truth with id 0 would read as unmatched
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": int(class_id),
                "iscrowd": int(bool(crowd)),
            }
            if iou_type == "segm":
                ann.update(segmentation=segm[n], area=areas[n], bbox=mask_boxes[n])
            else:
                x, y, w, h = (float(v) for v in geometry)
                area = obj.area if isinstance(obj, TruthBox) else None
                ann.update(bbox=[x, y, w, h], area=w * h if area is None else float(area))
            annotations.append(ann)
    if len({im["id"] for im in images}) != len(images):
        raise ValueError("image ids must be unique")
    known = {im["id"] for im in images}
    results: list[dict[str, Any]] = []
    # sorted by image id: the rank of tied scores follows this order in both engines
    for image_id in sorted(predictions):
        if int(image_id) not in known:
            raise ValueError(f"predictions for image {image_id}, which has no ground-truth entry")
        listed: list[Any] = list(predictions[image_id])
        iid = int(image_id)
        if iou_type == "segm":
            for class_id, geometry, score in listed:
                results.append(
                    {
                        "image_id": iid,
                        "category_id": int(class_id),
                        "score": float(score),
                        "segmentation": _rle(geometry),
                    }
                )
        else:
            results.extend(
                {"image_id": iid, "category_id": int(c), "score": float(s), "bbox": list(map(float, b))}
                for c, b, s in listed
            )
        categories.update(int(p[0]) for p in listed)
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in sorted(categories)],
    }
    return dataset, results


def _results_dataset(dataset: dict[str, Any], results: list[dict[str, Any]], iou_type: str) -> dict[str, Any]:
    """The results as a COCO dataset, with the fields pycocotools' ``loadRes`` adds (``id`` from 1,
    ``iscrowd`` 0, ``area``: the box's ``w·h`` for boxes, the mask's area and box for masks) —
    built directly, without ``loadRes``'s copies and the polygon it makes of every box. The result
    dicts are completed in place."""
    annotations = results  # completed in place: the caller's lists are its own
    if iou_type == "segm":
        areas, boxes = _mask_geometry([r["segmentation"] for r in annotations])
        for i, (r, area, box) in enumerate(zip(annotations, areas, boxes, strict=True), start=1):
            r.update(id=i, iscrowd=0, area=area, bbox=box)
    else:
        for i, r in enumerate(annotations, start=1):
            b = r["bbox"]
            r.update(id=i, iscrowd=0, area=b[2] * b[3])
    return {"images": dataset["images"], "categories": dataset["categories"], "annotations": annotations}


def _quiet(*_args: Any, **_kwargs: Any) -> None:
    """faster-coco-eval's print function: it would log or print every step and the summary table."""


def coco_box_metrics(
    *,
    truths: Sequence[TruthImage],
    predictions: Mapping[int, Sequence[PredictedBox]],
    class_ids: Iterable[int] = (),
) -> CocoBoxMetrics:
    """The 12 COCO box statistics and per-class AP / AP50, as pycocotools computes them.

    ``truths``: every evaluated image (unique ``image_id``), with its boxes; ``predictions``:
    image id → its predicted boxes (an image may be missing or map to an empty list).
    ``class_ids``: classes to report even when neither the truth nor the predictions hold them.
    Undefined values are -1.0 (see the module docstring).
    """
    return _coco_metrics(truths=truths, predictions=predictions, class_ids=class_ids, iou_type="bbox")


def coco_mask_metrics(
    *,
    truths: Sequence[TruthImage],
    predictions: Mapping[int, Sequence[PredictedMask]],
    class_ids: Iterable[int] = (),
) -> CocoBoxMetrics:
    """The 12 COCO mask statistics and per-class mask AP / AP50 (pycocotools' ``segm``).

    As :func:`coco_box_metrics`, with each image's objects :class:`TruthMask` and the
    predictions :class:`PredictedMask`: RLEs of the image's size."""
    return _coco_metrics(truths=truths, predictions=predictions, class_ids=class_ids, iou_type="segm")


def _coco_metrics(
    *,
    truths: Sequence[TruthImage],
    predictions: Mapping[int, Sequence[PredictedBox]] | Mapping[int, Sequence[PredictedMask]],
    class_ids: Iterable[int],
    iou_type: str,
) -> CocoBoxMetrics:
    dataset, results = coco_datasets(
        truths=truths, predictions=predictions, class_ids=class_ids, iou_type=iou_type
    )
    per_class_undefined = {c["id"]: ClassAP(UNDEFINED, UNDEFINED) for c in dataset["categories"]}
    if not dataset["images"] or not dataset["categories"]:
        # nothing to evaluate: the engine needs at least one image and one category, and
        # pycocotools would report -1 for everything
        return CocoBoxMetrics.from_stats([UNDEFINED] * len(STAT_NAMES), per_class=per_class_undefined)

    # imported here: the package pulls in NumPy and its C++ extension, too heavy for CLI start-up
    import numpy as np
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(dataset, print_function=_quiet)
    dt = COCO(_results_dataset(dataset, results, iou_type), print_function=_quiet)
    evaluator = COCOeval_faster(gt, dt, iouType=iou_type, print_function=_quiet)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
    # faster-coco-eval appends AR50 and AR75 after pycocotools' 12
    stats = [float(v) for v in evaluator.stats[: len(STAT_NAMES)]]

    # precision: [T iou thresholds, R recall points, K classes, A areas ("all" first), M maxDets
    # (100 last)]; per class, averaged over the defined (> -1) values as pycocotools' summarize does
    precision = np.asarray(evaluator.eval["precision"])
    per_class: dict[int, ClassAP] = {}
    for k, class_id in enumerate(evaluator.params.catIds):
        all_iou = precision[:, :, k, 0, -1]
        iou50 = precision[0, :, k, 0, -1]
        per_class[int(class_id)] = ClassAP(
            ap=float(np.mean(all_iou[all_iou > -1])) if (all_iou > -1).any() else UNDEFINED,
            ap50=float(np.mean(iou50[iou50 > -1])) if (iou50 > -1).any() else UNDEFINED,
        )
    return CocoBoxMetrics.from_stats(stats, per_class=per_class)
