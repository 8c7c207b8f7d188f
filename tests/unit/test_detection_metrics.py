"""COCO box metrics through faster-coco-eval equal pycocotools' COCOeval on the same in-memory dicts."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from vistudio.ml.inference.detection_metrics import (
    STAT_NAMES,
    CocoBoxMetrics,
    PredictedBox,
    PredictedMask,
    TruthBox,
    TruthImage,
    TruthMask,
    coco_box_metrics,
    coco_datasets,
    coco_mask_metrics,
    is_ignored_region,
    normalised_box_to_pixels,
    truth_box_from_geometry,
)

TOLERANCE = 1e-6
Predictions = dict[int, list[PredictedBox]]


def pycocotools_eval(
    truths: list[TruthImage], predictions: Predictions, class_ids: tuple[int, ...] = ()
) -> COCOeval:
    """pycocotools' COCOeval, run silently on the dicts our function hands its engine."""
    dataset, results = coco_datasets(truths=truths, predictions=predictions, class_ids=class_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        if results:
            dt = gt.loadRes(copy.deepcopy(results))
        else:  # pycocotools' loadRes fails on an empty list (it reads anns[0])
            dt = COCO()
            dt.dataset = {"images": dataset["images"], "categories": dataset["categories"], "annotations": []}
            dt.createIndex()
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def reference_per_class(ev: COCOeval) -> dict[int, tuple[float, float]]:
    """Per-category AP and AP50 as pycocotools' summarize averages: values > -1, area all, 100 dets."""
    out = {}
    for k, cat in enumerate(ev.params.catIds):
        values = []
        for s in (ev.eval["precision"][:, :, k, 0, 2], ev.eval["precision"][0, :, k, 0, 2]):
            values.append(float(np.mean(s[s > -1])) if (s > -1).any() else -1.0)
        out[cat] = (values[0], values[1])
    return out


def max_difference(ours: CocoBoxMetrics, ev: COCOeval) -> float:
    diffs = [abs(a - float(b)) for a, b in zip(ours.stats(), ev.stats, strict=True)]
    ref = reference_per_class(ev)
    assert set(ours.per_class) == set(ref)
    for cat, (ap, ap50) in ref.items():
        diffs += [abs(ours.per_class[cat].ap - ap), abs(ours.per_class[cat].ap50 - ap50)]
    return max(diffs)


def check_against_pycocotools(
    truths: list[TruthImage], predictions: Predictions, class_ids: tuple[int, ...] = ()
) -> tuple[CocoBoxMetrics, COCOeval]:
    ours = coco_box_metrics(truths=truths, predictions=predictions, class_ids=class_ids)
    ev = pycocotools_eval(truths, predictions, class_ids)
    assert max_difference(ours, ev) <= TOLERANCE, (ours, ev.stats.tolist())
    return ours, ev


def random_fixture(seed: int = 0) -> tuple[list[TruthImage], Predictions]:
    """~30 images, classes 0–2 in the truth and 3 only predicted; small/medium/large objects, crowd
    regions, empty images, images without predictions, misses, false positives and tied scores."""
    rng = np.random.default_rng(seed)
    truths: list[TruthImage] = []
    predictions: Predictions = {}

    def random_box(width: int, height: int) -> tuple[float, float, float, float]:
        # log-uniform sides from 4 to 300 px: below 32² small, up to 96² medium, above large
        w, h = np.exp(rng.uniform(np.log(4), np.log(300), size=2))
        x, y = rng.uniform(0, width - min(w, width - 1)), rng.uniform(0, height - min(h, height - 1))
        return (float(x), float(y), float(w), float(h))

    def score() -> float:
        return float(np.round(rng.uniform(0.05, 1.0), 1))  # one decimal: many ties

    for i in range(30):
        image_id = 100 + 7 * i  # not 0..n-1, to prove ids are kept
        width, height = 640, 480
        n_boxes = 0 if i % 9 == 4 else int(rng.integers(1, 7))
        boxes = [
            TruthBox(int(rng.integers(0, 3)), random_box(width, height), bool(rng.random() < 0.08))
            for _ in range(n_boxes)
        ]
        truths.append(TruthImage(image_id, width, height, boxes))
        if i % 7 == 3:
            continue  # no predictions entry at all
        if i % 7 == 5:
            predictions[image_id] = []
            continue
        preds: list[PredictedBox] = []
        for class_id, (x, y, w, h), *_ in boxes:
            if rng.random() < 0.2:
                continue  # a miss
            jitter = rng.normal(0, 0.08, size=4) * np.array([w, h, w, h])
            preds.append(
                PredictedBox(class_id, (x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]), score())
            )
            if rng.random() < 0.15:  # a duplicate of the same object
                preds.append(PredictedBox(class_id, (x, y, w * 1.05, h), score()))
        for _ in range(int(rng.integers(0, 4))):  # false positives, class 3 included
            preds.append(PredictedBox(int(rng.integers(0, 4)), random_box(width, height), score()))
        preds = [preds[j] for j in rng.permutation(len(preds))]
        predictions[image_id] = preds
    # one image with more than 100 detections per class: maxDets 1/10/100 all cut something
    crowded = truths[1].image_id
    predictions[crowded] = predictions.get(crowded, []) + [
        PredictedBox(0, random_box(640, 480), score()) for _ in range(130)
    ]
    return truths, predictions


def test_random_fixture_equals_pycocotools() -> None:
    truths, predictions = random_fixture()
    assert any(b.iscrowd for t in truths for b in t.boxes)
    assert any(not t.boxes for t in truths)
    ours, ev = check_against_pycocotools(truths, predictions, class_ids=(9,))
    # the fixture exercises every statistic: no -1 among the 12
    assert all(v > 0 for v in ours.stats()), ours
    assert ours.per_class[3] == ours.per_class[9]
    assert (ours.per_class[3].ap, ours.per_class[3].ap50) == (-1.0, -1.0)  # absent from the truth
    assert list(ev.params.catIds) == sorted(ours.per_class) == [0, 1, 2, 3, 9]
    # pycocotools leaves classes without ground truth out of the means: AP = mean of the 3 others
    assert ours.ap == pytest.approx(np.mean([ours.per_class[c].ap for c in (0, 1, 2)]), abs=TOLERANCE)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_other_seeds_equal_pycocotools(seed: int) -> None:
    check_against_pycocotools(*random_fixture(seed))


def test_stats_follow_the_names_and_print_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    truths, predictions = random_fixture()
    ours = coco_box_metrics(truths=truths, predictions=predictions)
    assert capsys.readouterr().out == ""
    assert ours.stats() == tuple(getattr(ours, n) for n in STAT_NAMES)
    assert len(STAT_NAMES) == 12


def test_no_predictions_at_all_gives_zero_where_truth_exists_and_minus_one_elsewhere() -> None:
    truths = [
        TruthImage(1, 200, 200, [TruthBox(0, (10, 10, 20, 20)), TruthBox(1, (20, 20, 50, 50))]),
        TruthImage(2, 200, 200, []),
    ]
    ours, _ = check_against_pycocotools(truths, {}, class_ids=(2,))
    assert ours.ap == ours.ap50 == ours.ar100 == ours.ap_small == ours.ap_medium == 0.0
    assert ours.ap_large == ours.ar_large == -1.0  # no large object in the truth
    assert ours.per_class[0].ap == ours.per_class[1].ap == 0.0
    assert ours.per_class[2].ap == -1.0
    # empty prediction lists are the same as no entries
    assert coco_box_metrics(truths=truths, predictions={1: [], 2: []}) == CocoBoxMetrics.from_stats(
        ours.stats(), per_class={0: ours.per_class[0], 1: ours.per_class[1]}
    )


def test_nothing_to_evaluate_is_minus_one_everywhere() -> None:
    empty = coco_box_metrics(truths=[], predictions={})
    assert empty.stats() == (-1.0,) * 12 and empty.per_class == {}
    only_empty_images = coco_box_metrics(truths=[TruthImage(1, 64, 64)], predictions={})
    assert only_empty_images.stats() == (-1.0,) * 12
    # false positives on an image without truth: still nothing to measure recall against
    ours, _ = check_against_pycocotools(
        [TruthImage(1, 64, 64)], {1: [PredictedBox(0, (1.0, 1.0, 5.0, 5.0), 0.5)]}
    )
    assert ours.stats() == (-1.0,) * 12 and ours.per_class[0].ap == -1.0


def test_perfect_predictions_give_one() -> None:
    truths, _ = random_fixture()
    # crowd regions are never counted, so only the others need a perfect match
    perfect = {
        t.image_id: [PredictedBox(b.class_id, b.box, 0.9) for b in t.boxes if not b.iscrowd] for t in truths
    }
    ours, _ = check_against_pycocotools(truths, perfect)
    # AR1 counts one detection per image and class: below 1 wherever an image holds two of a class
    assert [n for n in STAT_NAMES if getattr(ours, n) != 1.0] == ["ar1"]
    assert all(c.ap == c.ap50 == 1.0 for c in ours.per_class.values())


def test_a_detection_on_a_crowd_region_is_neither_right_nor_wrong() -> None:
    truths = [TruthImage(1, 100, 100, [TruthBox(0, (0, 0, 40, 40)), TruthBox(0, (50, 50, 40, 40), True)])]
    hit = PredictedBox(0, (0.0, 0.0, 40.0, 40.0), 0.5)
    on_crowd = [
        PredictedBox(0, (55.0, 55.0, 20.0, 20.0), 0.9),
        PredictedBox(0, (60.0, 60.0, 20.0, 20.0), 0.8),
    ]
    ours, _ = check_against_pycocotools(truths, {1: [hit, *on_crowd]})
    assert ours.ap == 1.0  # the two higher-scored detections on the crowd region cost nothing
    ours, _ = check_against_pycocotools(truths, {1: [hit, PredictedBox(0, (0.0, 60.0, 20.0, 20.0), 0.9)]})
    assert ours.ap50 < 1.0  # the same detection beside the crowd region is a false positive


def test_tied_scores_rank_in_input_order_like_pycocotools() -> None:
    truths = [TruthImage(i, 100, 100, [TruthBox(0, (10, 10, 30, 30))]) for i in (1, 2, 3)]
    miss = (60.0, 60.0, 30.0, 30.0)
    hit = (10.0, 10.0, 30.0, 30.0)
    for order in ([miss, hit], [hit, miss]):
        predictions = {i: [PredictedBox(0, box, 0.5) for box in order] for i in (1, 2, 3)}
        check_against_pycocotools(truths, predictions)


def test_converter_and_difficult_objects_are_crowd_regions() -> None:
    geometry = {"x": 0.25, "y": 0.5, "w": 0.5, "h": 0.25, "difficult": True}
    assert normalised_box_to_pixels(geometry, width=200, height=80) == (50.0, 40.0, 100.0, 20.0)
    assert is_ignored_region(geometry) and is_ignored_region({"iscrowd": True})
    assert not is_ignored_region({"x": 0, "y": 0, "w": 1, "h": 1, "truncated": True})
    assert truth_box_from_geometry(2, geometry, width=200, height=80) == TruthBox(
        2, (50.0, 40.0, 100.0, 20.0), True
    )
    plain = truth_box_from_geometry(1, {"x": 0.0, "y": 0.0, "w": 0.1, "h": 0.1}, width=200, height=80)
    assert plain.iscrowd is False
    truths = [TruthImage(1, 200, 80, [plain, truth_box_from_geometry(2, geometry, width=200, height=80)])]
    predictions = {1: [PredictedBox(2, (50.0, 40.0, 100.0, 20.0), 0.9), PredictedBox(1, plain.box, 0.8)]}
    ours, _ = check_against_pycocotools(truths, predictions)
    assert ours.per_class[2].ap == -1.0  # only a difficult object: no ground truth to count
    assert ours.ap == ours.per_class[1].ap == 1.0


def test_refuses_predictions_for_unknown_images_and_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="no ground-truth entry"):
        coco_box_metrics(truths=[TruthImage(1, 10, 10)], predictions={2: []})
    with pytest.raises(ValueError, match="unique"):
        coco_box_metrics(truths=[TruthImage(1, 10, 10), TruthImage(1, 10, 10)], predictions={})


def test_importing_the_module_loads_neither_numpy_nor_the_engine() -> None:
    code = (
        "import sys, json\nimport vistudio.ml.inference.detection_metrics\n"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert not {"numpy", "faster_coco_eval"} & set(json.loads(out.stdout))


coords = st.integers(min_value=0, max_value=150)
sides = st.integers(min_value=1, max_value=120)


@st.composite
def small_cases(draw: Any) -> tuple[list[TruthImage], Predictions]:
    truths: list[TruthImage] = []
    predictions: Predictions = {}
    for image_id in range(1, draw(st.integers(1, 4)) + 1):
        boxes = [
            TruthBox(
                draw(st.integers(0, 2)),
                (draw(coords), draw(coords), draw(sides), draw(sides)),
                draw(st.booleans()),
            )
            for _ in range(draw(st.integers(0, 4)))
        ]
        truths.append(TruthImage(image_id, 200, 200, boxes))
        preds = []
        for _ in range(draw(st.integers(0, 5))):
            score = draw(st.sampled_from([0.1, 0.5, 0.9]))  # few values: ties
            if boxes and draw(st.booleans()):  # near a ground-truth box, maybe of another class
                c, (x, y, w, h) = draw(st.sampled_from(boxes))[:2]
                dx, dy = draw(st.integers(-8, 8)), draw(st.integers(-8, 8))
                preds.append(PredictedBox(draw(st.sampled_from([c, c, 1])), (x + dx, y + dy, w, h), score))
            else:
                preds.append(
                    PredictedBox(
                        draw(st.integers(0, 2)), (draw(coords), draw(coords), draw(sides), draw(sides)), score
                    )
                )
        if preds or draw(st.booleans()):
            predictions[image_id] = preds
    return truths, predictions


@settings(max_examples=30, deadline=None)
@given(small_cases())
def test_small_random_cases_equal_pycocotools(case: tuple[list[TruthImage], Predictions]) -> None:
    check_against_pycocotools(*case)


# --- masks (iouType "segm") ------------------------------------------------------------------------


def _rle_of(mask: np.ndarray) -> dict[str, Any]:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def random_mask_fixture(seed: int = 0) -> tuple[list[TruthImage], dict[int, list[PredictedMask]]]:
    """~20 images of 64×48 with blob masks (ellipses, rectangles), crowd masks, empty images,
    images without predictions, tied scores and predictions of a class absent from the truth."""
    rng = np.random.default_rng(seed)
    height, width = 48, 64
    yy, xx = np.mgrid[0:height, 0:width]

    def blob() -> np.ndarray:
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(2, 25), rng.uniform(2, 20)
        if rng.random() < 0.5:
            return ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
        return (abs(xx - cx) <= rx) & (abs(yy - cy) <= ry)

    truths: list[TruthImage] = []
    predictions: dict[int, list[PredictedMask]] = {}
    for i in range(20):
        image_id = 3 + 5 * i
        objects = []
        for _ in range(0 if i % 8 == 2 else int(rng.integers(1, 5))):
            m = blob()
            if m.any():
                objects.append((int(rng.integers(0, 3)), m, bool(rng.random() < 0.1)))
        truths.append(
            TruthImage(image_id, width, height, [TruthMask(c, _rle_of(m), cr) for c, m, cr in objects])
        )
        if i % 6 == 1:
            continue
        preds = []
        for c, m, _ in objects:
            if rng.random() < 0.2:
                continue
            noisy = m & (rng.random(m.shape) >= 0.08)  # a few holes
            preds.append(
                PredictedMask(
                    c if rng.random() < 0.85 else 1, _rle_of(noisy), float(np.round(rng.uniform(0.1, 1), 1))
                )
            )
        for _ in range(int(rng.integers(0, 3))):
            preds.append(
                PredictedMask(
                    int(rng.integers(0, 4)), _rle_of(blob()), float(np.round(rng.uniform(0.1, 1), 1))
                )
            )
        predictions[image_id] = preds
    return truths, predictions


def pycocotools_segm(truths: list[TruthImage], predictions: dict[int, list[PredictedMask]]) -> COCOeval:
    dataset, results = coco_datasets(truths=truths, predictions=predictions, iou_type="segm")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(dataset)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(results))
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_mask_metrics_equal_pycocotools(seed: int) -> None:
    truths, predictions = random_mask_fixture(seed)
    assert any(o.iscrowd for t in truths for o in t.boxes) and any(not t.boxes for t in truths)
    ours = coco_mask_metrics(truths=truths, predictions=predictions)
    ev = pycocotools_segm(truths, predictions)
    assert max_difference(ours, ev) <= TOLERANCE, (ours, ev.stats.tolist())
    assert ours.ap50 > 0.2  # the fixture measures something


def test_mask_areas_are_mask_areas_not_box_areas() -> None:
    # a thin diagonal line: its box is large (64×48 > 32²) but its mask is small (< 32²)
    line = np.zeros((48, 64), bool)
    for k in range(48):
        line[k, k] = True
    truths = [TruthImage(1, 64, 48, [TruthMask(0, _rle_of(line))])]
    ours = coco_mask_metrics(truths=truths, predictions={1: [PredictedMask(0, _rle_of(line), 0.9)]})
    assert ours.ap_small == 1.0 and ours.ap_large == -1.0
    dataset, _ = coco_datasets(truths=truths, predictions={}, iou_type="segm")
    assert dataset["annotations"][0]["area"] == 48.0
    assert dataset["annotations"][0]["bbox"] == [0.0, 0.0, 48.0, 48.0]


def test_mask_rle_with_bytes_counts_is_accepted() -> None:
    m = np.zeros((20, 20), bool)
    m[2:10, 3:12] = True
    rle = _rle_of(m)
    as_bytes = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    truths = [TruthImage(1, 20, 20, [TruthMask(0, rle)])]
    ours = coco_mask_metrics(truths=truths, predictions={1: [PredictedMask(0, as_bytes, 0.5)]})
    assert ours.ap == 1.0


def test_box_area_ranges_use_the_given_mask_area_as_pycocotools_reads_a_coco_file(tmp_path) -> None:
    """Ellipses whose box is medium (or large) while their mask is small (or medium): pycocotools,
    reading a COCO file whose ``area`` is the mask area, ranks them by the mask area in bbox
    evaluation too — and so do we when ``TruthBox.area`` carries it."""
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    size = 320
    yy, xx = np.mgrid[0:size, 0:size]
    images, annotations, truths, predictions = [], [], [], {}
    for image_id in range(1, 9):
        images.append({"id": image_id, "width": size, "height": size})
        boxes = []
        for side in (34, 36, 100, 105, 40, 20):  # box area just above 32² / 96², mask area below
            cx, cy = rng.uniform(side, size - side, 2)
            r = side / 2
            ellipse = (((xx - cx) / r) ** 2 + ((yy - cy) / r) ** 2 <= 1).astype(np.uint8)
            rle = mask_utils.encode(np.asfortranarray(ellipse))
            x, y, w, h = (float(v) for v in mask_utils.toBbox(rle))
            area = float(mask_utils.area(rle))
            c = int(rng.integers(0, 2))
            crowd = bool(rng.random() < 0.1)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": c,
                    "bbox": [x, y, w, h],
                    "area": area,
                    "iscrowd": int(crowd),
                    "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")},
                }
            )
            boxes.append(TruthBox(c, (x, y, w, h), crowd, area))
            if rng.random() < 0.8:
                jitter = rng.normal(0, 2.5, 4)
                predictions.setdefault(image_id, []).append(
                    PredictedBox(
                        c, (x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]), float(rng.random())
                    )
                )
        truths.append(TruthImage(image_id, size, size, boxes))
    path = tmp_path / "instances.json"
    path.write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": [{"id": 0}, {"id": 1}]})
    )
    results = [
        {"image_id": i, "category_id": p.class_id, "bbox": list(p.box), "score": p.score}
        for i, preds in predictions.items()
        for p in preds
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    ours = coco_box_metrics(truths=truths, predictions=predictions)
    assert max_difference(ours, ev) <= TOLERANCE, (ours, ev.stats.tolist())
    # the box areas would rank these objects otherwise: the small/medium statistics change
    by_box = coco_box_metrics(
        truths=[im._replace(boxes=[b._replace(area=None) for b in im.boxes]) for im in truths],
        predictions=predictions,
    )
    assert (by_box.ap_small, by_box.ar_small) != (ours.ap_small, ours.ar_small)
