"""The charts of an oriented detection evaluation (precision–recall per class, F1 against the
confidence) equal a brute-force computation from the matched predictions."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from vistudio.ml.inference.detection_matching import CONFIDENCE_POINTS, RECALL_POINTS
from vistudio.services.evaluation.oriented import curves


def _rows(seed: int, n: int) -> list[tuple[int, list[dict[str, Any]], list[dict[str, Any]]]]:
    rng = np.random.default_rng(seed)
    rows = []
    for sid in range(12):
        truths = [
            {"class_index": int(rng.integers(n)), "outcome": "ignored" if rng.random() < 0.1 else "fn"}
            for _ in range(int(rng.integers(0, 5)))
        ]
        preds = []
        for _ in range(int(rng.integers(0, 6))):
            # scores on a coarse grid: ties happen, as with real detectors' rounded outputs
            match = str(rng.choice(["tp", "fp", "ignored"], p=[0.5, 0.4, 0.1]))
            preds.append(
                {"class_index": int(rng.integers(n)), "score": round(float(rng.random()), 1), "outcome": match}
            )
        rows.append((sid, preds, truths))
    return rows


def _pooled(rows: list[Any], c: float, k: int | None = None) -> tuple[float, float, float]:
    preds = [
        p for _, ps, _ in rows for p in ps if p["outcome"] != "ignored" and (k is None or p["class_index"] == k)
    ]
    npos = sum(
        t["outcome"] != "ignored" and (k is None or t["class_index"] == k) for _, _, ts in rows for t in ts
    )
    kept = [p for p in preds if p["score"] >= c]
    tp = sum(p["outcome"] == "tp" for p in kept)
    precision = tp / len(kept) if kept else 0.0
    recall = tp / npos if npos else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@pytest.mark.parametrize("seed", range(6))
def test_curves_equal_a_brute_force_computation(seed: int) -> None:
    n = 3
    rows = _rows(seed, n)
    ap50 = [0.1, 0.2, 0.3]
    out = curves(rows, n, ap50)
    f1 = out["f1"]
    for i, c in enumerate(CONFIDENCE_POINTS):
        p, r, f = _pooled(rows, float(c))
        assert f1["precision"][i] == pytest.approx(p, abs=1e-6)
        assert f1["recall"][i] == pytest.approx(r, abs=1e-6)
        assert f1["f1"][i] == pytest.approx(f, abs=1e-6)
    # the best F1 over every distinct score, the highest score on ties
    scores = sorted({p["score"] for _, ps, _ in rows for p in ps if p["outcome"] != "ignored"}, reverse=True)
    if scores:
        best = max(_pooled(rows, s)[2] for s in scores)
        threshold = max(s for s in scores if _pooled(rows, s)[2] == pytest.approx(best, abs=1e-12))
        assert f1["best"]["f1"] == pytest.approx(best, abs=1e-9)
        assert f1["best"]["threshold"] == threshold
    for k, pr in enumerate(out["pr"]):
        npos = sum(t["outcome"] != "ignored" and t["class_index"] == k for _, _, ts in rows for t in ts)
        assert pr["ap"] == (ap50[k] if npos else None)
        # interpolated precision at recall r: the best precision at any cut reaching recall ≥ r
        mine = sorted(
            (p for _, ps, _ in rows for p in ps if p["outcome"] != "ignored" and p["class_index"] == k),
            key=lambda p: -p["score"],
        )
        points = []
        tp = 0
        for j, p in enumerate(mine, start=1):
            tp += p["outcome"] == "tp"
            if npos:
                points.append((tp / npos, tp / j))
        for r, q in zip(RECALL_POINTS, pr["precision"], strict=True):
            want = max((prec for rec, prec in points if rec >= r - 1e-12), default=0.0)
            assert q == pytest.approx(want, abs=1e-6), (k, r)


def _square(x: float, y: float, side: float, turn: float = 0.0) -> list[list[float]]:
    c, s = np.cos(turn), np.sin(turn)
    half = side / 2
    return [
        [x + c * dx - s * dy, y + s * dx + c * dy]
        for dx, dy in ((-half, -half), (half, -half), (half, half), (-half, half))
    ]


def test_the_confusion_matrix_pairs_wrong_classes_and_leaves_difficult_objects_out() -> None:
    """Two classes, background last. Image 1: an object of class 0 found by a class-0 prediction
    (diagonal) and seen as class 1 by a better-scored prediction (paired: true 0 → predicted 1 is
    not counted, the object is found); an object of class 1 predicted as class 0 (turned 90°, the
    same rectangle: a wrong-class pair); a difficult class-1 object under a class-1 prediction
    (nowhere). Image 2: a class-0 prediction on nothing (background row) and a class-1 object
    found only under the score threshold (missed: background column)."""
    from vistudio.services.evaluation.oriented import confusion, match_image

    def truth(k: int, points: list[list[float]], difficult: bool = False) -> dict[str, Any]:
        return {"class_index": k, "points": points, "iscrowd": difficult}

    def pred(k: int, points: list[list[float]], score: float) -> dict[str, Any]:
        return {"class_index": k, "points": points, "score": score}

    a, b, d = _square(20, 20, 10), _square(60, 60, 10), _square(100, 20, 10)
    one = (
        [pred(1, a, 0.95), pred(0, a, 0.9), pred(0, _square(60, 60, 10, np.pi / 2), 0.8), pred(1, d, 0.7)],
        [truth(0, a), truth(1, b), truth(1, d, difficult=True)],
    )
    two = ([pred(0, _square(20, 80, 8), 0.6), pred(1, b, 0.2)], [truth(1, b)])
    rows = []
    for sid, (preds, truths) in enumerate((one, two)):
        match_image(preds, truths, 0.5)
        rows.append((sid, preds, truths))
    assert [p["outcome"] for p in one[0]] == ["fp", "tp", "fp", "ignored"]
    cm = confusion(rows, 2, iou=0.5, score_threshold=0.5)
    # rows true 0, 1, background; columns predicted 0, 1, background
    assert cm.tolist() == [[1, 0, 0], [1, 0, 1], [1, 1, 0]]
    # at 0.1 the second image's object is found
    assert confusion(rows, 2, iou=0.5, score_threshold=0.1).tolist() == [[1, 0, 0], [1, 1, 0], [1, 1, 0]]
