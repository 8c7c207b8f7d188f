"""Semantic segmentation scores (``ml/inference/segmentation_metrics``): the dataset-wide histogram
mIoU of MMSegmentation, equal to torchmetrics' ``MulticlassJaccardIndex(average="macro",
ignore_index=255)`` and to a plain NumPy reference written class by class, with classes absent from
labels and predictions left out and ignored pixels not counted; torchmetrics'
``segmentation.MeanIoU`` (a mean of per-image IoUs) gives another number, which is why it is not
used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torchmetrics.classification import MulticlassJaccardIndex
from torchmetrics.segmentation import MeanIoU

from vistudio.ml.inference.segmentation_metrics import (
    IGNORE_INDEX,
    confusion_histogram,
    image_iou,
    segmentation_scores,
)

K = 6  # class 5 appears nowhere; class 4 only in predictions; class 3 only in labels


def _images(seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Label maps and predictions of several sizes: classes 0-3 in the labels, 0-2 and 4 in the
    predictions, about 10 % of the labels ignored (255)."""
    rng = np.random.default_rng(seed)
    out = []
    for h, w in ((17, 23), (40, 31), (8, 64), (29, 29)):
        truth = rng.integers(0, 4, (h, w)).astype(np.uint8)
        truth[rng.random((h, w)) < 0.1] = IGNORE_INDEX
        pred = truth.copy()
        noisy = rng.random((h, w)) < 0.4
        pred[noisy] = rng.choice([0, 1, 2, 4], size=int(noisy.sum()))
        pred[pred == 3] = rng.choice([0, 4], size=int((pred == 3).sum()))  # class 3 never predicted…
        pred[pred == IGNORE_INDEX] = rng.integers(0, 3, size=int((pred == IGNORE_INDEX).sum()))
        out.append((truth, pred.astype(np.uint8)))
    return out


def _reference(images: list[tuple[np.ndarray, np.ndarray]], k: int) -> dict[str, Any]:
    """Every score class by class with boolean masks, nothing shared with the module."""
    truth = np.concatenate([t.reshape(-1) for t, _ in images])
    pred = np.concatenate([p.reshape(-1) for _, p in images])
    keep = truth != IGNORE_INDEX
    truth, pred = truth[keep], pred[keep]
    ious, dices, accs = [], [], []
    for c in range(k):
        tp = int(np.sum((truth == c) & (pred == c)))
        fp = int(np.sum((truth != c) & (pred == c)))
        fn = int(np.sum((truth == c) & (pred != c)))
        ious.append(tp / (tp + fp + fn) if tp + fp + fn else None)
        dices.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else None)
        accs.append(tp / (tp + fn) if tp + fn else None)
    return {
        "ious": ious,
        "dices": dices,
        "accs": accs,
        "miou": float(np.mean([v for v in ious if v is not None])),
        "dice": float(np.mean([v for v in dices if v is not None])),
        "macc": float(np.mean([v for v in accs if v is not None])),
        "pixel_accuracy": float(np.mean(truth == pred)),
        "pixels": int(truth.size),
    }


def _histogram(images: list[tuple[np.ndarray, np.ndarray]], k: int = K) -> np.ndarray:
    hist = np.zeros((k, k), np.int64)
    for truth, pred in images:
        confusion_histogram(truth, pred, k, out=hist)
    return hist


def test_the_histogram_counts_truth_by_row_and_prediction_by_column() -> None:
    truth = np.array([[0, 1, 1], [2, 255, 1]], np.uint8)
    pred = np.array([[0, 1, 2], [2, 0, 0]], np.uint8)
    hist = confusion_histogram(truth, pred, 3)
    assert hist.dtype == np.int64 and hist.shape == (3, 3)
    assert hist.tolist() == [[1, 0, 0], [1, 1, 1], [0, 0, 1]]  # the ignored pixel is not counted
    # accumulating over images into one histogram
    total = np.zeros((3, 3), np.int64)
    assert confusion_histogram(truth, pred, 3, out=total) is total
    confusion_histogram(truth, pred, 3, out=total)
    assert (total == 2 * hist).all()
    # no ignore index: 255 is outside the classes and left out all the same
    assert confusion_histogram(truth, pred, 3, ignore_index=None).sum() == 5
    with pytest.raises(ValueError, match="differ in size"):
        confusion_histogram(truth, pred[:, :2], 3)
    with pytest.raises(ValueError, match=r"predicted classes must be in 0\.\.2"):
        confusion_histogram(truth, np.full_like(pred, 3), 3)
    with pytest.raises(ValueError, match="out has shape"):
        confusion_histogram(truth, pred, 3, out=np.zeros((2, 2), np.int64))


def test_miou_equals_torchmetrics_macro_jaccard_and_a_numpy_reference() -> None:
    images = _images()
    scores = segmentation_scores(_histogram(images))
    ref = _reference(images, K)
    # the torchmetrics definition the field notes measured: dataset-wide, absent classes left out
    jaccard = MulticlassJaccardIndex(num_classes=K, average="macro", ignore_index=IGNORE_INDEX)
    for truth, pred in images:
        jaccard.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    expected = float(jaccard.compute())
    assert scores.miou is not None
    assert abs(scores.miou - expected) < 1e-7
    assert abs(scores.miou - ref["miou"]) < 1e-7
    # the absent class has no IoU and is not in the mean; a class only predicted, or only
    # labelled, has an IoU of 0 and counts
    assert (
        scores.per_class_iou[5] is None and scores.per_class_iou[4] == 0.0 and scores.per_class_iou[3] == 0.0
    )
    for got, want in zip(scores.per_class_iou, ref["ious"], strict=True):
        assert (got is None) == (want is None) and (got is None or abs(got - want) < 1e-12)
    # the other scores against the reference
    assert scores.pixel_accuracy is not None and abs(scores.pixel_accuracy - ref["pixel_accuracy"]) < 1e-12
    assert scores.pixels == ref["pixels"]
    assert scores.mean_class_accuracy is not None and abs(scores.mean_class_accuracy - ref["macc"]) < 1e-12
    assert scores.per_class_accuracy[4] is None  # never labelled: no recall
    assert scores.dice is not None and abs(scores.dice - ref["dice"]) < 1e-12
    for got, want in zip(scores.per_class_dice, ref["dices"], strict=True):
        assert (got is None) == (want is None) and (got is None or abs(got - want) < 1e-12)
    assert scores.to_dict()["per_class_iou"][5] is None


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_miou_agrees_with_torchmetrics_on_more_random_sets(seed: int) -> None:
    images = _images(seed)
    jaccard = MulticlassJaccardIndex(num_classes=K, average="macro", ignore_index=IGNORE_INDEX)
    for truth, pred in images:
        jaccard.update(torch.from_numpy(pred.astype(np.int64)), torch.from_numpy(truth.astype(np.int64)))
    miou = segmentation_scores(_histogram(images)).miou
    assert miou is not None and abs(miou - float(jaccard.compute())) < 1e-7


def test_a_mean_of_per_image_ious_is_another_number() -> None:
    """torchmetrics' ``segmentation.MeanIoU`` averages the IoU of each image: a small image with a
    rare class weighs as much as a large one. Same images, same predictions, other result."""
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 3, (4, 32, 32))
    pred = truth.copy()
    pred[0][rng.random((32, 32)) < 0.6] = 2  # one image predicted badly, the others perfectly
    pred[1, :16] = 0
    images = [(t.astype(np.uint8), p.astype(np.uint8)) for t, p in zip(truth, pred, strict=True)]
    dataset = segmentation_scores(_histogram(images, 3)).miou
    per_image = MeanIoU(num_classes=3, input_format="index")
    per_image.update(torch.from_numpy(pred), torch.from_numpy(truth))
    averaged = float(per_image.compute())
    mean_of_images = float(np.mean([image_iou(confusion_histogram(t, p, 3)) for t, p in images]))
    assert dataset is not None
    assert abs(averaged - mean_of_images) < 1e-6  # what MeanIoU computes: the mean of image mIoUs
    assert abs(averaged - dataset) > 0.01  # … which is not the dataset's mIoU


def test_scores_of_edge_cases() -> None:
    empty = segmentation_scores(np.zeros((3, 3), np.int64))
    assert empty.miou is None and empty.pixel_accuracy is None and empty.dice is None
    assert empty.per_class_iou == [None, None, None] and empty.pixels == 0
    perfect = segmentation_scores(np.diag([5, 0, 7]))
    assert perfect.miou == 1.0 and perfect.per_class_iou == [1.0, None, 1.0] and perfect.dice == 1.0
    assert image_iou(np.array([[3, 1], [0, 0]])) == pytest.approx((3 / 4 + 0.0) / 2)
    assert image_iou(np.zeros((2, 2))) is None  # nothing labelled in the image
    with pytest.raises(ValueError, match="square"):
        segmentation_scores(np.zeros((2, 3)))


@pytest.mark.parametrize("ignore_index", [255, 3, None])
def test_the_uint8_fast_path_counts_as_the_general_one(ignore_index: int | None) -> None:
    """Stored label maps are uint8 and take a 16-bit shortcut; signed or wide inputs, and an
    ignore index inside the classes, take the general path — the same counts either way."""
    rng = np.random.default_rng(11)
    truth = rng.integers(0, 12, (64, 48)).astype(np.uint8)  # 10 and 11: outside the 10 classes
    truth[rng.random(truth.shape) < 0.1] = 255
    pred = rng.integers(0, 10, (64, 48)).astype(np.uint8)
    wide = confusion_histogram(truth.astype(np.int64), pred.astype(np.int64), 10, ignore_index)
    fast = confusion_histogram(truth, pred, 10, ignore_index)
    assert np.array_equal(fast, wide)
    m = (truth < 10) & (truth != (ignore_index if ignore_index is not None else -1))
    expected = np.zeros((10, 10), dtype=np.int64)
    np.add.at(expected, (truth[m].astype(int), pred[m].astype(int)), 1)
    assert np.array_equal(fast, expected)
