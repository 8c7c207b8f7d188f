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
- **Areas** for the small / medium / large ranges (32², 96² pixels) are box areas ``w·h``: boxes
  carry no segmentation, whereas the official COCO annotations use the mask area.
- **Ties**: detections are ranked by score with a stable sort, so equal scores keep input order
  (images in ascending id order, then each image's predictions in the order given).
- At most 100 detections per image and class count (``maxDets``), best scores first.
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
    """One ground-truth box: class id, ``(x, y, w, h)`` in pixels, ignored region (crowd/difficult)."""

    class_id: int
    box: Box
    iscrowd: bool = False


class TruthImage(NamedTuple):
    """One evaluated image; an image with no boxes still counts (its detections are false positives)."""

    image_id: int
    width: int
    height: int
    boxes: Sequence[TruthBox] = ()


class PredictedBox(NamedTuple):
    class_id: int
    box: Box
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


def coco_datasets(
    *,
    truths: Sequence[TruthImage],
    predictions: Mapping[int, Sequence[PredictedBox]],
    class_ids: Iterable[int] = (),
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
        for class_id, box, crowd in image.boxes:
            x, y, w, h = (float(v) for v in box)
            categories.add(int(class_id))
            annotations.append(
                {
                    # ids start at 1: pycocotools records a match as the matched ground truth's
                    # id, so a ground truth with id 0 would read as unmatched
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(class_id),
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(bool(crowd)),
                }
            )
    if len({im["id"] for im in images}) != len(images):
        raise ValueError("image ids must be unique")
    known = {im["id"] for im in images}
    results: list[dict[str, Any]] = []
    # sorted by image id: the rank of tied scores follows this order in both engines
    for image_id in sorted(predictions):
        if int(image_id) not in known:
            raise ValueError(f"predictions for image {image_id}, which has no ground-truth entry")
        for class_id, box, score in predictions[image_id]:
            categories.add(int(class_id))
            results.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(class_id),
                    "bbox": [float(v) for v in box],
                    "score": float(score),
                }
            )
    dataset = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": str(c)} for c in sorted(categories)],
    }
    return dataset, results


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
    dataset, results = coco_datasets(truths=truths, predictions=predictions, class_ids=class_ids)
    per_class_undefined = {c["id"]: ClassAP(UNDEFINED, UNDEFINED) for c in dataset["categories"]}
    if not dataset["images"] or not dataset["categories"]:
        # nothing to evaluate: the engine needs at least one image and one category, and
        # pycocotools would report -1 for everything
        return CocoBoxMetrics.from_stats([UNDEFINED] * len(STAT_NAMES), per_class=per_class_undefined)

    # imported here: the package pulls in NumPy and its C++ extension, too heavy for CLI start-up
    import numpy as np
    from faster_coco_eval import COCO, COCOeval_faster

    gt = COCO(dataset, print_function=_quiet)
    dt = gt.loadRes(results)
    evaluator = COCOeval_faster(gt, dt, iouType="bbox", print_function=_quiet)
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
