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

from collections.abc import Mapping, Sequence
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


def rle_for_coco(rle: Mapping[str, Any]) -> dict[str, Any]:
    """One COCO RLE in the form faster-coco-eval's mask functions take: ``{"size": [h, w],
    "counts": bytes}``. ``counts`` may be a string (JSON), bytes, or uncompressed (a list of run
    lengths, which is compressed)."""
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):
        from faster_coco_eval.core import mask as mask_utils

        compressed: dict[str, Any] = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
        counts = compressed["counts"]
    return {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def rle_for_json(rle: Mapping[str, Any]) -> dict[str, Any]:
    """One COCO RLE with string ``counts`` (JSON, COCO files): :func:`rle_for_coco`, decoded."""
    fixed = rle_for_coco(rle)
    return {"size": fixed["size"], "counts": fixed["counts"].decode("ascii")}


def rle_area(rles: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """Pixel areas (float64) of COCO RLEs, as pycocotools' ``maskUtils.area``."""
    if not rles:
        return np.zeros(0)
    from faster_coco_eval.core import mask as mask_utils

    return np.asarray(mask_utils.area([rle_for_coco(r) for r in rles]), np.float64).reshape(len(rles))


def decode_masks(rles: list[dict[str, Any]]) -> np.ndarray:
    """COCO RLEs (string or bytes counts) → ``(N, H, W)`` uint8."""
    from faster_coco_eval.core import mask as mask_utils

    if not rles:
        return np.zeros((0, 0, 0), np.uint8)
    out: np.ndarray = mask_utils.decode([rle_for_coco(r) for r in rles])
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
        rles = threshold_resized(m, (oh, ow), mask_threshold)
    return Detections(b[order], lab[keep][order], sc[keep][order], rles)


def _resize_probabilities(m: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """All of ``m`` (N, h, w) resized bilinearly to ``size`` at once: the reference for
    :func:`threshold_resized`, which gives the same masks one at a time in a fraction of the
    memory (N full-size float32 maps: 4.8 GB for 100 masks of a 12-megapixel photo)."""
    if len(m) == 0 or m.shape[-2:] == size:
        return m
    import torch
    import torch.nn.functional as F

    t = F.interpolate(torch.from_numpy(m)[:, None], size=size, mode="bilinear", align_corners=False)
    out: np.ndarray = t[:, 0].numpy()
    return out


def _fma(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``a·b + c`` in float32 with one rounding, as PyTorch's compiled resize kernel computes it
    (the float32 product is exact in float64)."""
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(np.float32)


def _linear_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of bilinear resizing along one axis, ``align_corners=False``:
    PyTorch's arithmetic (float32 scale ``n_in / n_out``, source ``scale·(i + ½) − ½`` clamped at
    0)."""
    f32 = np.float32
    scale = f32(n_in) / f32(n_out)
    j = np.arange(n_out).astype(f32) + f32(0.5)
    real = np.maximum(_fma(np.full(n_out, scale, f32), j, np.full(n_out, -0.5, f32)), f32(0))
    i0 = np.minimum(real.astype(np.int64), n_in - 1)
    w1 = np.clip(real - i0.astype(f32), f32(0), f32(1)).astype(f32)
    w0 = (f32(1) - w1).astype(f32)
    return i0, i0 + (i0 < n_in - 1), w0, w1


def threshold_resized(m: np.ndarray, size: tuple[int, int], threshold: float) -> list[dict[str, Any]]:
    """Probability maps ``m`` (N, h, w) resized bilinearly to ``size`` (height, width) and
    thresholded (``≥ threshold``) → N COCO RLEs, the masks that resizing all maps at once gives.

    One mask at a time, and only over the output pixels whose four source pixels include one
    within reach of the threshold (a bilinear value is a convex combination of its four sources, so
    every other pixel stays below it): memory is one uint8 frame, not N float32 ones."""
    from faster_coco_eval.core import mask as mask_utils

    n = len(m)
    if n == 0:
        return []
    oh, ow = size
    if m.shape[-2:] == size:
        return encode_masks(m >= threshold)
    ih, iw = m.shape[-2:]
    r0, r1, a0, a1 = _linear_weights(ih, oh)
    c0, c1, b0, b1 = _linear_weights(iw, ow)
    canvas = np.zeros((oh, ow, 1), np.uint8, order="F")
    out: list[dict[str, Any]] = []
    for k in range(n):
        p = np.asarray(m[k], np.float32)
        near = p >= np.float32(threshold) - np.float32(1e-5)  # margin for rounding
        rows, cols = np.flatnonzero(near.any(axis=1)), np.flatnonzero(near.any(axis=0))
        region = None
        if len(rows):
            ys = np.flatnonzero((r1 >= rows[0]) & (r0 <= rows[-1]))
            xs = np.flatnonzero((c1 >= cols[0]) & (c0 <= cols[-1]))
            y0, y1, x0, x1 = int(ys[0]), int(ys[-1]) + 1, int(xs[0]), int(xs[-1]) + 1
            ry0, ry1, ra0, ra1 = r0[y0:y1], r1[y0:y1], a0[y0:y1, None], a1[y0:y1, None]
            cx0, cx1, cb0, cb1 = c0[x0:x1], c1[x0:x1], b0[x0:x1], b1[x0:x1]
            top, bottom = p[ry0], p[ry1]
            upper = _fma(top[:, cx0], cb0, top[:, cx1] * cb1)
            lower = _fma(bottom[:, cx0], cb0, bottom[:, cx1] * cb1)
            value = _fma(upper, ra0, lower * ra1)
            region = (slice(y0, y1), slice(x0, x1), 0)
            canvas[region] = value >= threshold
        rle = mask_utils.encode(canvas)[0]
        out.append({"size": [oh, ow], "counts": rle["counts"].decode("ascii")})
        if region is not None:
            canvas[region] = 0
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
