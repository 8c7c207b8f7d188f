"""Rotated boxes: conversions, polygon IoU equal to shapely, and DOTA AP equal to a re-implementation
of the DOTA devkit's ``voc_eval`` (loops, shapely polygons, its horizontal-box pre-filter)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import shapely

from vistudio.ml.inference.dota_metrics import OrientedDetection, OrientedObject, dota_ap, voc_ap
from vistudio.ml.inference.rotated import (
    corners_from_cxcywha,
    cxcywha_from_corners,
    rotated_iou,
    rotated_iou_matrix,
    rotated_nms,
)


def shapely_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    pa, pb = shapely.polygons(a), shapely.polygons(b)
    inter = shapely.area(shapely.intersection(pa, pb))
    union = shapely.area(pa) + shapely.area(pb) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def random_boxes(rng: np.random.Generator, n: int, spread: float = 100.0) -> np.ndarray:
    return np.c_[
        rng.uniform(0, spread, n),
        rng.uniform(0, spread, n),
        rng.uniform(0.5, 60, n),
        rng.uniform(0.5, 60, n),
        rng.uniform(-math.pi, math.pi, n),
    ]


def test_iou_equals_shapely_on_10000_random_pairs() -> None:
    rng = np.random.default_rng(0)
    a = corners_from_cxcywha(random_boxes(rng, 10_000))
    near = cxcywha_from_corners(a)
    near[:, :2] += rng.normal(0, 6, (10_000, 2))
    near[:, 2:4] = rng.uniform(0.5, 60, (10_000, 2))
    near[:, 4] = rng.uniform(-math.pi, math.pi, 10_000)
    b = corners_from_cxcywha(near)
    ours, ref = rotated_iou(a, b), shapely_iou(a, b)
    assert (ref > 0).sum() > 9_000  # most pairs overlap: the polygon work is exercised
    assert np.abs(ours - ref).max() < 1e-9


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ([0, 0, 2, 2, 0], 1.0),  # identical
        ([0, 0, 2, 2, math.pi / 2], 1.0),  # turned 90°: the same square
        ([0, 0, 2, 2, math.pi], 1.0),  # turned 180°
        ([0, 0, 1, 1, 0.3], 0.25),  # contained
        ([2, 0, 2, 2, 0], 0.0),  # touching along an edge
        ([2, 2, 2, 2, 0], 0.0),  # touching at a corner
        ([5, 5, 1, 1, 0.2], 0.0),  # apart
        ([1, 0, 2, 2, 0], 1 / 3),  # half overlapping
        ([0, 0, 2, 2, math.pi / 4], None),  # turned 45°: shapely's figure
        ([0, 0, 4, 0.5, 0.7], None),  # a thin bar across
    ],
)
def test_special_cases(other: list[float], expected: float | None) -> None:
    sq = corners_from_cxcywha([[0, 0, 2, 2, 0]])
    ob = corners_from_cxcywha([other])
    got = float(rotated_iou(sq, ob)[0])
    assert got == pytest.approx(float(shapely_iou(sq, ob)[0]), abs=1e-12)
    if expected is not None:
        assert got == pytest.approx(expected, abs=1e-12)
    assert float(rotated_iou(ob, sq)[0]) == pytest.approx(got, abs=1e-12)  # symmetric


def test_conversions_round_trip() -> None:
    rng = np.random.default_rng(1)
    boxes = random_boxes(rng, 1000)
    corners = corners_from_cxcywha(boxes)
    back = cxcywha_from_corners(corners)
    assert np.all((back[:, 4] >= -math.pi / 2) & (back[:, 4] < math.pi / 2))
    assert np.abs(rotated_iou(corners_from_cxcywha(back), corners) - 1).max() < 1e-9
    assert np.allclose(back[:, :2], boxes[:, :2]) and np.allclose(
        np.sort(back[:, 2:4]), np.sort(boxes[:, 2:4])
    )
    # DOTA order: clockwise on screen (y down), the first edge along w at angle θ
    c = corners_from_cxcywha([[10, 20, 4, 2, 0]])[0]
    assert np.allclose(c, [[8, 19], [12, 19], [12, 21], [8, 21]])


def test_iou_matrix_equals_pairs() -> None:
    rng = np.random.default_rng(2)
    a = corners_from_cxcywha(random_boxes(rng, 40, spread=60))
    b = corners_from_cxcywha(random_boxes(rng, 30, spread=60))
    m = rotated_iou_matrix(a, b)
    ia, ib = np.meshgrid(np.arange(40), np.arange(30), indexing="ij")
    assert np.abs(m - shapely_iou(a[ia.ravel()], b[ib.ravel()]).reshape(40, 30)).max() < 1e-9
    assert rotated_iou_matrix(a[:0], b).shape == (0, 30)


# --- DOTA AP against the devkit's rules, written as the devkit writes them ------------------------


def devkit_voc_eval(dets, truths, classname, ovthresh=0.5, use_07_metric=True):  # type: ignore[no-untyped-def]
    """The DOTA devkit's voc_eval (task 1), on in-memory lists: same loops, same pre-filter."""
    class_recs = {}
    npos = 0
    for image, objs in truths.items():
        R = [o for o in objs if o["name"] == classname]
        bbox = np.array([x["poly"] for x in R]).reshape(-1, 8)
        difficult = np.array([x["difficult"] for x in R]).astype(bool)
        npos = npos + sum(~difficult)
        class_recs[image] = {"bbox": bbox, "difficult": difficult, "det": [False] * len(R)}
    image_ids = [d[0] for d in dets]
    confidence = np.array([d[1] for d in dets])
    BB = np.array([d[2] for d in dets]).reshape(-1, 8)
    sorted_ind = np.argsort(-confidence, kind="stable")
    BB = BB[sorted_ind, :]
    image_ids = [image_ids[x] for x in sorted_ind]
    nd = len(image_ids)
    tp, fp = np.zeros(nd), np.zeros(nd)
    for d in range(nd):
        R = class_recs[image_ids[d]]
        bb = BB[d, :].astype(float)
        ovmax = -np.inf
        BBGT = R["bbox"].astype(float)
        if BBGT.size > 0:
            gx0, gy0 = BBGT[:, 0::2].min(1), BBGT[:, 1::2].min(1)
            gx1, gy1 = BBGT[:, 0::2].max(1), BBGT[:, 1::2].max(1)
            bx0, by0, bx1, by1 = bb[0::2].min(), bb[1::2].min(), bb[0::2].max(), bb[1::2].max()
            iw = np.maximum(np.minimum(gx1, bx1) - np.maximum(gx0, bx0) + 1.0, 0.0)
            ih = np.maximum(np.minimum(gy1, by1) - np.maximum(gy0, by0) + 1.0, 0.0)
            inters = iw * ih
            uni = (bx1 - bx0 + 1.0) * (by1 - by0 + 1.0) + (gx1 - gx0 + 1.0) * (gy1 - gy0 + 1.0) - inters
            keep = np.where(inters / uni > 0)[0]
            if len(keep) > 0:
                poly = shapely.Polygon(bb.reshape(4, 2))
                overlaps = []
                for g in BBGT[keep]:
                    gp = shapely.Polygon(g.reshape(4, 2))
                    inter = poly.intersection(gp).area
                    overlaps.append(inter / (poly.area + gp.area - inter))
                ovmax = np.max(overlaps)
                jmax = keep[int(np.argmax(overlaps))]
        if ovmax > ovthresh:
            if not R["difficult"][jmax]:
                if not R["det"][jmax]:
                    tp[d] = 1.0
                    R["det"][jmax] = 1
                else:
                    fp[d] = 1.0
        else:
            fp[d] = 1.0
    fp, tp = np.cumsum(fp), np.cumsum(tp)
    rec = tp / float(npos)
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = 0 if np.sum(rec >= t) == 0 else np.max(prec[rec >= t])
            ap = ap + p / 11.0
        return ap
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(mpre.size - 1, 0, -1):
        mpre[i - 1] = np.maximum(mpre[i - 1], mpre[i])
    i = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("method", ["11point", "area"])
def test_dota_ap_equals_the_devkit(method: str) -> None:
    rng = np.random.default_rng(3)
    classes = ["plane", "ship", "car"]
    truths: list[OrientedObject] = []
    dets: list[OrientedDetection] = []
    for image in range(25):
        for _ in range(rng.integers(0, 8)):
            box = random_boxes(rng, 1, spread=200)[0]
            corners = corners_from_cxcywha([box])[0]
            label = int(rng.integers(0, 3))
            truths.append(OrientedObject(image, label, corners, bool(rng.random() < 0.15)))
            for _ in range(rng.integers(0, 3)):  # jittered detections of it, sometimes of another class
                jitter = box + np.r_[rng.normal(0, 4, 2), rng.normal(0, 3, 2), rng.normal(0, 0.15)]
                jitter[2:4] = np.abs(jitter[2:4]) + 0.5
                other = label if rng.random() < 0.8 else int(rng.integers(0, 3))
                dets.append(
                    OrientedDetection(image, other, corners_from_cxcywha([jitter])[0], float(rng.random()))
                )
        for _ in range(rng.integers(0, 4)):  # background detections
            box = random_boxes(rng, 1, spread=200)[0]
            dets.append(
                OrientedDetection(
                    image, int(rng.integers(0, 3)), corners_from_cxcywha([box])[0], float(rng.random())
                )
            )
    ours = dota_ap(dets, truths, num_classes=3, method=method)
    recs = {i: [] for i in range(25)}
    for t in truths:
        recs[t.image].append(
            {"name": classes[t.label], "poly": np.asarray(t.corners).ravel(), "difficult": t.difficult}
        )
    for c, name in enumerate(classes):
        mine = [(d.image, d.score, np.asarray(d.corners).ravel()) for d in dets if d.label == c]
        ref = devkit_voc_eval(mine, recs, name, use_07_metric=method == "11point")
        assert ours["ap"][c] == pytest.approx(ref, abs=1e-9), name
    assert 0.05 < ours["map"] < 1.0  # neither empty nor trivial


def test_dota_ap_edges() -> None:
    sq = corners_from_cxcywha([[10, 10, 4, 4, 0]])[0]
    only_difficult = [OrientedObject(0, 0, sq, difficult=True)]
    out = dota_ap([OrientedDetection(0, 0, sq, 0.9)], only_difficult, num_classes=2)
    assert out["ap"] == [None, None] and out["map"] is None  # nothing to find: no AP, not 0
    perfect = dota_ap([OrientedDetection(0, 0, sq, 0.9)], [OrientedObject(0, 0, sq)], num_classes=1)
    assert perfect["ap"] == [pytest.approx(1.0)] and perfect["recall"] == [1.0]
    missed = dota_ap([], [OrientedObject(0, 0, sq)], num_classes=1)
    assert missed["ap"] == [0.0]
    assert voc_ap([0.5, 1.0], [1.0, 0.5], method="area") == pytest.approx(0.75)
    with pytest.raises(ValueError):
        voc_ap([1.0], [1.0], method="101")


def reference_nms(corners: np.ndarray, scores: np.ndarray, threshold: float) -> list[int]:
    """Greedy NMS written plainly with shapely's IoU, one pair at a time."""
    kept: list[int] = []
    for i in sorted(range(len(scores)), key=lambda j: (-scores[j], j)):
        if all(shapely_iou(corners[i : i + 1], corners[k : k + 1])[0] <= threshold for k in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("threshold", [0.1, 0.5, 0.8])
def test_rotated_nms_equals_a_plain_reference(threshold: float) -> None:
    rng = np.random.default_rng(int(threshold * 10))
    boxes = random_boxes(rng, 300, spread=120.0)
    corners = corners_from_cxcywha(boxes)
    scores = rng.uniform(size=300)
    scores[:20] = scores[20:40]  # ties keep the box that comes first
    assert rotated_nms(corners, scores, threshold).tolist() == reference_nms(corners, scores, threshold)


def test_rotated_nms_equals_torchvision_on_upright_boxes_and_separates_classes() -> None:
    import torch
    from torchvision.ops import batched_nms, nms

    rng = np.random.default_rng(5)
    boxes = random_boxes(rng, 400, spread=150.0)
    boxes[:, 4] = 0.0
    corners = corners_from_cxcywha(boxes)
    xyxy = np.c_[corners.min(1), corners.max(1)]
    scores = rng.uniform(size=400)
    expected = nms(torch.from_numpy(xyxy), torch.from_numpy(scores), 0.5).tolist()
    assert rotated_nms(corners, scores, 0.5).tolist() == expected
    classes = rng.integers(0, 3, 400)
    expected = batched_nms(
        torch.from_numpy(xyxy), torch.from_numpy(scores), torch.from_numpy(classes), 0.5
    ).tolist()
    assert rotated_nms(corners, scores, 0.5, classes).tolist() == expected
    # a box turned by 90° about its centre is the same box when square, another when long
    square = corners_from_cxcywha([[50, 50, 20, 20, 0], [50, 50, 20, 20, math.pi / 2]])
    assert rotated_nms(square, [0.9, 0.8], 0.5).tolist() == [0]
    long = corners_from_cxcywha([[50, 50, 40, 4, 0], [50, 50, 40, 4, math.pi / 2]])
    assert rotated_nms(long, [0.9, 0.8], 0.5).tolist() == [0, 1]
    assert rotated_nms(np.zeros((0, 4, 2)), [], 0.5).tolist() == []
    with pytest.raises(ValueError, match="scores"):
        rotated_nms(square, [0.9], 0.5)
