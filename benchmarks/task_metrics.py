"""Anomaly detection and regression evaluation benchmark: vistudio's metrics of an evaluation
against scikit-learn's on the same predictions, one core.

    .venv/bin/python benchmarks/task_metrics.py [--samples 1000000] [--targets 3]

Anomaly: ``anomaly_metrics`` (AUROC, AP, the best-F1 threshold and the counts at it, ROC and PR
curves thinned for the page, score histograms) against the baseline a user would write with
scikit-learn: ``roc_auc_score``, ``average_precision_score``, ``precision_recall_curve`` to pick the
best-F1 threshold, ``roc_curve`` (the curves scikit-learn gives are not thinned). Scores: 5 %
anomalies, normal ~ N(0, 1), anomalous ~ N(1.5, 1), rounded to 1e-4 (ties, as real models'
float32 outputs have). Regression: ``regression_metrics`` (MAE, MSE, RMSE, R², averaged and per
target) against scikit-learn's four functions per target. Prints one JSON document: the time of
each, the ratios (baseline time / vistudio time: above 1 is vistudio faster) and the largest
difference between the two sides' values (they must agree).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from vistudio.ml.inference.anomaly import anomaly_metrics
from vistudio.ml.inference.regression import regression_metrics


def timed(fn: Callable[..., Any], *args: Any, repeat: int = 3) -> tuple[float, Any]:
    """The best of ``repeat`` runs (seconds) and the value."""
    best, value = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        value = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, value


def sklearn_anomaly(labels: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    precision, recall, thresholds = precision_recall_curve(labels, scores)
    f1 = 2 * precision * recall / np.maximum(precision + recall, np.finfo(float).tiny)
    best = int(np.argmax(f1[:-1]))
    roc_curve(labels, scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "ap": float(average_precision_score(labels, scores)),
        "f1": float(f1[best]),
        "threshold": float(thresholds[best]),
    }


def sklearn_regression(truth: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    per = [
        (
            mean_absolute_error(truth[:, j], pred[:, j]),
            mean_squared_error(truth[:, j], pred[:, j]),
            r2_score(truth[:, j], pred[:, j]),
        )
        for j in range(truth.shape[1])
    ]
    mae, mse, r2 = (float(np.mean([p[i] for p in per])) for i in range(3))
    rmse = float(np.mean([np.sqrt(p[1]) for p in per]))
    return {"mae": mae, "mse": mse, "rmse": rmse, "r2": r2}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1_000_000)
    ap.add_argument("--targets", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)

    labels = rng.random(args.samples) < 0.05
    scores = np.round(rng.normal(0.0, 1.0, args.samples) + 1.5 * labels, 4)
    ours_s, ours = timed(anomaly_metrics, labels, scores)
    base_s, base = timed(sklearn_anomaly, labels, scores)

    truth = rng.normal(10.0, 3.0, (args.samples, args.targets))
    pred = truth + rng.normal(0.0, 1.0, truth.shape)
    names = [f"t{j}" for j in range(args.targets)]
    reg_s, reg = timed(regression_metrics, truth, pred, names)
    reg_base_s, reg_base = timed(sklearn_regression, truth, pred)

    print(
        json.dumps(
            {
                "benchmark": "task_metrics",
                "machine": platform.machine(),
                "samples": args.samples,
                "anomaly": {
                    "vistudio_s": round(ours_s, 4),
                    "sklearn_s": round(base_s, 4),
                    "ratio_vs_sklearn": round(base_s / ours_s, 3),
                    "auroc": ours["auroc"],
                    "max_abs_diff": max(abs(ours[k] - base[k]) for k in ("auroc", "ap", "f1")),
                    "threshold": [ours["threshold"], base["threshold"]],
                },
                "regression": {
                    "targets": args.targets,
                    "vistudio_s": round(reg_s, 4),
                    "sklearn_s": round(reg_base_s, 4),
                    "ratio_vs_sklearn": round(reg_base_s / reg_s, 3),
                    "r2": reg["r2"],
                    "max_abs_diff": max(abs(reg[k] - reg_base[k]) for k in ("mae", "mse", "rmse", "r2")),
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
