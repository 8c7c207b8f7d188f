"""Geometry the writers need: COCO RLE runs, boxes around outlines, and when a box and the outline
after it are one object (how the COCO reader stores a COCO annotation with both)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from vistudio.ingest.geometry import rle_counts
from vistudio.ingest.writers._base import box_of, rings_of

if TYPE_CHECKING:
    from vistudio.ingest.writers._base import ExportAnnotation

# A box and the polygon or mask right after it are one object when the box overlaps the outline's
# own box this much (a COCO bbox is its mask's box, give or take the rounding of a pixel).
SAME_OBJECT_IOU = 0.5
IGNORE = ("iscrowd", "difficult")


def rle_box(size: Sequence[int], counts: str | list[int]) -> tuple[list[float], int] | None:
    """``([x, y, w, h], area)`` in pixels of an RLE mask (column-major runs, background first);
    None for a malformed or empty mask."""
    h, w = int(size[0]), int(size[1])
    try:
        runs = rle_counts(counts)
    except (ValueError, TypeError):
        return None
    if h <= 0 or w <= 0 or sum(runs) != h * w or min(runs, default=0) < 0:
        return None
    x0, y0, x1, y1 = w, h, -1, -1
    pos = area = 0
    for i, run in enumerate(runs):
        if i % 2 and run:
            start, end = pos, pos + run - 1
            c0, r0, c1, r1 = start // h, start % h, end // h, end % h
            if c1 > c0:  # the run wraps a column: it covers every row between its ends
                r0, r1 = 0, h - 1
            x0, x1, y0, y1 = min(x0, c0), max(x1, c1), min(y0, r0), max(y1, r1)
            area += run
        pos += run
    if x1 < 0:
        return None
    return [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)], area


def outline_box(a: ExportAnnotation, width: float, height: float) -> tuple[float, float, float, float] | None:
    """The normalised ``(x0, y0, x1, y1)`` around a polygon or an RLE mask; None when malformed."""
    if a.kind == "polygon":
        rings = rings_of(a.geometry)
        if rings is None:
            return None
        xs = [p[0] for r in rings for p in r]
        ys = [p[1] for r in rings for p in r]
        return min(xs), min(ys), max(xs), max(ys)
    g: dict[str, Any] = a.geometry or {}
    size, counts = g.get("size"), g.get("counts")
    if not (isinstance(size, list) and len(size) == 2 and isinstance(counts, str | list)):
        return None
    measured = rle_box(size, counts)
    if measured is None or width <= 0 or height <= 0:
        return None
    x, y, w, h = measured[0]
    return x / width, y / height, (x + w) / width, (y + h) / height


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _ignored(a: ExportAnnotation) -> bool:
    g = a.geometry or {}
    return any(g.get(f) is True for f in IGNORE)


def same_object(box: ExportAnnotation, outline: ExportAnnotation, width: float, height: float) -> bool:
    """Whether ``box`` and the polygon or mask ``outline`` stored right after it are one object: the
    same class, the same crowd flag, and the box is the outline's (IoU >= ``SAME_OBJECT_IOU``)."""
    if box.kind != "box" or outline.kind not in ("polygon", "mask_rle"):
        return False
    if box.class_name != outline.class_name or _ignored(box) != _ignored(outline):
        return False
    b, o = box_of(box.geometry), outline_box(outline, width, height)
    if b is None or o is None:
        return False
    return iou((b[0], b[1], b[0] + b[2], b[1] + b[3]), o) >= SAME_OBJECT_IOU
