"""Anomaly detection scores and metrics, in NumPy (no torch): what training's validation, the
evaluation, the export and ``vistudio predict`` share.

A model gives every image one **anomaly score** in 0..1 (the sigmoid of its single logit); an image
is **anomalous** when its score is at least the **threshold** (``score >= threshold``). Labels are
0 (normal) and 1 (anomalous, whatever the defect).

Definitions (scikit-learn's, checked against it in the tests):

- ROC curve: one point per distinct score, taken as a threshold from the highest down, after the
  point (0, 0) of a threshold above every score; ``auroc`` is the trapezoidal area under it, which
  is the Mann–Whitney U statistic / (n₀·n₁) (ties count one half) — ``roc_auc_score``.
- ``ap``: average precision, Σₙ (Rₙ − Rₙ₋₁)·Pₙ over the same thresholds (no interpolation) —
  ``average_precision_score``.
- The chosen threshold is set by the score that maximises F1 (``f1``) or Youden's J = TPR − FPR
  (``youden``) when taken as the threshold; among equal values the highest score wins (fewer
  alarms). The threshold stored is halfway between that score and the next lower one: no score
  lies between the two, so with the decision ``score >= threshold`` it gives exactly the TPR, FPR,
  precision and F1 reported with it, and an image at the edge keeps its decision when another
  runtime computes its score a few 1e-7 differently.

A metric that is undefined for the data (AUROC without normal or without anomalous images, AP
without anomalous ones) is None, never NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

THRESHOLD_BY = ("f1", "youden")
# the project class that holds the normal images: MVTec's good/, or 0 of a CSV's 0/1 label column
NORMAL_NAMES = ("good", "normal", "ok", "0")
ANOMALOUS = "anomalous"  # the model's positive class, whatever the defect type
OUTPUT_NAME = "score"  # the output of an exported anomaly model: N×1 scores in 0..1
MAX_CURVE_POINTS = 1001  # points a stored ROC or PR curve keeps at most (for the charts)
HISTOGRAM_BINS = 20

FloatArray = npt.NDArray[np.float64]


def normal_class(classes: Sequence[str]) -> str | None:
    """The class that holds the normal images: the first named good, normal, ok (any case) or 0."""
    for name in classes:
        if name.strip().lower() in NORMAL_NAMES:
            return name
    return None


def sigmoid(logits: npt.ArrayLike) -> FloatArray:
    """The anomaly score of logits, in float64, without overflow for large magnitudes."""
    x = np.asarray(logits, dtype=np.float64)
    out = np.empty_like(x)
    pos = x >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-x[pos]))
    e = np.exp(x[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def _arrays(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[npt.NDArray[np.bool_], FloatArray]:
    y = np.asarray(labels).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels for {s.size} scores")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("labels must be 0 (normal) or 1 (anomalous)")
    return y.astype(bool), s


def counts(labels: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray]:
    """``(thresholds, tp, fp)`` at every distinct score, highest first: images with
    ``score >= threshold`` count as anomalous."""
    y, s = _arrays(labels, scores)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    # the last index of each run of equal scores: all of them are on the same side of a threshold
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1] if s.size else np.zeros(0, dtype=np.int64)
    tp = np.cumsum(y, dtype=np.float64)[last]
    fp = (last + 1).astype(np.float64) - tp
    return s[last], tp, fp


def roc_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, list[float]]:
    """``{"fpr", "tpr", "thresholds"}`` from (0, 0) (threshold ``inf``) to (1, 1), one point per
    distinct score; empty lists without normal or without anomalous images."""
    thr, tp, fp = counts(labels, scores)
    p, n = (tp[-1], fp[-1]) if tp.size else (0.0, 0.0)
    if p == 0 or n == 0:
        return {"fpr": [], "tpr": [], "thresholds": []}
    return {
        "fpr": [0.0, *(fp / n).tolist()],
        "tpr": [0.0, *(tp / p).tolist()],
        "thresholds": [math.inf, *thr.tolist()],
    }


def auroc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Area under the ROC curve (trapezoids); None without normal or without anomalous images."""
    roc = roc_curve(labels, scores)
    if not roc["fpr"]:
        return None
    return float(np.trapezoid(roc["tpr"], roc["fpr"]))


def pr_curve(labels: npt.ArrayLike, scores: npt.ArrayLike) -> dict[str, list[float]]:
    """``{"precision", "recall", "thresholds"}`` at every distinct score, highest first; empty
    lists without anomalous images."""
    thr, tp, fp = counts(labels, scores)
    if not tp.size or tp[-1] == 0:
        return {"precision": [], "recall": [], "thresholds": []}
    return {
        "precision": (tp / (tp + fp)).tolist(),
        "recall": (tp / tp[-1]).tolist(),
        "thresholds": thr.tolist(),
    }


def average_precision(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float | None:
    """Σ (Rₙ − Rₙ₋₁)·Pₙ (scikit-learn's definition); None without anomalous images."""
    pr = pr_curve(labels, scores)
    if not pr["recall"]:
        return None
    recall = np.asarray([0.0, *pr["recall"]])
    return float(np.sum(np.diff(recall) * np.asarray(pr["precision"])))


def at_threshold(labels: npt.ArrayLike, scores: npt.ArrayLike, threshold: float) -> dict[str, Any]:
    """The decisions ``score >= threshold`` against the labels: counts, TPR (recall), FPR,
    precision, F1 and accuracy (an undefined ratio is None)."""
    y, s = _arrays(labels, scores)
    pred = s >= threshold
    tp = int(np.sum(pred & y))
    fp = int(np.sum(pred & ~y))
    fn = int(np.sum(~pred & y))
    tn = int(np.sum(~pred & ~y))

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    return {
        "threshold": float(threshold),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "tpr": ratio(tp, tp + fn),
        "fpr": ratio(fp, fp + tn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
        "accuracy": ratio(tp + tn, y.size),
    }


def best_threshold(labels: npt.ArrayLike, scores: npt.ArrayLike, by: str = "f1") -> float | None:
    """The threshold that maximises F1 (``by="f1"``) or Youden's J (``by="youden"``), the decision
    being ``score >= threshold``: halfway between the best score and the next lower one (see the
    module's notes); ties go to the highest score. None when the criterion is undefined (no
    anomalous images; for J also no normal ones)."""
    if by not in THRESHOLD_BY:
        raise ValueError(f"threshold_by must be one of {', '.join(THRESHOLD_BY)}, got {by!r}")
    thr, tp, fp = counts(labels, scores)
    if not tp.size or tp[-1] == 0:
        return None
    p, n = tp[-1], fp[-1]
    if by == "f1":
        value = 2 * tp / (tp + fp + p)  # 2TP / (2TP + FP + FN) with FN = P − TP
    else:
        if n == 0:
            return None
        value = tp / p - fp / n
    # argmax takes the first maximum: the highest score among equal values
    k = int(np.argmax(value))
    return _between(float(thr[k]), float(thr[k + 1]) if k + 1 < thr.size else None)


def _between(score: float, lower: float | None) -> float:
    """A threshold that makes the same decisions as ``score >= score`` on the scores it was chosen
    from, halfway to the next lower score: then a score computed by another runtime (ONNX, float32
    arithmetic in another order, ~1e-7 off) does not flip the decision of the image at the edge."""
    if lower is None:
        return score
    mid = (score + lower) / 2
    return mid if lower < mid <= score else score


def _thin(values: list[float], keep: int) -> list[float]:
    if len(values) <= keep:
        return values
    idx = np.unique(np.linspace(0, len(values) - 1, keep).round().astype(np.int64))
    return [values[int(i)] for i in idx]


def _thin_curve(curve: dict[str, list[float]], keep: int = MAX_CURVE_POINTS) -> dict[str, list[float]]:
    """At most ``keep`` points of a curve (evenly spaced, the ends kept), for the charts; the
    metrics are computed on the whole curve."""
    return {k: _thin(v, keep) for k, v in curve.items()}


def score_histogram(
    labels: npt.ArrayLike, scores: npt.ArrayLike, bins: int = HISTOGRAM_BINS
) -> dict[str, list[Any]]:
    """Counts of normal and anomalous scores in ``bins`` equal bins of 0..1 (the last one closed):
    ``{"edges", "normal", "anomalous"}``."""
    y, s = _arrays(labels, scores)
    edges = np.linspace(0.0, 1.0, bins + 1)
    clipped = np.clip(s, 0.0, 1.0)
    normal, _ = np.histogram(clipped[~y], bins=edges)
    anomalous, _ = np.histogram(clipped[y], bins=edges)
    return {"edges": edges.tolist(), "normal": normal.tolist(), "anomalous": anomalous.tolist()}


def anomaly_metrics(
    labels: npt.ArrayLike,
    scores: npt.ArrayLike,
    *,
    threshold_by: str = "f1",
    threshold: float | None = None,
    fallback_threshold: float | None = None,
) -> dict[str, Any]:
    """Every metric of an evaluation: AUROC, AP, the threshold (given, else the best by
    ``threshold_by``, else ``fallback_threshold`` — e.g. the checkpoint's validation threshold
    when the images hold no anomaly — else 0.5) and the decisions' counts and ratios at it, the
    ROC and PR curves (thinned to ``MAX_CURVE_POINTS``) and the score histograms.

    ``threshold_source``: ``given``, ``f1`` / ``youden`` (chosen on these images), ``fallback`` or
    ``default``."""
    y, s = _arrays(labels, scores)
    if threshold is not None:
        chosen, source = float(threshold), "given"
    else:
        best = best_threshold(y, s, threshold_by)
        if best is not None:
            chosen, source = best, threshold_by
        elif fallback_threshold is not None:
            chosen, source = float(fallback_threshold), "fallback"
        else:
            chosen, source = 0.5, "default"
    out: dict[str, Any] = {
        "auroc": auroc(y, s),
        "ap": average_precision(y, s),
        **at_threshold(y, s, chosen),
        "threshold_by": threshold_by,
        "threshold_source": source,
        "samples": int(y.size),
        "normal": int(np.sum(~y)),
        "anomalous": int(np.sum(y)),
        "roc": _thin_curve(roc_curve(y, s)),
        "pr": _thin_curve(pr_curve(y, s)),
        "histogram": score_histogram(y, s),
    }
    # +inf (the ROC's first threshold) is not JSON: the stored curve starts at None
    if out["roc"]["thresholds"]:
        out["roc"]["thresholds"][0] = None
    return out
