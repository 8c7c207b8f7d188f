"""vistudio checkpoints: a model's weights plus everything needed to use it again.

A checkpoint is a plain ``torch.save`` of ``{"format", "state_dict", "meta"}`` where ``meta`` holds
only JSON-like values (model name, task, class names, preprocessing, config, epoch, step, metrics),
so it loads with ``torch.load(weights_only=True)`` — no pickled code ever runs. A ``last``
checkpoint written by training also holds ``training_state`` (optimiser, schedule, loop counters,
RNG states: tensors and plain values too), which a resumed training continues from.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vistudio.errors import InvalidInput
from vistudio.ml.models import build_model
from vistudio.ml.tasks import get_task

FORMAT = "vistudio-checkpoint/1"


def save_checkpoint(
    path: str | Path, model: nn.Module, meta: dict[str, Any], *, extra: dict[str, Any] | None = None
) -> Path:
    """Write atomically (temp file in the same folder → fsync → rename). ``meta`` needs
    ``model`` (catalog name), ``classes`` and ``preprocess``. ``extra``: more top-level keys of
    tensors and plain values (a ``last`` checkpoint's training state, see ``ml/training/resume``)."""
    for key in ("model", "classes", "preprocess"):
        if key not in meta:
            raise ValueError(f"checkpoint meta needs {key!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save({**(extra or {}), "format": FORMAT, "state_dict": state, "meta": meta}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, loaded safely; a foreign or damaged file is a clear 422."""
    try:
        obj = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidInput(f"not a loadable checkpoint: {Path(path).name}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != FORMAT:
        raise InvalidInput(f"not a vistudio checkpoint: {Path(path).name}")
    return obj


def rebuild_model(meta: dict[str, Any]) -> nn.Module:
    """The untrained network a checkpoint's ``meta`` describes (classifier, detector or segmenter),
    from the catalog, never downloading anything: the checkpoint's weights go over it."""
    task = meta.get("task", "classification")
    try:
        spec = get_task(task)
    except (KeyError, TypeError):  # a name this version does not know
        raise InvalidInput(f"the checkpoint's task {str(task)[:60]!r} is not known to this version") from None
    if spec.dense:  # a segmenter (semantic segmentation): the segmenter catalog
        from vistudio.ml.segmenters import build_segmenter

        segmenter, _ = build_segmenter(meta["model"], len(meta["classes"]), pretrained="none")
        return segmenter
    if meta.get("oriented"):  # an oriented detector (ml/oriented_detectors): rotated boxes
        from vistudio.ml.oriented_detectors import rebuild_oriented

        return rebuild_oriented(meta)
    if spec.has_objects:
        from vistudio.ml.detectors import build_detector

        config = meta.get("config") or {}
        model, _ = build_detector(
            meta["model"],
            len(meta["classes"]),
            image_size=int(config.get("image_size") or meta["preprocess"]["input_size"][0]),
            pretrained="none",
            score_threshold=float(config.get("score_threshold", 0.05)),
            nms_iou=float(config.get("nms_iou", 0.5)),
            detections_per_image=int(config.get("detections_per_image", 100)),
            task=task,
        )
        return model
    if "target_mean" in meta:  # a regressor (ml/tasks/regression): values and their z-score
        from vistudio.ml.tasks.regression import rebuild_regressor

        return rebuild_regressor(meta)
    if "anomaly" in meta:  # an anomaly scorer (ml/tasks/anomaly_detection): one logit
        from vistudio.ml.tasks.anomaly_detection import rebuild_scorer

        return rebuild_scorer(meta)
    model, _ = build_model(meta["model"], len(meta["classes"]), pretrained=False)
    return model


def load_checkpoint(
    path: str | Path, *, device: str | torch.device = "cpu"
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from the catalog, load the weights, return ``(model in eval mode, meta)``."""
    obj = read_checkpoint(path)
    meta = obj["meta"]
    model = rebuild_model(meta)
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as exc:
        raise InvalidInput(f"checkpoint weights do not fit model {meta['model']}: {exc}") from exc
    return model.to(device).eval(), meta
