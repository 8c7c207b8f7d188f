"""The ``segment_onnx`` pipeline stage: label every pixel with an exported semantic segmentation model.

It lives beside ``builtin`` (which imports it, so that it registers with the other built-in
stages) and borrows that module's helpers — the ONNX session cache, the image checks — when it
runs; importing ``builtin`` here at import time would make the two modules import each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from vistudio.pipelines.stage import FILE, IMAGE, LABEL, Item, StageError, StepOutput, stage


def _open_segmenter(path: Path) -> Any:
    from vistudio.errors import VistudioError
    from vistudio.ml.inference.onnx_segmentation import OnnxSegmenter
    from vistudio.pipelines.builtin import _import_onnxruntime

    _import_onnxruntime()
    try:
        return OnnxSegmenter(path)
    except VistudioError as exc:  # not ONNX, no vistudio metadata, another task's model, wrong shapes
        raise StageError(f"segment_onnx: {exc.message}") from None


@stage("segment_onnx", takes=(IMAGE, FILE), gives=LABEL)
def segment_onnx(item: Item, data: Any, *, model: str) -> StepOutput:
    """Label every pixel with a semantic segmentation model exported by vistudio (``vistudio
    export``; onnxruntime).

    With no previous data the image is read from ``item.path`` exactly as ``vistudio predict`` and
    the evaluation read it, and its label map has the image's own (upright) size: the same map
    ``vistudio predict`` writes. After an image stage it runs on that image, at that image's size.
    Returns ``{"label": "rectangle 21%, ellipse 9%", "width", "height", "class_shares": {class:
    share of the pixels}, "classes_present": [...]}``; saves the label map as a palette PNG
    (pixel = class index, the classes' colours: the file ``vistudio predict`` writes) both as an artifact (``label_map``, stored by
    content: equal maps are kept once) and as a readable file, the image with the map's colours
    over it (``overlay``), and the summary (``segmentation`` JSON). Metrics: ``foreground_share``
    (the share of pixels that are not background) and ``classes_present`` (how many classes,
    background included).
    """
    from vistudio.ml.inference.onnx_segmentation import (
        class_shares,
        draw_label_map,
        label_map_image,
        segmentation_input,
        shares_summary,
    )
    from vistudio.pipelines.builtin import _PIL_ERRORS, OnnxSessionCache, _image, _to_array, _to_pil

    if not isinstance(model, str | Path) or not str(model).strip():
        raise StageError(f"segment_onnx: model must be a path to an .onnx file, got {model!r}")
    seg = OnnxSessionCache.load(model, "segment_onnx", _open_segmenter)
    if data is None:
        if item.path is None:
            raise StageError(f"segment_onnx: item {item.key!r} has no image data and no file path")
        from vistudio.ml.preprocess import open_rgb

        try:
            arr, size = segmentation_input(item.path, seg.preprocess)
            picture = open_rgb(item.path)
        except FileNotFoundError:
            raise StageError(f"segment_onnx: file not found: {item.path}") from None
        except _PIL_ERRORS as exc:
            raise StageError(f"segment_onnx: cannot read {Path(item.path).name} as an image: {exc}") from exc
    else:
        img = _image("segment_onnx", data)
        rgb = np.repeat(img[:, :, np.newaxis], 3, axis=2) if img.ndim == 2 else img
        picture = _to_pil(rgb)
        arr, size = segmentation_input(picture, seg.preprocess)
    try:
        (label_map,) = seg.segment(arr[np.newaxis], [size])
    except Exception as exc:  # onnxruntime's failure on this input, reported with its reason
        raise StageError(f"segment_onnx: {getattr(exc, 'message', exc)}") from exc
    classes = list(seg.classes)
    shares = class_shares(label_map, classes)
    result: dict[str, Any] = {
        "label": shares_summary(shares, classes[0]),
        "width": int(size[0]),
        "height": int(size[1]),
        "class_shares": shares,
        "classes_present": [n for n, s in shares.items() if s > 0],
    }
    palette = label_map_image(label_map, seg.colours)
    overlay = _to_array(draw_label_map(picture, label_map, seg.colours))
    return StepOutput(
        data=result,
        artifacts={"label_map": palette},
        outputs=[
            (palette, "label_map", "png"),
            (overlay, "overlay", "png"),
            (result, "segmentation", "json"),
        ],
        metrics={
            "foreground_share": 1.0 - shares[classes[0]],
            "classes_present": float(len(result["classes_present"])),
        },
    )
