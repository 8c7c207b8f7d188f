"""Semantic segmentation scores from one confusion histogram, the MMSegmentation way.

Training's validation, the evaluation and any report compute them alike: every image adds its
pixels to one ``(K, K)`` histogram (:func:`confusion_histogram`: rows the true class, columns the
predicted one; pixels labelled ``ignore_index`` are left out), and the scores come from the sum
(:func:`segmentation_scores`):

- **IoU** of class ``k``: ``TP / (TP + FP + FN)`` over the whole dataset's pixels;
- **mIoU**: the mean IoU over the classes present in the labels or the predictions; a class
  absent from both (``TP + FP + FN = 0``) has no IoU (``None``) and is left out of the mean. This is
  MMSegmentation's ``mIoU`` and equals torchmetrics' ``MulticlassJaccardIndex(average="macro",
  ignore_index=255)``. It is *not* the mean of per-image mIoUs (torchmetrics'
  ``segmentation.MeanIoU``), which weighs a small image as much as a large one and counts a class
  missing from an image differently;
- **pixel accuracy**: correct pixels / labelled pixels;
- **mean class accuracy**: the mean over classes present in the labels of ``TP / (TP + FN)``
  (MMSegmentation's ``mAcc``, the mean recall);
- **Dice** of class ``k``: ``2·TP / (2·TP + FP + FN)`` (the F1 score of its pixels), ``None`` where
  the IoU is; **mean Dice** over the same classes as mIoU (MMSegmentation's ``mDice``).

:func:`image_iou` is the mIoU of one image's histogram (for ranking images in an evaluation).

A library module: NumPy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

IGNORE_INDEX = 255


def confusion_histogram(
    truth: npt.ArrayLike,
    pred: npt.ArrayLike,
    num_classes: int,
    ignore_index: int | None = IGNORE_INDEX,
    *,
    out: npt.NDArray[np.int64] | None = None,
) -> npt.NDArray[np.int64]:
    """The ``(num_classes, num_classes)`` int64 histogram of one label map against a prediction
    of the same shape: ``hist[t, p]`` counts the pixels of true class ``t`` predicted ``p``.

    Pixels whose truth is ``ignore_index`` are left out, and so are truths outside
    ``0..num_classes-1``; a prediction outside that range is an error (a model cannot predict a
    class it does not have). With ``out`` the counts are added to it (accumulating over images)
    and ``out`` is returned."""
    if num_classes < 1:
        raise ValueError("num_classes must be at least 1")
    t = np.asarray(truth)
    p = np.asarray(pred)
    if t.shape != p.shape:
        raise ValueError(f"truth and prediction differ in size: {np.shape(truth)} vs {np.shape(pred)}")
    if p.size and (int(p.min()) < 0 or int(p.max()) >= num_classes):
        raise ValueError(f"predicted classes must be in 0..{num_classes - 1}")
    # one bincount over a row index per pixel, without selecting pixels first: every truth that
    # does not count (ignore_index, outside 0..K-1) goes to a spare row K that is dropped
    k = num_classes
    if t.dtype.kind == "u" and p.dtype.kind == "u" and k < 256 and (ignore_index is None or ignore_index >= k):
        # label maps as stored (uint8): the index fits 16 bits, and clipping the truth at K sends
        # ignore_index and every other truth above K-1 to the spare row at once
        index = np.minimum(t.reshape(-1), k).astype(np.uint16) * np.uint16(k) + p.reshape(-1)
    else:
        rows = t.astype(np.int64).reshape(-1)
        skip = (rows < 0) | (rows >= k)
        if ignore_index is not None:
            skip |= rows == ignore_index
        np.copyto(rows, k, where=skip)
        index = rows * k + p.reshape(-1)
    counts = np.bincount(index, minlength=(k + 1) * k)[: k * k]
    hist = counts.reshape(num_classes, num_classes).astype(np.int64, copy=False)
    if out is None:
        return hist
    if out.shape != hist.shape:
        raise ValueError(f"out has shape {out.shape}, expected {hist.shape}")
    out += hist
    return out


@dataclass(frozen=True)
class SegmentationScores:
    """The scores of one histogram; per-class lists are in class order, ``None`` where a class has
    no value (absent from labels and predictions; for the accuracy: absent from the labels)."""

    miou: float | None
    per_class_iou: list[float | None]
    pixel_accuracy: float | None
    mean_class_accuracy: float | None
    per_class_accuracy: list[float | None]
    dice: float | None
    per_class_dice: list[float | None]
    pixels: int  # labelled pixels counted

    def to_dict(self) -> dict[str, Any]:
        return {
            "miou": self.miou,
            "per_class_iou": list(self.per_class_iou),
            "pixel_accuracy": self.pixel_accuracy,
            "mean_class_accuracy": self.mean_class_accuracy,
            "per_class_accuracy": list(self.per_class_accuracy),
            "dice": self.dice,
            "per_class_dice": list(self.per_class_dice),
            "pixels": self.pixels,
        }


def _mean(values: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]) -> float | None:
    return float(values[present].mean()) if present.any() else None


def _listed(values: npt.NDArray[np.float64], present: npt.NDArray[np.bool_]) -> list[float | None]:
    return [float(v) if ok else None for v, ok in zip(values.tolist(), present.tolist(), strict=True)]


def segmentation_scores(hist: npt.ArrayLike) -> SegmentationScores:
    """The scores of a ``(K, K)`` confusion histogram (rows truth, columns prediction), see the
    module's docstring for the definitions. An empty histogram gives ``None`` everywhere."""
    h = np.asarray(hist, dtype=np.float64)
    if h.ndim != 2 or h.shape[0] != h.shape[1]:
        raise ValueError(f"a confusion histogram is square, got shape {h.shape}")
    tp = np.diag(h)
    truth = h.sum(axis=1)  # TP + FN
    predicted = h.sum(axis=0)  # TP + FP
    union = truth + predicted - tp
    present = union > 0
    labelled = truth > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(present, tp / union, 0.0)
        dice = np.where(present, 2 * tp / (truth + predicted), 0.0)
        accuracy = np.where(labelled, tp / truth, 0.0)
    total = float(truth.sum())
    return SegmentationScores(
        miou=_mean(iou, present),
        per_class_iou=_listed(iou, present),
        pixel_accuracy=float(tp.sum() / total) if total > 0 else None,
        mean_class_accuracy=_mean(accuracy, labelled),
        per_class_accuracy=_listed(accuracy, labelled),
        dice=_mean(dice, present),
        per_class_dice=_listed(dice, present),
        pixels=int(total),
    )


def image_iou(hist: npt.ArrayLike) -> float | None:
    """The mIoU of one image's histogram (classes absent from its labels and prediction left
    out); ``None`` when the image has no labelled pixel."""
    return segmentation_scores(hist).miou
