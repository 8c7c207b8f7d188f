"""Regression outside torch: value targets, their statistics, the metrics, and exported regressors.

A regression image carries a ``value`` annotation ``{"values": [v1, …, vT]}``: one number per
target (CSV import, ``ingest/readers/csv``). vistudio does not keep the targets' column names, so
a model's targets are named ``target`` (one) or ``target_1 … target_T`` (several), the names the
CSV export writes (``ingest/writers/csv``); they are what an experiment freezes as its
``classes``.

Metrics are in the targets' own units (the model undoes its z-score itself, see
``ml/tasks/regression``), per target and averaged over the targets with equal weights, with
scikit-learn's definitions (``multioutput="uniform_average"``):

- ``mae`` = mean |ŷ − y|; ``mse`` = mean (ŷ − y)²; ``rmse`` = √mse per target (the average of
  the per-target RMSEs, as scikit-learn's ``root_mean_squared_error``);
- ``r2`` = 1 − Σ(ŷ − y)² / Σ(y − ȳ)². A model that always predicts the mean of the true values
  scores 0, a perfect one 1, a worse-than-the-mean one below 0. R² is undefined for a target
  whose true values are all equal (scikit-learn's ``force_finite=False`` gives NaN or −∞ there):
  it is ``None``, and the averaged R² is the mean over the targets where it is defined (``None``
  when it is defined for none).

Everything is computed in float64; a value that does not fit (an MSE of numbers near 1e200)
is ``None`` rather than ``inf``, so that every result is plain JSON.

An exported regressor (``vistudio export`` of a regression experiment) is an ONNX file whose
output ``values`` (N×T) is already in the targets' units; its metadata also records the targets'
names and the training subset's mean and standard deviation (``target_mean``, ``target_std``).
:class:`OnnxRegressor` runs one with ONNX Runtime alone and the exact evaluation preprocessing.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from vistudio.errors import InvalidInput
from vistudio.ml.inference.onnx import parse_metadata, task_spec
from vistudio.ml.preprocess import eval_array, open_rgb

VALUE_KIND = "value"  # the annotation kind of a regression target
OUTPUT_NAME = "values"  # the output of an exported regressor
HISTOGRAM_BINS = 20
# an exported regressor agrees with PyTorch when every value differs by at most this share of its
# target's standard deviation (float32 arithmetic in another order differs by ~1e-6 of it)
PARITY_TOLERANCE = 1e-3

FloatArray = npt.NDArray[np.float64]


def is_regression_task(task: str) -> bool:
    """Whether models of ``task`` predict values (its annotations are ``value`` annotations)."""
    spec = task_spec(task)
    return spec is not None and VALUE_KIND in spec.annotation_kinds


def target_names(count: int) -> list[str]:
    """The names of ``count`` targets: ``["target"]`` for one, ``["target_1", …]`` for several."""
    if count < 1:
        raise ValueError("a regression model has at least one target")
    return ["target"] if count == 1 else [f"target_{i}" for i in range(1, count + 1)]


def value_vector(geometry: Any) -> list[float] | None:
    """The numbers of a ``value`` annotation's geometry (``{"values": [...]}``), or None when it
    holds none, or anything that is not a finite number (NaN, infinity, text, a boolean)."""
    values = geometry.get("values") if isinstance(geometry, dict) else None
    if not isinstance(values, list) or not values:
        return None
    if not all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def _finite(value: float) -> float | None:
    return float(value) if math.isfinite(value) else None


def _matrix(values: npt.ArrayLike, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, np.newaxis]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be N×T, got shape {arr.shape}")
    return arr


def normalisation(values: npt.ArrayLike) -> tuple[list[float], list[float]]:
    """The z-score of N×T training targets: ``(mean, std)`` per target, population std.

    A target whose training values are all equal (std 0, or too small to divide by) gets std 1:
    the model then learns the offset from the mean in the target's own units, and nothing is
    ever divided by zero."""
    arr = _matrix(values, "values")
    if arr.shape[0] == 0:
        raise ValueError("no training values to normalise")
    with np.errstate(over="ignore", invalid="ignore"):
        mean = arr.mean(axis=0)
        std = arr.std(axis=0)
    stds = []
    for m, s in zip(mean, std, strict=True):
        usable = math.isfinite(s) and s > 1e-12 * max(1.0, abs(m)) and s > 0
        stds.append(float(s) if usable else 1.0)
    return [float(m) if math.isfinite(m) else 0.0 for m in mean], stds


def regression_metrics(y_true: npt.ArrayLike, y_pred: npt.ArrayLike, names: Sequence[str]) -> dict[str, Any]:
    """MAE, MSE, RMSE and R² of N×T predictions, averaged over the targets and per target
    (``per_target``: name → the same four); see the module's docstring."""
    t = _matrix(y_true, "y_true")
    p = _matrix(y_pred, "y_pred")
    if t.shape != p.shape or t.shape[1] != len(names):
        raise ValueError(f"y_true {t.shape} and y_pred {p.shape} must both be N×{len(names)}")
    n = t.shape[0]
    per: dict[str, dict[str, float | None]] = {}
    if n == 0:
        empty: dict[str, Any] = {"mae": None, "mse": None, "rmse": None, "r2": None}
        return {"samples": 0, **empty, "per_target": {name: dict(empty) for name in names}}
    with np.errstate(over="ignore", invalid="ignore"):
        err = p - t
        mae = np.mean(np.abs(err), axis=0)
        mse = np.mean(err * err, axis=0)
        rmse = np.sqrt(mse)
        sse = np.sum(err * err, axis=0)
        sst = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    for i, name in enumerate(names):
        r2 = 1.0 - float(sse[i]) / float(sst[i]) if sst[i] > 0 and math.isfinite(sst[i]) else None
        per[name] = {
            "mae": _finite(float(mae[i])),
            "mse": _finite(float(mse[i])),
            "rmse": _finite(float(rmse[i])),
            "r2": None if r2 is None else _finite(r2),
        }

    def average(key: str, *, defined_only: bool = False) -> float | None:
        values = [v[key] for v in per.values()]
        kept = [v for v in values if v is not None]
        if not kept or (not defined_only and len(kept) != len(values)):
            return None
        return _finite(float(np.mean(kept)))

    return {
        "samples": n,
        "mae": average("mae"),
        "mse": average("mse"),
        "rmse": average("rmse"),
        "r2": average("r2", defined_only=True),
        "per_target": per,
    }


def histogram(values: npt.ArrayLike, bins: int = HISTOGRAM_BINS) -> dict[str, list[Any]]:
    """``{"edges": bins + 1 floats, "counts": bins ints}`` of the finite ``values`` over their
    range (the last bin closed); one bin around the value when they are all equal, none when
    there is no value. Edges are interpolated between the extremes, so ranges too wide for a
    float's difference (±1e308) still work."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"edges": [], "counts": []}
    lo, hi = float(arr.min()), float(arr.max())
    if lo == hi:
        pad = max(0.5, abs(lo) * 1e-6)
        return {"edges": [lo - pad, hi + pad], "counts": [int(arr.size)]}
    steps = np.linspace(0.0, 1.0, bins + 1)
    edges = lo * (1.0 - steps) + hi * steps
    edges[0], edges[-1] = lo, hi
    index = np.clip(np.searchsorted(edges, arr, side="right") - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def describe(values: npt.ArrayLike, bins: int = HISTOGRAM_BINS) -> dict[str, Any]:
    """``count``, ``min``, ``max``, ``mean``, ``std`` (population) and ``histogram`` of one
    target's values (NaN and infinities are not values and are left out)."""
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = arr[np.isfinite(arr)]
    if arr.size == 0:
        return {"count": 0, "min": None, "max": None, "mean": None, "std": None, "histogram": histogram(arr)}
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(arr.mean()), float(arr.std())
    return {
        "count": int(arr.size),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "mean": _finite(mean),
        "std": _finite(std),
        "histogram": histogram(arr, bins),
    }


def regression_props(meta: dict[str, Any]) -> dict[str, Any]:
    """What an exported regressor's metadata says beyond a classifier's: its output, its
    targets and the z-score its graph undoes (a checkpoint's ``meta``)."""
    return {
        "output_name": OUTPUT_NAME,
        "output_kind": "values",
        "target_names": list(meta["classes"]),
        "num_outputs": str(len(meta["classes"])),
        "target_mean": [float(v) for v in meta["target_mean"]],
        "target_std": [float(v) for v in meta["target_std"]],
        "target_normalisation": "inside the graph: values = output × target_std + target_mean",
        "target_loss": str((meta.get("config") or {}).get("loss", "mse")),
    }


def value_parity(
    reference: npt.NDArray[np.float32], exported: npt.NDArray[np.float32], std: Sequence[float]
) -> dict[str, Any]:
    """How far an exported regressor's values are from PyTorch's on the same batch: the largest
    absolute difference (targets' units) and the largest relative to each target's training
    standard deviation, which must stay within :data:`PARITY_TOLERANCE` (``passed``)."""
    if reference.shape != exported.shape:
        raise InvalidInput(
            f"exported outputs {exported.shape} differ in shape from PyTorch's {reference.shape}"
        )
    if reference.shape[0] == 0:
        return {"images": 0, "max_abs_diff": None, "max_std_diff": None, "passed": True}
    diff = np.abs(reference.astype(np.float64) - exported.astype(np.float64))
    scaled = diff / np.asarray(std, dtype=np.float64)[np.newaxis, :]
    worst = float(scaled.max())
    return {
        "images": int(reference.shape[0]),
        "max_abs_diff": float(diff.max()),
        "max_std_diff": worst,
        "tolerance": PARITY_TOLERANCE,
        "passed": bool(worst <= PARITY_TOLERANCE),
    }


def _json_list(props: dict[str, str], key: str, source: str) -> list[float]:
    try:
        values = json.loads(props[key])
    except (KeyError, ValueError):
        raise InvalidInput(f"{source}: the regression metadata lacks {key!r}") from None
    if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
        raise InvalidInput(f"{source}: damaged regression metadata ({key})")
    return [float(v) for v in values]


@dataclass
class ValuePrediction:
    path: str
    values: list[float]

    def to_dict(self, names: Sequence[str]) -> dict[str, Any]:
        return {
            "path": self.path,
            "values": self.values,
            "targets": dict(zip(names, self.values, strict=True)),
        }


class OnnxRegressor:
    """An exported vistudio regressor in an ONNX Runtime session (CPU unless told otherwise)."""

    def __init__(self, path: str | Path, *, providers: list[str] | None = None) -> None:
        from vistudio.ml.inference.onnx import open_model

        self.path, self.session, self.props = open_model(path, providers)
        self.targets, self.preprocess = parse_metadata(self.props, source=self.path.name)
        self.task = self.props.get("task", "classification")
        if not is_regression_task(self.task):
            raise InvalidInput(f"{self.path.name} is a {self.task[:60]} model, not a regressor")
        self.target_mean = _json_list(self.props, "target_mean", self.path.name)
        self.target_std = _json_list(self.props, "target_std", self.path.name)
        self.input_name = self.session.get_inputs()[0].name
        self.model = self.props.get("model", "")

    def values(self, batch: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """N×C×H×W float32 → N×T values in the targets' units."""
        try:
            out = np.asarray(self.session.run(None, {self.input_name: batch})[0], dtype=np.float32)
        except Exception as exc:  # onnxruntime's own error types
            raise InvalidInput(f"{self.path.name}: running the model failed: {exc}") from None
        if out.ndim != 2 or out.shape[1] != len(self.targets):
            raise InvalidInput(
                f"{self.path.name}: outputs of shape {out.shape} do not match {len(self.targets)} targets"
            )
        return out

    def predict_files(
        self, paths: list[Path], *, batch_size: int = 32
    ) -> tuple[list[ValuePrediction], list[dict[str, str]]]:
        """Values of readable images, and ``{"path", "reason"}`` for the others (in order)."""
        predictions: list[ValuePrediction] = []
        errors: list[dict[str, str]] = []
        size = max(self.preprocess["input_size"])
        pending: list[tuple[str, npt.NDArray[np.float32]]] = []

        def flush() -> None:
            if not pending:
                return
            out = self.values(np.stack([a for _, a in pending]))
            for row, (name, _) in enumerate(pending):
                predictions.append(ValuePrediction(name, [float(v) for v in out[row]]))
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
