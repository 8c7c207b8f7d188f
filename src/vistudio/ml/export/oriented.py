"""Export an oriented (rotated-box) detector to ONNX, and check it against PyTorch.

Rotated NMS is not an ONNX operator, so the file holds the network up to its decoded candidates
(:meth:`~vistudio.ml.oriented_detectors.OrientedDetector.candidates`, the same interface for both
families, FCOS-style locations and RetinaNet-style anchors): input ``images`` ``(B, 3, S, S)`` (the
prepared batch, ``B`` dynamic, ``S`` the experiment's image size), outputs ``boxes`` ``(B, L, 5)``,
``scores`` ``(B, L, K)`` and ``levels`` ``(L,)`` — the locations (or anchors) of a fixed ``S`` are
constants of the graph. The preparation of the batch and the selection of the detections
(thresholds, top-N, rotated NMS, rescaling) run in NumPy, by the functions of
:mod:`vistudio.ml.inference.onnx_oriented` that the PyTorch model itself runs, so that the only
difference between eager PyTorch and the file is the network's float arithmetic.

:func:`oriented_parity` compares PyTorch's detections of images with the file's, image by image,
as :func:`vistudio.ml.export.detection.detection_parity` compares boxes: every detection of one
side must be matched by one of the other of the same class at **rotated** IoU ≥ ``BOX_IOU`` with
``|Δscore| <`` ``SCORE_TOL``, and vice versa — except a detection scoring within ``SCORE_TOL`` of a
cut (the score threshold, or the best score a count limit dropped on either side: the per-level
top 1,000, the 300 candidates of the image, ``detections_per_image``), where two nearly tied
candidates may fall either way and change what the rotated NMS keeps below them
(``borderline``).
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from vistudio.ml.export.detection import BOX_IOU, SCORE_TOL
from vistudio.ml.export.models import check_opset
from vistudio.ml.inference.onnx_oriented import (
    INPUT_NAME,
    NMS_CANDIDATES,
    OUTPUT_NAMES,
    PRE_NMS_TOP_N,
    OrientedDetections,
)
from vistudio.ml.inference.rotated import rotated_iou_matrix
from vistudio.storage.atomic import atomic_write_bytes

if TYPE_CHECKING:
    from vistudio.ml.oriented_detectors import OrientedDetector

BOX_FORMAT = "cx,cy,w,h,theta"  # θ in radians, the convention of ml/inference/rotated


class _Candidates(nn.Module):
    """``(B, 3, S, S)`` → ``(boxes, scores, levels)`` (the ONNX graph's outputs)."""

    def __init__(self, detector: OrientedDetector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        boxes, scores, levels = self.detector.candidates(images)
        return boxes, scores, levels


def export_oriented_onnx(
    model: OrientedDetector, dest: Path, *, image_size: int, props: dict[str, str], opset: int
) -> Path:
    """The oriented detector's candidates as ONNX (see the module's docstring), ``props`` embedded."""
    import onnx

    check_opset(opset)
    model = model.cpu().eval()
    generator = torch.Generator().manual_seed(0)
    example = torch.randn(2, 3, image_size, image_size, generator=generator)
    with (
        tempfile.TemporaryDirectory(prefix="vistudio-onnx-") as tmp,
        warnings.catch_warnings(),
        torch.no_grad(),
    ):
        warnings.simplefilter("ignore")  # the tracer's warnings about the constant locations
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            _Candidates(model).eval(),
            (example,),
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes={INPUT_NAME: {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
            do_constant_folding=True,
        )
        proto = onnx.load(str(raw))
    del proto.metadata_props[:]
    for key, value in sorted(props.items()):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "vistudio"
    onnx.checker.check_model(proto)
    atomic_write_bytes(dest, proto.SerializeToString())
    return dest


def oriented_props(
    meta: dict[str, Any], *, score_threshold: float, source: str, selection_threshold: float
) -> dict[str, Any]:
    """What an oriented detector's file says about its input, outputs and post-processing."""
    config = meta.get("config") or {}
    return {
        "input_name": INPUT_NAME,
        "input_layout": "NCHW",  # the prepared batch: see ml/inference/onnx_oriented
        "output_name": ",".join(OUTPUT_NAMES),
        "output_names": list(OUTPUT_NAMES),
        "batch": "dynamic",
        "box_format": BOX_FORMAT,
        "postprocess": "vistudio.ml.inference.onnx_oriented.select_detections",
        # what predict keeps by default; the export was checked selecting at selection_score_threshold
        "score_threshold": str(float(score_threshold)),
        "score_threshold_source": source,
        "selection_score_threshold": str(float(selection_threshold)),
        "nms_iou": str(float(config.get("nms_iou", 0.3))),
        "detections_per_image": str(int(config.get("detections_per_image", 100))),
        "pre_nms_top_n": str(PRE_NMS_TOP_N),
        "nms_candidates": str(NMS_CANDIDATES),
    }


# --- parity ----------------------------------------------------------------------------------------


def pytorch_detections(model: OrientedDetector, image: np.ndarray) -> OrientedDetections:
    """Eager PyTorch's detections of one ``3×H×W`` image in 0..1 (CPU) in its pixels, with the
    selection's cut: the steps of the model's forward (``_batch``, ``candidates``, ``select``)."""
    model = model.cpu().eval()
    with torch.inference_mode():
        x, scales = model._batch([torch.from_numpy(np.ascontiguousarray(image))])
        (sel,) = model.select(*model.candidates(x), scales)
    size = (int(image.shape[2]), int(image.shape[1]))
    return OrientedDetections.from_selection(sel, input_size=size)


def _match(one: OrientedDetections, other: OrientedDetections, iou: np.ndarray) -> list[int]:
    """For each detection of ``one``, the index of its partner in ``other`` (same class, rotated
    IoU ≥ ``BOX_IOU``, the closest score, then the highest IoU; each used once), or -1; ``iou``
    is ``(len(one), len(other))``."""
    used = np.zeros(len(other), bool)
    out = [-1] * len(one)
    for i in np.argsort(-one.scores, kind="stable"):
        ok = (other.labels == one.labels[i]) & ~used & (iou[i] >= BOX_IOU)
        if not ok.any():
            continue
        candidates = np.flatnonzero(ok)
        gap = np.abs(other.scores[candidates].astype(np.float64) - float(one.scores[i]))
        best = int(candidates[np.lexsort((-iou[i, candidates], gap))[0]])
        used[best] = True
        out[int(i)] = best
    return out


def oriented_parity(
    pairs: list[tuple[OrientedDetections, OrientedDetections]], *, score_threshold: float = 0.0
) -> dict[str, Any]:
    """Compare PyTorch's detections with the exported model's, image by image (``(reference,
    exported)`` pairs, each side with its ``cut``); the keys of ``detection_parity``'s answer
    (``min_box_iou`` is the rotated IoU), ``passed`` when there is no fault (module docstring)."""
    boxes_ref = boxes_exp = matched = borderline = 0
    faults: list[dict[str, Any]] = []
    min_iou, max_diff = 1.0, 0.0
    for index, (ref, exp) in enumerate(pairs):
        boxes_ref += len(ref)
        boxes_exp += len(exp)
        iou = rotated_iou_matrix(ref.corners, exp.corners)
        forward = _match(ref, exp, iou)
        backward = _match(exp, ref, iou.T)
        cut = max(score_threshold, ref.cut, exp.cut) + SCORE_TOL
        for i, j in enumerate(forward):
            if j < 0:
                continue
            diff = abs(float(ref.scores[i]) - float(exp.scores[j]))
            matched += 1
            min_iou = min(min_iou, float(iou[i, j]))
            max_diff = max(max_diff, diff)
            if diff >= SCORE_TOL:
                faults.append({"image": index, "side": "both", "score": float(ref.scores[i]), "why": "score"})
        for side, dets, partners in (("pytorch", ref, forward), ("exported", exp, backward)):
            for i, j in enumerate(partners):
                if j >= 0:
                    continue
                if float(dets.scores[i]) < cut:
                    borderline += 1
                else:
                    faults.append(
                        {"image": index, "side": side, "score": float(dets.scores[i]), "why": "box"}
                    )
    return {
        "images": len(pairs),
        "boxes_pytorch": boxes_ref,
        "boxes_exported": boxes_exp,
        "matched": matched,
        "borderline": borderline,
        "faults": len(faults),
        "fault_examples": faults[:10],
        "min_box_iou": min_iou if matched else None,
        "max_abs_score_diff": max_diff if matched else None,
        "masks_compared": 0,
        "min_mask_iou": None,
        "iou": "rotated",
        "tolerances": {"box_iou": BOX_IOU, "score": SCORE_TOL},
        "passed": not faults,
    }
