"""Run an exported vistudio anomaly model with ONNX Runtime alone (no torch import).

The graph (``ml/export/anomaly``) takes the preprocessed batch ``input`` (N×3×S×S float32, the
shared evaluation preprocessing whose parameters the metadata holds) and gives ``score`` (N×1): the
anomaly score in 0..1, the sigmoid of the model's logit. The metadata also holds the decision
``threshold`` (an image is anomalous when ``score >= threshold``) and where it comes from
(``threshold_source``: the evaluation of the same checkpoint, or the training's validation
images), the normal class and the defect types the model was trained on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.errors import InvalidInput
from vistudio.ml.inference.anomaly import OUTPUT_NAME
from vistudio.ml.inference.onnx import parse_metadata
from vistudio.ml.preprocess import eval_array, open_rgb

ANOMALY_TASK = "anomaly_detection"
# an exported anomaly model agrees with PyTorch when every score differs by at most this (float32
# arithmetic in another order differs by ~1e-7)
PARITY_TOLERANCE = 1e-4


def is_anomaly_task(task: str) -> bool:
    """Whether models of ``task`` give one anomaly score per image."""
    return task == ANOMALY_TASK


def anomaly_props(meta: dict[str, Any], *, threshold: float, source: str) -> dict[str, Any]:
    """What an exported anomaly model's metadata says beyond a classifier's (a checkpoint's
    ``meta``, the decision threshold and where it comes from)."""
    classes = list(meta["classes"])
    return {
        "output_name": OUTPUT_NAME,
        "output_kind": "anomaly_score",
        "score": "sigmoid of the model's logit, 0..1; anomalous when score >= threshold",
        "threshold": repr(float(threshold)),
        "threshold_source": source,
        "normal_class": classes[0],
        "defect_types": classes[1:],
    }


def score_parity(
    reference: npt.NDArray[np.float32], exported: npt.NDArray[np.float32], threshold: float
) -> dict[str, Any]:
    """How far an exported model's scores are from PyTorch's on the same batch, and whether the
    decisions at ``threshold`` agree; ``passed`` when every score is within ``PARITY_TOLERANCE``."""
    if reference.shape != exported.shape:
        raise InvalidInput(
            f"exported outputs {exported.shape} differ in shape from PyTorch's {reference.shape}"
        )
    if reference.shape[0] == 0:
        return {"images": 0, "max_abs_diff": None, "decision_agreement": None, "passed": True}
    diff = float(np.max(np.abs(reference.astype(np.float64) - exported.astype(np.float64))))
    agree = (reference >= threshold) == (exported >= threshold)
    return {
        "images": int(reference.shape[0]),
        "max_abs_diff": diff,
        "decision_agreement": float(agree.mean()),
        "tolerance": PARITY_TOLERANCE,
        "passed": bool(diff <= PARITY_TOLERANCE),
    }


class OnnxAnomalyScorer:
    """An exported vistudio anomaly model in an ONNX Runtime session (CPU unless told otherwise)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        from vistudio.ml.inference.onnx import open_model

        self.path, self.session, self.props = open_model(path, providers)
        self.classes, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.task = self.props.get("task", "classification")
        if not is_anomaly_task(self.task):
            raise InvalidInput(f"{self.path.name} is a {self.task[:60]} model, not an anomaly model")
        try:
            self.threshold = float(json.loads(self.props["threshold"]))
        except (KeyError, ValueError, TypeError):
            raise InvalidInput(f"{self.path.name}: the anomaly metadata lacks a threshold") from None
        self.threshold_source = self.props.get("threshold_source", "")
        self.input_name = self.session.get_inputs()[0].name
        self.model = self.props.get("model", "")

    def scores(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """N×C×H×W float32 → N anomaly scores in 0..1."""
        try:
            out = np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)
        except Exception as exc:  # onnxruntime's own error types
            raise InvalidInput(f"{self.path.name}: running the model failed: {exc}") from None
        if out.ndim != 2 or out.shape[1] != 1:
            raise InvalidInput(f"{self.path.name}: outputs of shape {out.shape} are not one score per image")
        return out[:, 0]

    def predict_files(
        self, paths: list[Path], *, batch_size: int = 32, threshold: float | None = None
    ) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        """``{"path", "score", "anomalous"}`` of readable images (at the file's threshold unless
        given another), and ``{"path", "reason"}`` for the others (in order)."""
        limit = self.threshold if threshold is None else float(threshold)
        predictions: list[dict[str, Any]] = []
        errors: list[dict[str, str]] = []
        size = max(self.preprocess["input_size"])
        pending: list[tuple[str, npt.NDArray[np.float32]]] = []

        def flush() -> None:
            if not pending:
                return
            out = self.scores(np.stack([a for _, a in pending]))
            for row, (name, _) in enumerate(pending):
                score = float(out[row])
                predictions.append({"path": name, "score": score, "anomalous": score >= limit})
            pending.clear()

        for path in paths:
            try:
                arr = eval_array(open_rgb(path, draft_size=size), self.preprocess)
            except FileNotFoundError:
                errors.append({"path": str(path), "reason": "file not found"})
                continue
            except Exception as exc:  # Pillow raises many kinds for bad files (bombs are not OSError)
                errors.append({"path": str(path), "reason": f"not a readable image: {exc}"[:300]})
                continue
            pending.append((str(path), arr))
            if len(pending) >= batch_size:
                flush()
        flush()
        return predictions, errors
