"""Per-image matching of detections to ground truth, and what follows from it: each prediction a
true or false positive (and why), each ground-truth object found or missed, the detection
confusion matrix, precision–recall curves per class and the F1-vs-confidence curve.

Matching is pycocotools' (``COCOeval.evaluateImg``) at one IoU threshold, area range "all":

- per class, predictions in descending score order (stable: equal scores keep the model's order)
  each take the unmatched ground-truth object of their class with the highest IoU ≥ the
  threshold (equal IoUs: the later object, as pycocotools); regular objects before ignored ones;
- ignored objects (COCO ``iscrowd``, VOC ``difficult``) can be matched any number of times, with
  IoU = intersection / prediction area; a prediction on one is **ignored** (neither true nor
  false positive), and the object is never counted as missed.

Because matching is greedy in score order, the outcome at a higher score threshold is a prefix of
the outcome over all predictions: a prediction keeps its outcome at any confidence ``c`` ≤ its
score, and an object is found at ``c`` iff the score of the prediction that matched it
(``matched_score``) is ≥ ``c``. Pages refilter at any confidence from the stored result without
matching again.

Why a prediction is a false positive, in this order: ``duplicate`` (its class's object at IoU ≥
the threshold was already taken by a better-scored prediction), ``wrong_class`` (an object of
another class at IoU ≥ the threshold), ``localisation`` (an object of its class at 0.1 ≤ IoU <
the threshold), ``background`` (nothing of note under it).

The confusion matrix is (N+1)×(N+1), rows the true class and columns the predicted one, the
background last: a true positive counts on the diagonal; a missed object and a false positive of
another class that overlaps it at IoU ≥ the threshold pair up in one off-diagonal cell (each used
once, best IoU first); what is left counts against the background. So for each class, the row sum
is its number of (not ignored) objects (TP + FN) and the column sum its number of predictions
above the score threshold that are not on an ignored region (TP + FP).

A library module: NumPy, faster-coco-eval's mask functions for masks; no database.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.ml.inference.detections import Detections, rle_for_coco

LOCALISATION_IOU = 0.1
RECALL_POINTS = np.linspace(0.0, 1.0, 101)
CONFIDENCE_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100  # per image and class, as pycocotools' maxDets for AP
REASONS = ("duplicate", "wrong_class", "localisation", "background")


@dataclass
class Truths:
    """One image's ground truth: ``classes`` (N,) 0-based, ``boxes`` (N, 4) ``[x1, y1, x2, y2]``
    pixels, ``ignored`` (N,) crowd/difficult flags, ``masks`` N COCO RLEs at the image size (or
    None)."""

    classes: npt.NDArray[np.int64]
    boxes: npt.NDArray[np.float64]
    ignored: npt.NDArray[np.bool_]
    masks: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.classes)

    @classmethod
    def from_lists(
        cls,
        classes: Sequence[int],
        boxes: Sequence[Sequence[float]],
        ignored: Sequence[bool] | None = None,
        masks: list[dict[str, Any]] | None = None,
    ) -> Truths:
        n = len(classes)
        return cls(
            np.asarray(classes, dtype=np.int64).reshape(n),
            np.asarray(boxes, dtype=np.float64).reshape(n, 4),
            np.asarray(ignored if ignored is not None else [False] * n, dtype=bool).reshape(n),
            masks,
        )


def box_iou(
    a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], crowd: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.float64]:
    """IoU of ``a`` (M, 4) against ``b`` (N, 4), boxes ``[x1, y1, x2, y2]``; for the columns where
    ``crowd`` is true, intersection over the area of ``a`` (pycocotools' rule for crowd regions)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    wa = np.clip(a[:, 2] - a[:, 0], 0, None)
    ha = np.clip(a[:, 3] - a[:, 1], 0, None)
    wb = np.clip(b[:, 2] - b[:, 0], 0, None)
    hb = np.clip(b[:, 3] - b[:, 1], 0, None)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = (wa * ha)[:, None]
    union = area_a + (wb * hb)[None, :] - inter
    if crowd is not None and len(crowd):
        union = np.where(np.asarray(crowd, bool)[None, :], area_a, union)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return np.asarray(out, np.float64)


def mask_iou(
    a: list[dict[str, Any]], b: list[dict[str, Any]], crowd: npt.NDArray[np.bool_] | None = None
) -> npt.NDArray[np.float64]:
    """IoU of RLE masks ``a`` against ``b`` (same image size), crowd columns as :func:`box_iou`."""
    if not a or not b:
        return np.zeros((len(a), len(b)))
    from faster_coco_eval.core import mask as mask_utils

    flags = [int(x) for x in (crowd if crowd is not None else np.zeros(len(b), bool))]
    out = np.asarray(
        mask_utils.iou([rle_for_coco(r) for r in a], [rle_for_coco(r) for r in b], flags), dtype=np.float64
    )
    return out.reshape(len(a), len(b))


def polygons_to_rle(
    polygons: Sequence[Sequence[Sequence[float]]], *, width: int, height: int
) -> dict[str, Any]:
    """Polygons ``[[[x, y], ...], ...]`` normalised 0..1 of the image → one COCO RLE in pixels."""
    from faster_coco_eval.core import mask as mask_utils

    flat = [
        [float(v) * (width if i % 2 == 0 else height) for p in poly for i, v in enumerate(p[:2])]
        for poly in polygons
    ]
    flat = [f for f in flat if len(f) >= 6]
    if not flat:
        rle = mask_utils.encode(np.zeros((height, width, 1), np.uint8, order="F"))[0]
    else:
        rle = mask_utils.merge(mask_utils.frPyObjects(flat, height, width))
    counts = rle["counts"]
    return {
        "size": [int(height), int(width)],
        "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts,
    }


def object_rle(
    mask: dict[str, Any] | None, box: Sequence[float], *, width: int, height: int
) -> dict[str, Any]:
    """A ground-truth object's mask as one RLE of ``height``×``width`` pixels: from normalised
    ``{"polygons"}``, from an RLE (uncompressed counts encoded; another size resized, nearest),
    or, without a mask, its box ``[x1, y1, x2, y2]`` in pixels filled."""
    from faster_coco_eval.core import mask as mask_utils

    if mask and "polygons" in mask:
        return polygons_to_rle(mask["polygons"], width=width, height=height)
    if mask and "counts" in mask:
        rle = rle_for_coco(mask)
        h, w = rle["size"]
        if [h, w] != [height, width]:
            from PIL import Image

            m = mask_utils.decode(rle)
            resized = Image.fromarray(m * 255).resize((width, height), Image.Resampling.NEAREST)
            rle = mask_utils.encode(np.asfortranarray((np.asarray(resized) > 127).astype(np.uint8)))
        c = rle["counts"]
        return {"size": [height, width], "counts": c.decode("ascii") if isinstance(c, bytes) else c}
    filled = np.zeros((height, width), np.uint8)
    x1, y1, x2, y2 = (float(v) for v in box)
    filled[
        max(0, round(y1)) : max(0, min(height, round(y2))),
        max(0, round(x1)) : max(0, min(width, round(x2))),
    ] = 1
    rle = mask_utils.encode(np.asfortranarray(filled))
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


@dataclass
class ImageMatch:
    """The matching of one image's predictions (in the order given: best score first) and truths.

    Predictions: ``pred_outcome`` ``tp`` | ``fp`` | ``ignored``; ``pred_reason`` for false
    positives (else None); ``pred_match`` the truth index a true positive (or an ignored
    prediction) matched; ``pred_overlap`` the truth behind a false positive's reason;
    ``pred_iou`` the IoU with that truth (for ``background``: the highest IoU with any truth).
    Truths: ``truth_outcome`` ``tp`` | ``fn`` | ``ignored`` over all predictions and
    ``matched_score`` (NaN when unmatched).
    """

    pred_classes: npt.NDArray[np.int64]
    pred_scores: npt.NDArray[np.float64]
    pred_outcome: list[str]
    pred_reason: list[str | None]
    pred_match: list[int | None]
    pred_overlap: list[int | None]
    pred_iou: npt.NDArray[np.float64]
    truth_classes: npt.NDArray[np.int64]
    truth_ignored: npt.NDArray[np.bool_]
    truth_outcome: list[str]
    matched_score: npt.NDArray[np.float64]
    ious: npt.NDArray[np.float64] = field(repr=False)  # predictions × truths

    def counts(self, score_threshold: float) -> dict[str, int]:
        """``{"tp", "fp", "fn", "ignored"}`` at a score threshold (prefix of the full matching)."""
        keep = self.pred_scores >= score_threshold
        outcome = np.asarray(self.pred_outcome, dtype=object)
        tp = int(np.sum(keep & (outcome == "tp")))
        fp = int(np.sum(keep & (outcome == "fp")))
        ign = int(np.sum(keep & (outcome == "ignored")))
        return {"tp": tp, "fp": fp, "fn": int(np.sum(~self.truth_ignored)) - tp, "ignored": ign}

    def average_precision(self) -> float | None:
        """AP of this image (all classes pooled, class-aware matching, 101 recall points, COCO
        interpolation); None without a (not ignored) truth."""
        npos = int(np.sum(~self.truth_ignored))
        if npos == 0:
            return None
        outcome = [o for o in self.pred_outcome if o != "ignored"]
        tps = np.array([o == "tp" for o in outcome], dtype=bool)
        return _interpolated_ap(tps, npos)

    def to_json(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The outcome fields of the predictions and truths (merged by the caller with their
        classes, boxes and masks)."""
        preds = [
            {
                "outcome": self.pred_outcome[i],
                "reason": self.pred_reason[i],
                "match": self.pred_match[i],
                "overlap": self.pred_overlap[i],
                "iou": round(float(self.pred_iou[i]), 6),
            }
            for i in range(len(self.pred_outcome))
        ]
        truths = [
            {
                "outcome": self.truth_outcome[j],
                "matched_score": None if np.isnan(self.matched_score[j]) else float(self.matched_score[j]),
            }
            for j in range(len(self.truth_outcome))
        ]
        return preds, truths


def match_image(
    truths: Truths,
    detections: Detections,
    *,
    iou_threshold: float = 0.5,
    use_masks: bool = False,
) -> ImageMatch:
    """Match one image's ``detections`` (best score first, as :class:`Detections` keep them) to its
    ``truths`` at ``iou_threshold``, by boxes or (``use_masks``) by masks."""
    if not 0.0 < iou_threshold < 1.0:
        raise ValueError(f"the IoU threshold must be between 0 and 1 (exclusive), got {iou_threshold}")
    n_pred, n_truth = len(detections), len(truths)
    if use_masks:
        if detections.masks is None or truths.masks is None:
            raise ValueError("matching by masks needs masks on both the predictions and the truths")
        ious = mask_iou(list(detections.masks), list(truths.masks), truths.ignored)
    else:
        ious = box_iou(detections.boxes, truths.boxes, truths.ignored)
    scores = np.asarray(detections.scores, np.float64).reshape(n_pred)
    pred_classes = np.asarray(detections.labels, np.int64).reshape(n_pred)
    # the order of matching: descending score, ties in the given order
    order = np.argsort(-scores, kind="stable")
    outcome: list[str] = ["fp"] * n_pred
    reason: list[str | None] = [None] * n_pred
    match: list[int | None] = [None] * n_pred
    overlap: list[int | None] = [None] * n_pred
    pred_iou = np.zeros(n_pred)
    taken = np.zeros(n_truth, bool)
    matched_score = np.full(n_truth, np.nan)
    limit = min(float(iou_threshold), 1 - 1e-10)
    regular = ~truths.ignored
    same = pred_classes[:, None] == truths.classes[None, :]
    hit = same & (ious >= limit)
    has_hit = hit.any(axis=1) if n_truth else np.zeros(n_pred, bool)
    # predictions that reach no object of their class at the threshold are false positives
    # whatever the others do: their reasons at once
    _reasons_without_hit(
        np.flatnonzero(~has_hit), ious, same, regular, iou_threshold, reason, overlap, pred_iou
    )
    # the others in score order, as pycocotools: the best unmatched regular object of the class
    # (equal IoUs: the later object), else the best crowd region, else a duplicate
    for d in order[has_hit[order]]:
        cand = hit[d] & regular & ~taken
        if not cand.any():
            cand = hit[d] & truths.ignored
        if cand.any():
            idx = np.flatnonzero(cand)
            vals = ious[d, idx]
            m = int(idx[np.flatnonzero(vals == vals.max())[-1]])
            match[d] = m
            pred_iou[d] = ious[d, m]
            if truths.ignored[m]:
                outcome[d] = "ignored"
            else:
                outcome[d] = "tp"
                taken[m] = True
                matched_score[m] = scores[d]
            continue
        reason[d], overlap[d], pred_iou[d] = _why(
            int(d), int(pred_classes[d]), ious, truths, taken, iou_threshold
        )
    truth_outcome = ["ignored" if truths.ignored[g] else ("tp" if taken[g] else "fn") for g in range(n_truth)]
    return ImageMatch(
        pred_classes=pred_classes,
        pred_scores=scores,
        pred_outcome=outcome,
        pred_reason=reason,
        pred_match=match,
        pred_overlap=overlap,
        pred_iou=pred_iou,
        truth_classes=truths.classes,
        truth_ignored=truths.ignored,
        truth_outcome=truth_outcome,
        matched_score=matched_score,
        ious=ious,
    )


def _reasons_without_hit(
    rows: npt.NDArray[np.int64],
    ious: npt.NDArray[np.float64],
    same: npt.NDArray[np.bool_],
    regular: npt.NDArray[np.bool_],
    thr: float,
    reason: list[str | None],
    overlap: list[int | None],
    pred_iou: npt.NDArray[np.float64],
) -> None:
    """Reasons of the predictions ``rows`` that overlap no object of their class at ``thr``
    (vectorised :func:`_why`: never a duplicate)."""
    if not len(rows):
        return
    if ious.shape[1] == 0:
        for d in rows:
            reason[d] = "background"
        return
    sub = ious[rows]
    wrong = np.where(regular[None, :] & ~same[rows] & (sub >= thr), sub, -1.0)
    local = np.where(regular[None, :] & same[rows] & (sub >= LOCALISATION_IOU), sub, -1.0)
    w_best, l_best = wrong.argmax(axis=1), local.argmax(axis=1)
    w_ok = wrong[np.arange(len(rows)), w_best] >= 0
    l_ok = local[np.arange(len(rows)), l_best] >= 0
    top = sub.max(axis=1)
    for k, d in enumerate(rows.tolist()):
        if w_ok[k]:
            g = int(w_best[k])
            reason[d], overlap[d], pred_iou[d] = "wrong_class", g, sub[k, g]
        elif l_ok[k]:
            g = int(l_best[k])
            reason[d], overlap[d], pred_iou[d] = "localisation", g, sub[k, g]
        else:
            reason[d], pred_iou[d] = "background", top[k]


def _why(
    d: int,
    c: int,
    ious: npt.NDArray[np.float64],
    truths: Truths,
    taken: npt.NDArray[np.bool_],
    thr: float,
) -> tuple[str, int | None, float]:
    """Why prediction ``d`` of class ``c`` matched nothing (``taken`` as it stood when it did)."""
    row = ious[d] if ious.shape[1] else np.zeros(0)
    regular = ~truths.ignored
    same = regular & (truths.classes == c)
    other = regular & (truths.classes != c)

    def best(mask: npt.NDArray[np.bool_]) -> tuple[int | None, float]:
        if not mask.any():
            return None, 0.0
        idx = np.flatnonzero(mask)
        k = int(idx[np.argmax(row[idx])])
        return k, float(row[k])

    g, v = best(same & taken & (row >= thr))
    if g is not None:
        return "duplicate", g, v
    g, v = best(other & (row >= thr))
    if g is not None:
        return "wrong_class", g, v
    g, v = best(same & (row >= LOCALISATION_IOU))
    if g is not None:
        return "localisation", g, v
    _, v = best(np.ones(len(row), bool))
    return "background", None, v


def _interpolated_ap(tps: npt.NDArray[np.bool_], npos: int) -> float:
    """COCO's 101-point interpolated AP of ranked hits ``tps`` against ``npos`` objects."""
    precision = interpolated_precision(tps, npos)
    return float(np.mean(precision))


def interpolated_precision(tps: npt.NDArray[np.bool_], npos: int) -> npt.NDArray[np.float64]:
    q = np.zeros(len(RECALL_POINTS))
    if npos == 0 or len(tps) == 0:
        return q
    tp = np.cumsum(tps, dtype=np.float64)
    fp = np.cumsum(~tps, dtype=np.float64)
    rc = tp / npos
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope
    idx = np.searchsorted(rc, RECALL_POINTS, side="left")
    ok = idx < len(pr)
    q[ok] = pr[idx[ok]]
    return q


# --- over a whole evaluation ---------------------------------------------------------------------------


@dataclass
class Summary:
    """What a set of matched images gives at one score threshold."""

    confusion: npt.NDArray[np.int64]  # (N+1)×(N+1), rows true, columns predicted, background last
    per_class: list[dict[str, Any]]  # per class: objects, tp, fp, fn, precision, recall, f1, ap (PR)
    totals: dict[str, Any]
    pr_curves: list[dict[str, Any]]  # per class: recall, precision (101 points), ap
    f1_curve: dict[str, list[float]]  # confidence, precision, recall, f1 (all classes pooled)
    best_f1: dict[str, float]  # threshold, f1, precision, recall


def confusion_matrix(
    images: Sequence[ImageMatch], num_classes: int, *, iou_threshold: float, score_threshold: float
) -> npt.NDArray[np.int64]:
    """The (N+1)×(N+1) detection confusion matrix at a score threshold (see the module docstring)."""
    cm = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    for im in images:
        add_to_confusion(
            cm,
            pred_classes=im.pred_classes,
            pred_scores=im.pred_scores,
            pred_outcome=im.pred_outcome,
            truth_classes=im.truth_classes,
            truth_ignored=im.truth_ignored,
            matched_score=im.matched_score,
            ious=im.ious,
            overlaps=im.ious >= iou_threshold,
            score_threshold=score_threshold,
        )
    return cm


def add_to_confusion(
    cm: npt.NDArray[np.int64],
    *,
    pred_classes: npt.NDArray[np.int64],
    pred_scores: npt.NDArray[np.float64],
    pred_outcome: Sequence[str],
    truth_classes: npt.NDArray[np.int64],
    truth_ignored: npt.NDArray[np.bool_],
    matched_score: npt.NDArray[np.float64],
    ious: npt.NDArray[np.float64],
    overlaps: npt.NDArray[np.bool_],
    score_threshold: float,
) -> None:
    """Count one matched image into ``cm`` ((N+1)×(N+1), background last), in place.

    ``pred_outcome`` (``tp`` | ``fp`` | ``ignored``) and ``matched_score`` (NaN when unmatched)
    are the image's matching over all its predictions; ``ious`` (predictions × truths) orders the
    wrong-class pairs and ``overlaps`` says which pairs are over the matching's IoU threshold (the
    caller's rule: COCO's ≥, the DOTA devkit's >)."""
    bg = cm.shape[0] - 1
    keep = pred_scores >= score_threshold
    fps: list[int] = []
    for d, o in enumerate(pred_outcome):
        if not keep[d] or o == "ignored":
            continue
        if o == "tp":
            cm[pred_classes[d], pred_classes[d]] += 1
        else:
            fps.append(d)
    found = ~np.isnan(matched_score) & (np.nan_to_num(matched_score, nan=-1.0) >= score_threshold)
    fns = [g for g in range(len(truth_classes)) if not truth_ignored[g] and not found[g]]
    pairs = [
        (float(ious[d, g]), g, d)
        for g in fns
        for d in fps
        if pred_classes[d] != truth_classes[g] and overlaps[d, g]
    ]
    pairs.sort(key=lambda x: -x[0])
    used_g: set[int] = set()
    used_d: set[int] = set()
    for _, g, d in pairs:
        if g in used_g or d in used_d:
            continue
        used_g.add(g)
        used_d.add(d)
        cm[truth_classes[g], pred_classes[d]] += 1
    for g in fns:
        if g not in used_g:
            cm[truth_classes[g], bg] += 1
    for d in fps:
        if d not in used_d:
            cm[bg, pred_classes[d]] += 1


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else 0.0


def summarise(
    images: Sequence[ImageMatch], num_classes: int, *, iou_threshold: float, score_threshold: float
) -> Summary:
    """Confusion matrix, per-class precision/recall/F1 at ``score_threshold``, PR curves per class
    (predictions ranked as pycocotools ranks them, at most 100 per image and class) and the pooled
    F1-vs-confidence curve with the confidence that maximises F1."""
    cm = confusion_matrix(images, num_classes, iou_threshold=iou_threshold, score_threshold=score_threshold)
    scores, hits, all_scores, all_hits, npos = _ranked(images, num_classes)
    pr_curves = []
    for c in range(num_classes):
        s = np.asarray(scores[c])
        h = np.asarray(hits[c], bool)
        rank = np.argsort(-s, kind="mergesort")
        q = interpolated_precision(h[rank], int(npos[c]))
        pr_curves.append(
            {
                "recall": [round(float(r), 2) for r in RECALL_POINTS],
                "precision": [round(float(v), 6) for v in q],
                "ap": float(np.mean(q)) if npos[c] else None,
            }
        )
    per_class = []
    for c in range(num_classes):
        tp = int(cm[c, c])
        fp = int(cm[:, c].sum()) - tp
        fn = int(cm[c, :].sum()) - tp
        p, r = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
        per_class.append(
            {
                "objects": int(npos[c]),
                "tp": tp,
                "fp": fp,
                "fn": fn,
                "precision": p,
                "recall": r,
                "f1": _ratio(2 * p * r, p + r),
            }
        )
    tp_all = int(np.trace(cm[:num_classes, :num_classes]))
    fp_all = int(cm[:, :num_classes].sum()) - tp_all
    fn_all = int(cm[:num_classes, :].sum()) - tp_all
    p_all, r_all = _ratio(tp_all, tp_all + fp_all), _ratio(tp_all, tp_all + fn_all)
    totals = {
        "objects": int(npos.sum()),
        "tp": tp_all,
        "fp": fp_all,
        "fn": fn_all,
        "precision": p_all,
        "recall": r_all,
        "f1": _ratio(2 * p_all * r_all, p_all + r_all),
    }
    f1_curve, best = f1_vs_confidence(np.asarray(all_scores), np.asarray(all_hits, bool), int(npos.sum()))
    return Summary(cm, per_class, totals, pr_curves, f1_curve, best)


def best_f1(images: Sequence[ImageMatch], num_classes: int) -> dict[str, float]:
    """The confidence that maximises the pooled F1 (as :func:`summarise`'s ``best_f1``, which
    does not depend on the score threshold), without the rest of the summary."""
    _, _, all_scores, all_hits, npos = _ranked(images, num_classes)
    return f1_vs_confidence(np.asarray(all_scores), np.asarray(all_hits, bool), int(npos.sum()))[1]


def _ranked(
    images: Sequence[ImageMatch], num_classes: int
) -> tuple[list[list[float]], list[list[bool]], list[float], list[bool], npt.NDArray[np.int64]]:
    """Ranked predictions per class (image order, then per image best first (stable), at most 100
    per image and class; one stable sort by score over all of them follows — pycocotools'
    accumulate), all of them pooled, and the number of (not ignored) objects per class."""
    scores: list[list[float]] = [[] for _ in range(num_classes)]
    hits: list[list[bool]] = [[] for _ in range(num_classes)]
    all_scores: list[float] = []
    all_hits: list[bool] = []
    npos = np.zeros(num_classes, np.int64)
    for im in images:
        for g in range(len(im.truth_classes)):
            if not im.truth_ignored[g] and 0 <= im.truth_classes[g] < num_classes:
                npos[im.truth_classes[g]] += 1
        order = np.argsort(-im.pred_scores, kind="stable")
        per_class_rank = np.zeros(num_classes, np.int64)
        for d in order:
            c = int(im.pred_classes[d])
            if not 0 <= c < num_classes:
                continue
            o = im.pred_outcome[d]
            if o == "ignored":
                per_class_rank[c] += 1
                continue
            all_scores.append(float(im.pred_scores[d]))
            all_hits.append(o == "tp")
            if per_class_rank[c] < MAX_DETECTIONS:
                scores[c].append(float(im.pred_scores[d]))
                hits[c].append(o == "tp")
            per_class_rank[c] += 1
    return scores, hits, all_scores, all_hits, npos


def f1_vs_confidence(
    scores: npt.NDArray[np.float64], hits: npt.NDArray[np.bool_], npos: int
) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Pooled precision, recall and F1 of the predictions scoring ≥ c, for c on a 0..1 grid of 101
    points, and the best F1 over every distinct score (the highest such score on ties)."""
    order = np.argsort(-scores, kind="stable")
    s, h = scores[order], hits[order]
    tp = np.cumsum(h, dtype=np.float64)

    def at(count: npt.NDArray[np.int64]) -> tuple[Any, Any, Any]:
        t = np.where(count > 0, tp[np.maximum(count - 1, 0)], 0.0) if len(s) else np.zeros(len(count))
        k = count.astype(np.float64)
        p = np.where(k > 0, t / np.maximum(k, 1), 0.0)
        r = t / npos if npos else np.zeros(len(count))
        f = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-300), 0.0)
        return p, r, f

    # how many predictions score ≥ c (s is descending, so -s is ascending)
    grid_count = np.searchsorted(-s, -CONFIDENCE_POINTS, side="right").astype(np.int64)
    p, r, f = at(grid_count)
    curve = {
        "confidence": [round(float(c), 2) for c in CONFIDENCE_POINTS],
        "precision": [round(float(v), 6) for v in p],
        "recall": [round(float(v), 6) for v in r],
        "f1": [round(float(v), 6) for v in f],
    }
    if not len(s):
        return curve, {"threshold": 0.0, "f1": 0.0, "precision": 0.0, "recall": 0.0}
    # the cut after the last of each run of equal scores
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    bp, br, bf = at(last + 1)
    # highest F1; on ties the highest threshold (fewest predictions)
    k = int(np.flatnonzero(bf == bf.max())[0])
    return curve, {
        "threshold": float(s[last[k]]),
        "f1": float(bf[k]),
        "precision": float(bp[k]),
        "recall": float(br[k]),
    }
