"""Detections drawn over their image with Pillow: what ``vistudio predict --save-overlays`` writes
and what the ``detect_onnx`` pipeline stage saves for images with errors.

- :func:`draw_detections`: each detection's box in its class colour with "class score", its mask
  (instance segmentation) filled semi-transparent, one shade of the class hue per instance;
- :func:`draw_outcomes`: predictions against ground truth — true positives green, false positives
  red, missed objects dashed orange (the colours of the evaluation pages).

Boxes are ``[x1, y1, x2, y2]`` in the image's pixels; masks are COCO RLEs at the image's size.
A library module: Pillow and NumPy (faster-coco-eval to decode masks), no database.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MASK_ALPHA = 0.45
TP_COLOUR = (40, 200, 70)
FP_COLOUR = (230, 40, 40)
FN_COLOUR = (255, 150, 0)


# Class colours, the same as the pages draw (``web/static/overlay.js``: ``hue`` and ``colour``):
# the hue of class k is k golden angles (+ 2°) round the wheel, saturation 85 %, the lightness one
# of LIGHTNESS by instance; class k is the same colour in a saved overlay and on every page.
GOLDEN_ANGLE = 137.508
HUE_OFFSET = 2.0
SATURATION = 0.85
LIGHTNESS = (0.46, 0.34, 0.58, 0.40, 0.52)


def class_hue(index: int) -> float:
    """The hue in degrees of class ``index`` (0-based), to 0.1° as the pages write it."""
    return round((index * GOLDEN_ANGLE + HUE_OFFSET) % 360, 1)


def class_colour(index: int, instance: int = 0) -> tuple[int, int, int]:
    """The RGB colour of class ``index``: its hue (:func:`class_hue`), one lightness per
    instance so that neighbouring objects of one class stay apart (the pages' ``hsl()``)."""
    r, g, b = colorsys.hls_to_rgb(class_hue(index) / 360, LIGHTNESS[instance % len(LIGHTNESS)], SATURATION)
    return round(r * 255), round(g * 255), round(b * 255)


def _font(img: Image.Image) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=max(10, min(img.size) // 28))


def _line_width(img: Image.Image) -> int:
    return max(1, min(img.size) // 160)


def _label(
    draw: ImageDraw.ImageDraw, box: Sequence[float], text: str, colour: tuple[int, int, int], font: Any
) -> None:
    x1, y1 = float(box[0]), float(box[1])
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    w, h = right - left + 4, bottom - top + 4
    y = y1 - h if y1 - h >= 0 else y1
    draw.rectangle([x1, y, x1 + w, y + h], fill=colour)
    draw.text((x1 + 2 - left, y + 2 - top), text, fill=(255, 255, 255), font=font)


def _masks_layer(
    img: Image.Image, masks: list[dict[str, Any]], colours: list[tuple[int, int, int]]
) -> Image.Image:
    from vistudio.ml.inference.detections import decode_masks

    base = np.asarray(img, dtype=np.float32).copy()
    decoded = decode_masks(masks)
    for plane, colour in zip(decoded, colours, strict=True):
        if plane.shape != base.shape[:2]:
            continue  # a mask of another size cannot be placed on this image
        on = plane.astype(bool)
        base[on] = base[on] * (1 - MASK_ALPHA) + np.asarray(colour, np.float32) * MASK_ALPHA
    return Image.fromarray(base.clip(0, 255).astype(np.uint8))


def draw_detections(img: Image.Image, detections: Any, classes: Sequence[str]) -> Image.Image:
    """A copy of ``img`` (RGB) with ``detections`` drawn: masks, then boxes, then labels."""
    out = img.convert("RGB")
    per_class: dict[int, int] = {}
    colours = []
    for k in detections.labels:
        n = per_class.get(int(k), 0)
        per_class[int(k)] = n + 1
        colours.append(class_colour(int(k), n))
    if detections.masks:
        out = _masks_layer(out, list(detections.masks), colours)
    draw = ImageDraw.Draw(out)
    font, width = _font(out), _line_width(out)
    for box, colour in zip(detections.boxes, colours, strict=True):
        draw.rectangle([float(v) for v in box], outline=colour, width=width)
    for box, k, score, colour in zip(
        detections.boxes, detections.labels, detections.scores, colours, strict=True
    ):
        name = classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k))
        _label(draw, box, f"{name} {float(score):.2f}", colour, font)
    return out


def _dashed_rectangle(
    draw: ImageDraw.ImageDraw, box: Sequence[float], colour: tuple[int, int, int], width: int, dash: int
) -> None:
    x1, y1, x2, y2 = (float(v) for v in box)
    for (ax, ay), (bx, by) in (
        ((x1, y1), (x2, y1)),
        ((x2, y1), (x2, y2)),
        ((x2, y2), (x1, y2)),
        ((x1, y2), (x1, y1)),
    ):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line(
                [(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                fill=colour,
                width=width,
            )


def draw_outcomes(
    img: Image.Image,
    detections: Any,
    outcomes: Sequence[str],
    truth_boxes: Any,
    truth_outcomes: Sequence[str],
    classes: Sequence[str],
) -> Image.Image:
    """A copy of ``img`` with predictions coloured by outcome (``tp`` green, ``fp`` red; ``ignored``
    ones, on a crowd region, grey) and missed ground-truth objects (``fn``) dashed orange."""
    out = img.convert("RGB")
    draw = ImageDraw.Draw(out)
    font, width = _font(out), _line_width(out)
    for box, outcome in zip(truth_boxes, truth_outcomes, strict=True):
        if outcome == "fn":
            _dashed_rectangle(draw, box, FN_COLOUR, width + 1, max(4, min(out.size) // 40))
    colours = {"tp": TP_COLOUR, "fp": FP_COLOUR}
    for box, outcome in zip(detections.boxes, outcomes, strict=True):
        draw.rectangle([float(v) for v in box], outline=colours.get(outcome, (150, 150, 150)), width=width)
    for box, k, score, outcome in zip(
        detections.boxes, detections.labels, detections.scores, outcomes, strict=True
    ):
        name = classes[int(k)] if 0 <= int(k) < len(classes) else str(int(k))
        _label(draw, box, f"{name} {float(score):.2f}", colours.get(outcome, (150, 150, 150)), font)
    return out
