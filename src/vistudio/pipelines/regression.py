"""The ``regress_onnx`` pipeline stage: the values of an image with a regressor exported by vistudio.

A stage of ``pipelines/builtin`` (which imports this module last, so that the runner finds it
with the other built-in stages); it borrows that module's helpers when it runs.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.pipelines.stage import FILE, IMAGE, LABEL, Item, StageError, StepOutput, stage


def _open_regressor(path: Path) -> Any:
    from vistudio.errors import VistudioError
    from vistudio.ml.inference.regression import OnnxRegressor
    from vistudio.pipelines.builtin import _import_onnxruntime

    _import_onnxruntime()
    try:
        return OnnxRegressor(path)
    except VistudioError as exc:  # not ONNX, no vistudio metadata, not a regressor
        raise StageError(f"regress_onnx: {exc.message}") from None


def _label(names: list[str], values: list[float]) -> str:
    """``"432.5"`` for one target, ``"width=3.2, height=7.5"`` for several (4 significant digits)."""
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return ", ".join(f"{n}={v:.4g}" for n, v in zip(names, values, strict=True))


@stage("regress_onnx", takes=(IMAGE, FILE), gives=LABEL)
def regress_onnx(item: Item, data: Any, *, model: str) -> StepOutput:
    """Predict the image's values with a regressor exported by vistudio (``vistudio export`` of a
    regression experiment; onnxruntime), in the targets' own units, with the model's own
    preprocessing (exactly what the evaluation and ``vistudio predict`` do).

    With no previous data the image is read from ``item.path``. Returns ``{"label", "values",
    "targets": {name: value}}``; metrics: each target's value (``value`` for one target,
    ``value_<name>`` for several) and, when the item carries true values (``item.meta["values"]``,
    one per target), ``abs_error``: their mean absolute error.
    """
    from vistudio.ml.preprocess import eval_array
    from vistudio.pipelines.builtin import OnnxSessionCache, _image, _to_pil, read_image

    if not isinstance(model, str | Path) or not str(model).strip():
        raise StageError(f"regress_onnx: model must be a path to an .onnx file, got {model!r}")
    reg = OnnxSessionCache.load(model, "regress_onnx", _open_regressor)
    if data is None:
        if item.path is None:
            raise StageError(f"regress_onnx: item {item.key!r} has no image data and no file path")
        data = read_image(Path(item.path))
    img = _image("regress_onnx", data)
    rgb = np.repeat(img[:, :, np.newaxis], 3, axis=2) if img.ndim == 2 else img
    batch = eval_array(_to_pil(rgb), reg.preprocess)[np.newaxis]
    try:
        out = reg.values(batch)
    except Exception as exc:  # onnxruntime's failure on this input, with its reason
        raise StageError(f"regress_onnx: {getattr(exc, 'message', exc)}") from exc
    values = [float(v) for v in out[0]]
    names = list(reg.targets)
    metrics = (
        {"value": values[0]}
        if len(values) == 1
        else {f"value_{n}": v for n, v in zip(names, values, strict=True)}
    )
    truth = item.meta.get("values")
    if (
        isinstance(truth, list)
        and len(truth) == len(values)
        and all(isinstance(t, int | float) and math.isfinite(t) for t in truth)
    ):
        metrics["abs_error"] = sum(abs(v - float(t)) for v, t in zip(values, truth, strict=True)) / len(
            values
        )
    return StepOutput(
        data={
            "label": _label(names, values),
            "values": values,
            "targets": dict(zip(names, values, strict=True)),
        },
        metrics={k: v for k, v in metrics.items() if math.isfinite(v)},
    )
