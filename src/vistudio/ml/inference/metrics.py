"""Classification metrics from predicted and true class indices (NumPy only).

The definitions are scikit-learn's (``precision_recall_fscore_support`` with every class listed in
``labels`` and ``zero_division=0``): a ratio whose denominator is zero counts as 0, F1 is
``2·tp / (2·tp + fp + fn)``, macro averages are plain means over *all* classes (a class absent from
both the truth and the predictions counts as 0), weighted averages weigh classes by their support,
and micro averages pool the counts (for single-label data they all equal the accuracy). The same
arithmetic in the same order gives the same floats, so tests compare with ``==``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def confusion_matrix(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, num_classes: int) -> IntArray:
    """``num_classes``×``num_classes`` counts: row = true class, column = predicted class."""
    t = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(y_pred, dtype=np.int64)
    if t.shape != p.shape or t.ndim != 1:
        raise ValueError(f"y_true and y_pred must be 1-D of the same length, got {t.shape} and {p.shape}")
    if t.size and (min(t.min(), p.min()) < 0 or max(t.max(), p.max()) >= num_classes):
        raise ValueError(f"class indices must lie in [0, {num_classes})")
    cm = np.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return cm.reshape(num_classes, num_classes).astype(np.int64)


def _divide(num: npt.NDArray[Any], den: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    den = np.asarray(den, dtype=np.float64).copy()
    mask = den == 0
    den[mask] = 1
    out = np.asarray(num, dtype=np.float64) / den
    out[mask] = 0.0
    return out


def classification_metrics(cm: IntArray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro/micro/weighted precision, recall and F1, and per-class values with support.

    ``cm`` is the confusion matrix of :func:`confusion_matrix`; ``classes`` names its rows.
    """
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    tp = np.diag(cm)
    pred_sum = cm.sum(axis=0)
    true_sum = cm.sum(axis=1)
    precision = _divide(tp, pred_sum)
    recall = _divide(tp, true_sum)
    f1 = _divide(2.0 * tp.astype(np.float64), true_sum.astype(np.float64) + pred_sum)
    micro_p = float(_divide(np.array([tp.sum()]), np.array([pred_sum.sum()]))[0])
    micro_r = float(_divide(np.array([tp.sum()]), np.array([true_sum.sum()]))[0])
    micro_f = float(
        _divide(np.array([2.0 * tp.sum()]), np.array([float(true_sum.sum()) + pred_sum.sum()]))[0]
    )
    weighted = (
        {
            "weighted_precision": float(np.average(precision, weights=true_sum)),
            "weighted_recall": float(np.average(recall, weights=true_sum)),
            "weighted_f1": float(np.average(f1, weights=true_sum)),
        }
        if n
        else {"weighted_precision": 0.0, "weighted_recall": 0.0, "weighted_f1": 0.0}
    )
    return {
        "samples": n,
        "correct": int(tp.sum()),
        "accuracy": float(tp.sum() / n) if n else 0.0,
        "macro_precision": float(np.mean(precision)),
        "macro_recall": float(np.mean(recall)),
        "macro_f1": float(np.mean(f1)),
        "micro_precision": micro_p,
        "micro_recall": micro_r,
        "micro_f1": micro_f,
        **weighted,
        "per_class": [
            {
                "class": name,
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(true_sum[i]),
                "predicted": int(pred_sum[i]),
            }
            for i, name in enumerate(classes)
        ],
    }


def softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Row-wise softmax of an N×C array, in float64 (stable: the row maximum is subtracted)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    result: npt.NDArray[np.float64] = e / e.sum(axis=1, keepdims=True)
    return result


def top_k(probs: npt.NDArray[Any], k: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """The ``k`` most probable classes of each row, best first (ties: lower index first)."""
    k = max(1, min(int(k), probs.shape[1]))
    order = np.argsort(-np.asarray(probs, dtype=np.float64), axis=1, kind="stable")[:, :k]
    return order.astype(np.int64), np.take_along_axis(np.asarray(probs, dtype=np.float64), order, axis=1)
