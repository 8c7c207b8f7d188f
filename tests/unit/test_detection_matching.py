"""Per-image matching: pycocotools' matching (checked through its per-class AP and its matches),
the reasons of false positives, the confusion-matrix identities, per-image counts summing to the
totals, the prefix property that lets a page refilter at any confidence, the best-F1 threshold."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vistudio.ml.inference.detection_matching import (
    ImageMatch,
    Truths,
    box_iou,
    confusion_matrix,
    f1_vs_confidence,
    mask_iou,
    match_image,
    polygons_to_rle,
    summarise,
)
from vistudio.ml.inference.detection_metrics import PredictedBox, TruthBox, TruthImage, coco_datasets
from vistudio.ml.inference.detections import Detections, encode_masks

NUM_CLASSES = 4


def fixture(seed: int) -> tuple[list[TruthImage], dict[int, list[PredictedBox]]]:
    """~25 images of 320×240: crowd regions, empty images, images without predictions, misses,
    duplicates, wrong classes, poor localisation, background false positives, tied scores."""
    rng = np.random.default_rng(seed)
    truths: list[TruthImage] = []
    predictions: dict[int, list[PredictedBox]] = {}

    def box() -> tuple[float, float, float, float]:
        w, h = np.exp(rng.uniform(np.log(6), np.log(150), size=2))
        return (float(rng.uniform(0, 320 - w)), float(rng.uniform(0, 240 - h)), float(w), float(h))

    for i in range(25):
        image_id = 10 + 3 * i
        boxes = [
            TruthBox(int(rng.integers(0, 3)), box(), bool(rng.random() < 0.1))
            for _ in range(0 if i % 8 == 3 else int(rng.integers(1, 6)))
        ]
        truths.append(TruthImage(image_id, 320, 240, boxes))
        if i % 6 == 4:
            continue
        preds = []
        for c, (x, y, w, h), *_ in boxes:
            if rng.random() < 0.15:
                continue
            j = rng.normal(0, 0.12, 4) * [w, h, w, h]
            cls = c if rng.random() < 0.85 else int(rng.integers(0, NUM_CLASSES))
            preds.append(
                PredictedBox(cls, (x + j[0], y + j[1], w + j[2], h + j[3]), round(rng.uniform(0.05, 1), 1))
            )
            if rng.random() < 0.2:
                preds.append(PredictedBox(c, (x + 1, y, w, h * 1.05), round(rng.uniform(0.05, 1), 1)))
        for _ in range(int(rng.integers(0, 4))):
            preds.append(
                PredictedBox(int(rng.integers(0, NUM_CLASSES)), box(), round(rng.uniform(0.05, 1), 1))
            )
        predictions[image_id] = [preds[k] for k in rng.permutation(len(preds))]
    return truths, predictions


def xyxy(b: tuple[float, float, float, float]) -> list[float]:
    x, y, w, h = b
    return [x, y, x + w, y + h]


def to_inputs(t: TruthImage, preds: list[PredictedBox]) -> tuple[Truths, Detections]:
    truths = Truths.from_lists(
        [b.class_id for b in t.boxes], [xyxy(b.box) for b in t.boxes], [b.iscrowd for b in t.boxes]
    )
    order = np.argsort([-p.score for p in preds], kind="stable")  # Detections keep the best first
    dets = Detections(
        np.array([xyxy(preds[k].box) for k in order], np.float64).reshape(-1, 4),
        np.array([preds[k].class_id for k in order], np.int64),
        np.array([preds[k].score for k in order], np.float32),
    )
    return truths, dets


def match_all(
    truths: list[TruthImage], predictions: dict[int, list[PredictedBox]], iou: float = 0.5
) -> list[ImageMatch]:
    return [match_image(*to_inputs(t, predictions.get(t.image_id, [])), iou_threshold=iou) for t in truths]


def pycocotools(truths: list[TruthImage], predictions: dict[int, list[PredictedBox]]) -> COCOeval:
    # predictions in the order Detections give them (sorted by score, stable), as the service stores them
    ordered = {
        k: [v[j] for j in np.argsort([-p.score for p in v], kind="stable")] for k, v in predictions.items()
    }
    dataset, results = coco_datasets(truths=truths, predictions=ordered, class_ids=range(NUM_CLASSES))
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_pr_curves_give_pycocotools_per_class_ap_at_both_thresholds(seed: int) -> None:
    truths, predictions = fixture(seed)
    ev = pycocotools(truths, predictions)
    # 0.5 is the first of COCO's IoU thresholds, 0.75 the sixth
    for t_index, iou in ((0, 0.5), (5, 0.75)):
        s = summarise(
            match_all(truths, predictions, iou), NUM_CLASSES, iou_threshold=iou, score_threshold=0.5
        )
        for k in range(NUM_CLASSES):
            ref = ev.eval["precision"][t_index, :, k, 0, 2]
            curve = s.pr_curves[k]
            if (ref > -1).any():
                assert curve["ap"] == pytest.approx(float(np.mean(ref)), abs=1e-6)
                assert np.allclose(curve["precision"], ref, atol=1e-6)
            else:
                assert curve["ap"] is None  # no ground truth of this class


def test_matches_are_pycocotools_matches() -> None:
    truths, predictions = fixture(5)
    ev = pycocotools(truths, predictions)
    ours = {t.image_id: m for t, m in zip(truths, match_all(truths, predictions), strict=True)}
    for e in ev.evalImgs:
        if e is None or e["aRng"] != [0, 1e10]:
            continue
        m = ours[e["image_id"]]
        tp = int(np.sum((e["dtMatches"][0] > 0) & ~e["dtIgnore"][0]))
        ign = int(np.sum(e["dtIgnore"][0]))
        mine = [o for c, o in zip(m.pred_classes, m.pred_outcome, strict=True) if c == e["category_id"]]
        assert (mine.count("tp"), mine.count("ignored")) == (tp, ign)
        assert mine.count("fp") == len(mine) - tp - ign


def identities(images: list[ImageMatch], threshold: float) -> None:
    cm = confusion_matrix(images, NUM_CLASSES, iou_threshold=0.5, score_threshold=threshold)
    objects = np.zeros(NUM_CLASSES, int)
    kept = np.zeros(NUM_CLASSES, int)
    for m in images:
        for c, ig in zip(m.truth_classes, m.truth_ignored, strict=True):
            objects[c] += not ig
        for c, s, o in zip(m.pred_classes, m.pred_scores, m.pred_outcome, strict=True):
            kept[c] += s >= threshold and o != "ignored"
    assert cm[-1, -1] == 0
    assert (cm[:NUM_CLASSES].sum(axis=1) == objects).all()  # TP + FN per class
    assert (cm[:, :NUM_CLASSES].sum(axis=0) == kept).all()  # TP + FP per class
    s = summarise(images, NUM_CLASSES, iou_threshold=0.5, score_threshold=threshold)
    counts = [m.counts(threshold) for m in images]
    for key in ("tp", "fp", "fn"):
        assert sum(c[key] for c in counts) == s.totals[key]
        assert sum(pc[key] for pc in s.per_class) == s.totals[key]
    for k, pc in enumerate(s.per_class):
        assert pc["tp"] + pc["fn"] == pc["objects"] == objects[k]
        assert pc["tp"] + pc["fp"] == kept[k]
        if pc["tp"]:
            p, r = pc["tp"] / kept[k], pc["tp"] / objects[k]
            assert pc["precision"] == pytest.approx(p) and pc["recall"] == pytest.approx(r)
            assert pc["f1"] == pytest.approx(2 * p * r / (p + r))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_identities_and_counts_sum_to_totals(seed: int) -> None:
    images = match_all(*fixture(seed))
    for threshold in (0.0, 0.3, 0.5, 0.75, 1.0):
        identities(images, threshold)
    cm = confusion_matrix(images, NUM_CLASSES, iou_threshold=0.5, score_threshold=0.0)
    assert cm[:NUM_CLASSES, :NUM_CLASSES].sum() - np.trace(cm[:NUM_CLASSES, :NUM_CLASSES]) > 0  # confusions


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_outcome_at_a_higher_threshold_is_a_prefix(threshold: float) -> None:
    truths, predictions = fixture(7)
    for t in truths:
        preds = predictions.get(t.image_id, [])
        full = match_image(*to_inputs(t, preds))
        cut = match_image(*to_inputs(t, [p for p in preds if p.score >= threshold]))
        kept = [k for k, s in enumerate(full.pred_scores) if s >= threshold]
        assert [full.pred_outcome[k] for k in kept] == cut.pred_outcome
        assert [full.pred_reason[k] for k in kept] == cut.pred_reason
        assert [full.pred_match[k] for k in kept] == cut.pred_match
        found = [bool(s >= threshold) for s in np.nan_to_num(full.matched_score, nan=-1)]
        assert found == [o == "tp" for o in cut.truth_outcome]
        assert full.counts(threshold) == cut.counts(0.0)


def dets(rows: list[tuple[int, list[float], float]]) -> Detections:
    return Detections(
        np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
        np.array([r[0] for r in rows], np.int64),
        np.array([r[2] for r in rows], np.float32),
    )


def test_reasons_of_false_positives() -> None:
    truths = Truths.from_lists(
        [0, 1, 2, 0],
        [[0, 0, 20, 20], [50, 50, 70, 70], [100, 0, 140, 40], [0, 100, 50, 150]],
        [False, False, False, True],
    )
    m = match_image(
        truths,
        dets(
            [
                (0, [0, 0, 20, 20], 0.9),  # tp
                (0, [1, 0, 20, 20], 0.8),  # duplicate of the first
                (0, [50, 50, 70, 70], 0.7),  # wrong class: a class-1 object
                (2, [100, 0, 125, 40], 0.6),  # localisation: IoU 25/40 = 0.625 < 0.75
                (1, [200, 200, 220, 220], 0.5),  # background
                (0, [5, 105, 25, 125], 0.4),  # inside the crowd region: ignored
                (0, [10, 110, 30, 130], 0.3),  # a crowd region is matched any number of times
            ]
        ),
        iou_threshold=0.75,
    )
    assert m.pred_outcome == ["tp", "fp", "fp", "fp", "fp", "ignored", "ignored"]
    assert m.pred_reason == [None, "duplicate", "wrong_class", "localisation", "background", None, None]
    assert m.pred_match == [0, None, None, None, None, 3, 3]
    assert m.pred_overlap == [None, 0, 1, 2, None, None, None]
    assert m.pred_iou[3] == pytest.approx(0.625) and m.pred_iou[4] == 0.0
    assert m.truth_outcome == ["tp", "fn", "fn", "ignored"]
    assert m.matched_score[0] == pytest.approx(0.9) and np.isnan(m.matched_score[1:]).all()
    assert m.counts(0.0) == {"tp": 1, "fp": 4, "fn": 2, "ignored": 2}
    assert m.counts(0.85) == {"tp": 1, "fp": 0, "fn": 2, "ignored": 0}
    assert m.counts(0.95) == {"tp": 0, "fp": 0, "fn": 3, "ignored": 0}
    cm = confusion_matrix([m], 3, iou_threshold=0.75, score_threshold=0.0)
    # the wrong-class prediction pairs with the class-1 object it covers; the rest meet the background
    assert cm.tolist() == [[1, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1], [1, 1, 1, 0]]
    # a higher-scored prediction of the right class takes the object first: then no confusion
    ev = match_image(
        truths, dets([(1, [50, 50, 70, 70], 0.95), (0, [50, 50, 70, 70], 0.7)]), iou_threshold=0.5
    )
    assert ev.pred_outcome == ["tp", "fp"] and ev.pred_reason == [None, "wrong_class"]
    assert confusion_matrix([ev], 3, iou_threshold=0.5, score_threshold=0.0)[3, 0] == 1


def test_best_iou_wins_and_regular_objects_before_crowd() -> None:
    truths = Truths.from_lists(
        [0, 0, 0], [[0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 100, 100]], [False, False, True]
    )
    m = match_image(
        truths, dets([(0, [0, 0, 10, 11], 0.9), (0, [0, 0, 10, 10], 0.8), (0, [0, 0, 10, 10], 0.7)])
    )
    assert m.pred_match == [1, 0, 2]  # IoU 11/12 > 10/11; then the remaining one; then the crowd
    assert m.pred_outcome == ["tp", "tp", "ignored"]


def test_empty_inputs_and_bad_threshold() -> None:
    none = Truths.from_lists([], [])
    m = match_image(none, Detections.empty())
    assert m.counts(0.0) == {"tp": 0, "fp": 0, "fn": 0, "ignored": 0} and m.average_precision() is None
    m = match_image(none, dets([(0, [0, 0, 5, 5], 0.5)]))
    assert m.pred_outcome == ["fp"] and m.pred_reason == ["background"] and m.average_precision() is None
    m = match_image(Truths.from_lists([1], [[0, 0, 5, 5]]), Detections.empty())
    assert m.truth_outcome == ["fn"] and m.average_precision() == 0.0
    for bad in (0.0, 1.0, -0.1, float("nan")):
        with pytest.raises(ValueError, match="IoU threshold"):
            match_image(none, Detections.empty(), iou_threshold=bad)
    s = summarise([], 2, iou_threshold=0.5, score_threshold=0.5)
    assert s.confusion.tolist() == [[0] * 3] * 3 and s.best_f1["f1"] == 0.0
    assert all(c["ap"] is None for c in s.pr_curves)


def test_per_image_ap() -> None:
    truths = Truths.from_lists([0, 1], [[0, 0, 10, 10], [20, 20, 30, 30]])
    perfect = match_image(truths, dets([(0, [0, 0, 10, 10], 0.9), (1, [20, 20, 30, 30], 0.8)]))
    assert perfect.average_precision() == pytest.approx(1.0)
    # a false positive ranked first: precision 1/2 at recall ½ and 2/3 at 1
    worse = match_image(
        truths, dets([(0, [50, 50, 60, 60], 0.95), (0, [0, 0, 10, 10], 0.9), (1, [20, 20, 30, 30], 0.8)])
    )
    expected = (51 * (2 / 3) + 50 * (2 / 3)) / 101  # envelope: max precision at recall ≥ r
    assert worse.average_precision() == pytest.approx(expected)


def test_best_f1_threshold_is_the_best_over_every_distinct_score() -> None:
    rng = np.random.default_rng(0)
    scores = np.round(rng.uniform(0, 1, 300), 2)
    hits = rng.random(300) < scores  # better scores hit more often
    npos = int(hits.sum()) + 20
    curve, best = f1_vs_confidence(scores, hits, npos)
    brute = []
    for c in sorted(set(scores.tolist())):
        tp, n = int(hits[scores >= c].sum()), int((scores >= c).sum())
        brute.append((2 * tp / (n + npos), c))
    f1, c = max(brute, key=lambda x: (x[0], x[1]))
    assert best["f1"] == pytest.approx(f1) and best["threshold"] == c
    assert len(curve["confidence"]) == len(curve["f1"]) == 101
    k = curve["confidence"].index(0.5)
    tp, n = int(hits[scores >= 0.5].sum()), int((scores >= 0.5).sum())
    assert curve["precision"][k] == pytest.approx(tp / n, abs=1e-6)
    assert curve["recall"][k] == pytest.approx(tp / npos, abs=1e-6)
    assert max(curve["f1"]) <= best["f1"] + 1e-6


def test_box_iou_and_crowd_rule() -> None:
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]], np.float64)
    b = np.array([[5, 0, 15, 10], [0, 0, 100, 100]], np.float64)
    iou = box_iou(a, b)
    assert iou[0, 0] == pytest.approx(50 / 150) and iou[0, 1] == pytest.approx(0.01)
    assert iou[1].tolist() == [0.0, 0.0]  # a zero-size box overlaps nothing, without NaN
    crowd = box_iou(a, b, np.array([False, True]))
    assert crowd[0, 1] == pytest.approx(1.0)  # inside a crowd region: intersection / own area


def test_matching_by_masks() -> None:
    full = np.zeros((1, 40, 40), bool)
    full[0, 0:20, 0:20] = True
    ring = full.copy()
    ring[0, 5:15, 5:15] = False  # same box, three quarters of the pixels
    truths = Truths.from_lists([0], [[0, 0, 20, 20]], masks=encode_masks(full))
    pred = Detections(
        np.array([[0, 0, 20, 20]], np.float64), np.array([0]), np.array([0.9], np.float32), encode_masks(ring)
    )
    assert match_image(truths, pred, iou_threshold=0.7).pred_outcome == ["tp"]  # boxes agree
    by_mask = match_image(truths, pred, iou_threshold=0.8, use_masks=True)
    assert by_mask.pred_outcome == ["fp"] and by_mask.pred_iou[0] == pytest.approx(0.75)
    assert by_mask.pred_reason == ["localisation"]
    assert mask_iou(encode_masks(ring), encode_masks(full))[0, 0] == pytest.approx(0.75)
    with pytest.raises(ValueError, match="masks"):
        match_image(truths, Detections.empty(), use_masks=True)


def test_polygons_to_rle() -> None:
    from vistudio.ml.inference.detections import decode_masks

    rle = polygons_to_rle([[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]], width=40, height=20)
    m = decode_masks([rle])[0]
    assert m.shape == (20, 40) and 180 <= m.sum() <= 231  # a 20×10 rectangle, give or take the border
    empty = polygons_to_rle([[[0.1, 0.1], [0.2, 0.2]]], width=8, height=8)  # fewer than 3 points
    assert decode_masks([empty])[0].sum() == 0


def test_object_rle_from_every_stored_shape() -> None:
    from vistudio.ml.inference.detection_matching import object_rle
    from vistudio.ml.inference.detections import decode_masks

    square = np.zeros((10, 20), np.uint8)
    square[2:6, 4:12] = 1
    rle = encode_masks(square[None].astype(bool))[0]
    same = object_rle(rle, [0, 0, 1, 1], width=20, height=10)
    assert same == rle
    # an RLE of another size (the image was resized since) is scaled to the image, nearest
    bigger = decode_masks([object_rle(rle, [0, 0, 1, 1], width=40, height=20)])[0]
    assert bigger.shape == (20, 40) and bigger.sum() == 4 * square.sum()
    # uncompressed counts (COCO's list form)
    flat = square.flatten(order="F")
    runs, current, n = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(n)
            current, n = v, 0
        n += 1
    runs.append(n)
    listed = object_rle({"size": [10, 20], "counts": runs}, [0, 0, 1, 1], width=20, height=10)
    assert (decode_masks([listed])[0] == square).all()
    # no mask: the box filled
    boxed = decode_masks([object_rle(None, [4.0, 2.0, 12.0, 6.0], width=20, height=10)])[0]
    assert (boxed == square).all()
