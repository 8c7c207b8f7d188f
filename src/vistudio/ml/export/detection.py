"""Export a torchvision detector (boxes, or boxes and masks) to ONNX, and check it against PyTorch.

The file holds the **whole** detector, its post-processing included (torchvision's transform —
resize to the experiment's image size and normalisation —, box decoding, NMS, and for Mask R-CNN
the masks pasted into the image): input ``image``, one RGB image ``[3, H, W]`` float32 in 0..1 of
any size (H and W are dynamic axes); outputs ``boxes`` ``[N, 4]`` (x1, y1, x2, y2 in the input's
pixels), ``labels`` ``[N]`` int64 (1-based model labels, 0 is the background), ``scores`` ``[N]``
and, for instance segmentation, ``masks`` ``[N, 1, H, W]`` probabilities. **One image per call**:
torchvision's detectors export with a batch of one (images of different sizes cannot share a
tensor); run the file once per image.

torchvision's traced resize computes the resized size in float32 (``floor(side × scale)``) while
eager PyTorch computes it in float64, so for some image sizes the exported model resized to a
side one pixel off PyTorch's and its boxes drifted. The export traces the resize in float64, as eager
PyTorch computes it, so that both resize every image to the same size.

:func:`detection_parity` compares two sets of :class:`~vistudio.ml.inference.detections.Detections`
image by image: every box of one side must be matched by a box of the other of the same class at
IoU ≥ ``BOX_IOU`` with ``|Δscore| <`` ``SCORE_TOL`` (masks at IoU ≥ ``MASK_IOU``), and vice versa.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from vistudio.ml.export.models import check_opset
from vistudio.ml.inference.detection_matching import box_iou as _box_iou
from vistudio.ml.inference.detection_matching import mask_iou
from vistudio.ml.inference.detections import Detections
from vistudio.storage.atomic import atomic_write_bytes

INPUT_NAME = "image"
BOX_OUTPUTS = ("boxes", "labels", "scores")
MASK_OUTPUT = "masks"
MIN_DETECTOR_OPSET = 11  # torchvision's detectors need opset ≥ 11 (RoiAlign, NonMaxSuppression)

BOX_IOU = 0.99
SCORE_TOL = 1e-3
MASK_IOU = 0.99


def output_names(masks: bool) -> list[str]:
    return [*BOX_OUTPUTS, MASK_OUTPUT] if masks else list(BOX_OUTPUTS)


def has_masks(model: nn.Module) -> bool:
    heads = getattr(model, "roi_heads", None)
    return heads is not None and getattr(heads, "mask_predictor", None) is not None


def set_score_threshold(model: nn.Module, threshold: float) -> None:
    """Set the score threshold of a torchvision detector's post-processing (R-CNNs keep it on
    their ROI heads; FCOS, RetinaNet and SSD on the model)."""
    heads: Any = getattr(model, "roi_heads", None)
    target: Any = heads if heads is not None and hasattr(heads, "score_thresh") else model
    if hasattr(target, "score_thresh"):
        target.score_thresh = float(threshold)
    else:
        raise ValueError(f"{type(model).__name__} has no score threshold to set")


# --- the export ------------------------------------------------------------------------------------


def _resize_like_eager(original: Any) -> Any:
    """torchvision's ``_resize_image_and_masks`` with the resized size computed in float64 while
    tracing (as eager PyTorch computes it), for inference; anything else goes to ``original``."""
    import torch.nn.functional as F

    def resize(
        image: torch.Tensor,
        self_min_size: int,
        self_max_size: int,
        target: dict[str, torch.Tensor] | None = None,
        fixed_size: tuple[int, int] | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        if target is not None or fixed_size is not None or not torch.jit.is_tracing():
            return original(image, self_min_size, self_max_size, target, fixed_size)
        shape = torch._shape_as_tensor(image)[-2:].to(torch.float64)
        # a true division of 1-D float64 tensors: ``float / tensor`` would trace as a reciprocal
        # times the float, and 0-dim operands are exported as float32
        sides = torch.cat([shape.amin(0, keepdim=True), shape.amax(0, keepdim=True)])
        wanted = torch.tensor([float(self_min_size), float(self_max_size)], dtype=torch.float64)
        scale = torch.div(wanted, sides).amin(0, keepdim=True)
        out = torch.floor(shape * scale).to(torch.int64)
        size = [out[0], out[1]]
        resized = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)  # type: ignore[arg-type]
        return resized[0], None

    return resize


_PATCH_LOCK = threading.Lock()


@contextlib.contextmanager
def _eager_resize() -> Iterator[None]:
    """torchvision's resize replaced by :func:`_resize_like_eager` while tracing (one export at a
    time in a process: the replacement is module-wide; eager calls meanwhile go to the original)."""
    from torchvision.models.detection import transform

    with _PATCH_LOCK:
        current = transform._resize_image_and_masks
        original = getattr(current, "__wrapped__", current)
        patched = _resize_like_eager(original)
        patched.__wrapped__ = original
        transform._resize_image_and_masks = patched
        try:
            yield
        finally:
            transform._resize_image_and_masks = original


class _SingleImage(nn.Module):
    """``[3, H, W]`` → the detector's outputs as a tuple (the ONNX graph's outputs)."""

    def __init__(self, detector: nn.Module, masks: bool) -> None:
        super().__init__()
        self.detector = detector
        self.masks = masks

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.detector([image])[0]
        return tuple(out[k] for k in output_names(self.masks))


def export_detector_onnx(
    model: nn.Module, dest: Path, *, image_size: int, props: dict[str, str], opset: int
) -> Path:
    """The whole detector as ONNX (see the module's docstring), ``props`` embedded."""
    import onnx

    from vistudio.errors import BadRequest

    check_opset(opset)
    if opset < MIN_DETECTOR_OPSET:  # pragma: no cover - MIN_OPSET is above it today
        raise BadRequest(f"detectors need opset {MIN_DETECTOR_OPSET} or later")
    model = model.cpu().eval()
    masks = has_masks(model)
    names = output_names(masks)
    dynamic: dict[str, dict[int, str]] = {INPUT_NAME: {1: "height", 2: "width"}}
    for name in names:
        dynamic[name] = {0: "detections"}
    if masks:
        dynamic[MASK_OUTPUT] |= {2: "height", 3: "width"}
    generator = torch.Generator().manual_seed(0)
    example = torch.rand(3, image_size, image_size, generator=generator)
    with (
        tempfile.TemporaryDirectory(prefix="vistudio-onnx-") as tmp,
        warnings.catch_warnings(),
        _eager_resize(),
        torch.no_grad(),
    ):
        # the TorchScript-based exporter: the one torchvision's detection export is tested with
        warnings.simplefilter("ignore")
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            _SingleImage(model, masks).eval(),
            (example,),
            str(raw),
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=names,
            dynamic_axes=dynamic,
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


# --- parity ----------------------------------------------------------------------------------------


def pytorch_detections(model: nn.Module, image: np.ndarray) -> Detections:
    """Eager PyTorch's detections of one ``3×H×W`` image in 0..1 (CPU), in its pixels — the
    reference of the parity check, run as evaluation runs it."""
    from vistudio.ml.inference.detections import from_torchvision

    model = model.cpu().eval()
    with torch.inference_mode():
        out = model([torch.from_numpy(np.ascontiguousarray(image))])[0]
    size = (int(image.shape[2]), int(image.shape[1]))
    return from_torchvision(out, input_size=size, original_size=size)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plain IoU of every box of ``a`` (N×4 xyxy) with every box of ``b`` (M×4) → N×M: the
    evaluation's :func:`~vistudio.ml.inference.detection_matching.box_iou` with no crowd region;
    two identical boxes of no area (never output by torchvision, which drops them) count as equal."""
    out = _box_iou(a, b)
    if out.size:
        a2 = np.asarray(a, np.float64).reshape(-1, 4)
        b2 = np.asarray(b, np.float64).reshape(-1, 4)
        same = (a2[:, None, :] == b2[None, :, :]).all(axis=2)
        out = np.where(same, 1.0, out)
    return out


def _mask_iou(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Plain IoU of two RLE masks (the evaluation's mask IoU, no crowd region); masks of
    different sizes do not match, two empty masks of one size are equal."""
    if list(a["size"]) != list(b["size"]):
        return 0.0
    if a["counts"] == b["counts"]:  # identical RLEs: equal, even when both are empty
        return 1.0
    return float(mask_iou([a], [b], np.zeros(1, bool))[0, 0])


def _match(one: Detections, other: Detections) -> list[int]:
    """For each detection of ``one`` (best score first), the index of its partner in ``other``
    (same class, highest IoU, then closest score; each partner used once), or -1."""
    iou = box_iou(one.boxes, other.boxes)
    used = np.zeros(len(other), bool)
    partners = []
    for i in np.argsort(-one.scores, kind="stable"):
        same = (other.labels == one.labels[i]) & ~used & (iou[i] >= BOX_IOU)
        if not same.any():
            partners.append((int(i), -1))
            continue
        candidates = np.flatnonzero(same)
        gap = np.abs(other.scores[candidates].astype(np.float64) - float(one.scores[i]))
        best = int(candidates[np.lexsort((-iou[i, candidates], gap))[0]])
        used[best] = True
        partners.append((int(i), best))
    out = [-1] * len(one)
    for i, j in partners:
        out[i] = j
    return out


def _cutoff(other: Detections, score_threshold: float, limit: int | None) -> float:
    """The score below which a detection may be missing from ``other`` without a fault: near the
    score threshold, or near the last kept score when ``other`` is full (``limit`` detections),
    two nearly tied detections may fall on either side in either runtime."""
    low = score_threshold
    if limit is not None and len(other) >= limit and len(other):
        low = max(low, float(other.scores.min()))
    return low + SCORE_TOL


def detection_parity(
    pairs: list[tuple[Detections, Detections]],
    *,
    score_threshold: float = 0.0,
    detections_per_image: int | None = None,
) -> dict[str, Any]:
    """Compare PyTorch's detections with the exported model's, image by image (``(reference,
    exported)`` pairs). ``passed`` when every box of either side has a partner of the same class
    at IoU ≥ ``BOX_IOU`` with ``|Δscore| < SCORE_TOL`` (and masks at IoU ≥ ``MASK_IOU``), except
    boxes whose score is within ``SCORE_TOL`` of a cut (the score threshold, or the last kept
    score of a side that reached ``detections_per_image``): those are counted as ``borderline``."""
    boxes_ref = boxes_exp = matched = borderline = 0
    unmatched: list[dict[str, Any]] = []
    min_iou, max_diff, min_mask = 1.0, 0.0, 1.0
    masks_compared = 0
    for index, (ref, exp) in enumerate(pairs):
        boxes_ref += len(ref)
        boxes_exp += len(exp)
        forward = _match(ref, exp)
        backward = _match(exp, ref)
        iou = box_iou(ref.boxes, exp.boxes)
        for i, j in enumerate(forward):
            if j < 0:
                continue
            diff = abs(float(ref.scores[i]) - float(exp.scores[j]))
            matched += 1
            min_iou = min(min_iou, float(iou[i, j]))
            max_diff = max(max_diff, diff)
            if diff >= SCORE_TOL:
                unmatched.append(
                    {"image": index, "side": "both", "score": float(ref.scores[i]), "why": "score"}
                )
            if ref.masks is not None and exp.masks is not None:
                m = _mask_iou(ref.masks[i], exp.masks[j])
                masks_compared += 1
                min_mask = min(min_mask, m)
                if m < MASK_IOU:
                    unmatched.append(
                        {"image": index, "side": "both", "score": float(ref.scores[i]), "why": "mask"}
                    )
        for side, dets, partners, other in (
            ("pytorch", ref, forward, exp),
            ("exported", exp, backward, ref),
        ):
            cut = _cutoff(other, score_threshold, detections_per_image)
            for i, j in enumerate(partners):
                if j >= 0:
                    continue
                if float(dets.scores[i]) < cut:
                    borderline += 1
                else:
                    unmatched.append(
                        {"image": index, "side": side, "score": float(dets.scores[i]), "why": "box"}
                    )
    return {
        "images": len(pairs),
        "boxes_pytorch": boxes_ref,
        "boxes_exported": boxes_exp,
        "matched": matched,
        "borderline": borderline,
        "faults": len(unmatched),
        "fault_examples": unmatched[:10],
        "min_box_iou": min_iou if matched else None,
        "max_abs_score_diff": max_diff if matched else None,
        "masks_compared": masks_compared,
        "min_mask_iou": min_mask if masks_compared else None,
        "tolerances": {"box_iou": BOX_IOU, "score": SCORE_TOL, "mask_iou": MASK_IOU},
        "passed": not unmatched,
    }
