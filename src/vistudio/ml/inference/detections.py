"""One image's detections in one shape, whatever produced them (PyTorch, ONNX Runtime).

Evaluation, ``predict``, the ONNX parity check and the ``detect_onnx`` pipeline stage all turn a
detector's raw output into :class:`Detections`, so they agree by construction:

- ``boxes``: ``(N, 4)`` float64 ``[x1, y1, x2, y2]`` in the **original** image's pixels (the
  model may have seen a smaller decode; its boxes are scaled back);
- ``labels``: ``(N,)`` project class indices, 0-based (torchvision's label 0 is the background,
  so model label ``k`` is class ``k - 1``);
- ``scores``: ``(N,)`` float32, best first;
- ``masks``: for instance segmentation, one COCO RLE per detection (``{"size": [h, w],
  "counts": str}``) at the original image size, the model's mask probabilities resized bilinearly
  and thresholded at ``mask_threshold`` (0.5, as torchvision's references and pycocotools'
  evaluation of Mask R-CNN do); ``None`` for box detectors.

A library module: NumPy (and torch only in :func:`from_torchvision`), no database.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MASK_THRESHOLD = 0.5


@dataclass
class Detections:
    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: list[dict[str, Any]] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls, *, masks: bool = False) -> Detections:
        return cls(
            np.zeros((0, 4), np.float64),
            np.zeros(0, np.int64),
            np.zeros(0, np.float32),
            [] if masks else None,
        )

    def above(self, score_threshold: float) -> Detections:
        """Only the detections scoring at least ``score_threshold``."""
        keep = np.flatnonzero(self.scores >= score_threshold)
        return Detections(
            self.boxes[keep],
            self.labels[keep],
            self.scores[keep],
            [self.masks[i] for i in keep] if self.masks is not None else None,
        )

    def to_list(self, classes: list[str] | None = None) -> list[dict[str, Any]]:
        """JSON: ``[{"label", "class_index", "score", "box": [x1, y1, x2, y2], "mask"?}]``."""
        out = []
        for i in range(len(self)):
            k = int(self.labels[i])
            d: dict[str, Any] = {
                "label": classes[k] if classes is not None and 0 <= k < len(classes) else str(k),
                "class_index": k,
                "score": float(self.scores[i]),
                "box": [float(v) for v in self.boxes[i]],
            }
            if self.masks is not None:
                d["mask"] = self.masks[i]
            out.append(d)
        return out


def encode_masks(binary: np.ndarray) -> list[dict[str, Any]]:
    """``(N, H, W)`` booleans → COCO RLEs with string ``counts`` (JSON-ready)."""
    from faster_coco_eval.core import mask as mask_utils

    if len(binary) == 0:
        return []
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0).astype(np.uint8)))
    return [{"size": [int(v) for v in r["size"]], "counts": r["counts"].decode("ascii")} for r in rles]


def decode_masks(rles: list[dict[str, Any]]) -> np.ndarray:
    """COCO RLEs (string or bytes counts) → ``(N, H, W)`` uint8."""
    from faster_coco_eval.core import mask as mask_utils

    if not rles:
        return np.zeros((0, 0, 0), np.uint8)
    fixed = [
        {
            "size": r["size"],
            "counts": r["counts"].encode("ascii") if isinstance(r["counts"], str) else r["counts"],
        }
        for r in rles
    ]
    out: np.ndarray = mask_utils.decode(fixed)
    return out.transpose(2, 0, 1)


def from_arrays(
    boxes: Any,
    labels: Any,
    scores: Any,
    masks: Any | None = None,
    *,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    mask_threshold: float = MASK_THRESHOLD,
) -> Detections:
    """Raw detector outputs (NumPy arrays or anything ``np.asarray`` takes) → :class:`Detections`.

    ``boxes`` are in the pixels of the input the model saw (``input_size`` = (width, height));
    ``labels`` are model labels (1-based, 0 = background); ``masks``: ``(N, 1, h, w)`` probabilities
    at the input size, or None. ``original_size`` (width, height) is the image's own size."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lab = np.asarray(labels, dtype=np.int64).reshape(-1) - 1
    sc = np.asarray(scores, dtype=np.float32).reshape(-1)
    keep = lab >= 0  # a background label never comes out of torchvision's detectors; be safe
    (iw, ih), (ow, oh) = input_size, original_size
    sx, sy = ow / max(1, iw), oh / max(1, ih)
    b = b[keep] * np.array([sx, sy, sx, sy])
    b[:, 0::2] = b[:, 0::2].clip(0, ow)
    b[:, 1::2] = b[:, 1::2].clip(0, oh)
    order = np.argsort(-sc[keep], kind="stable")
    rles: list[dict[str, Any]] | None = None
    if masks is not None:
        m = np.asarray(masks, dtype=np.float32)
        m = m.reshape(len(sc), *m.shape[-2:])[keep][order]
        rles = encode_masks(_resize_probabilities(m, (oh, ow)) >= mask_threshold)
    return Detections(b[order], lab[keep][order], sc[keep][order], rles)


def _resize_probabilities(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if len(m) == 0 or m.shape[-2:] == size:
        return m
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(m)[:, None], size=size, mode="bilinear", align_corners=False)
    out: np.ndarray = t[:, 0].numpy()
    return out


def from_torchvision(
    output: dict[str, Any], *, input_size: tuple[int, int], original_size: tuple[int, int]
) -> Detections:
    """One image's output of a torchvision detector in eval mode → :class:`Detections`."""
    masks = output.get("masks")
    return from_arrays(
        output["boxes"].detach().float().cpu().numpy(),
        output["labels"].detach().cpu().numpy(),
        output["scores"].detach().float().cpu().numpy(),
        masks.detach().float().cpu().numpy() if masks is not None else None,
        input_size=input_size,
        original_size=original_size,
    )
