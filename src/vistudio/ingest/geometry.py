"""Geometry shared by the readers, writers and services: checks on polygon rings (GEOS through
shapely does the geometry) and COCO RLE run lengths.

A ring that crosses itself has no single inside: pycocotools fills it by the even-odd rule, other
tools by the non-zero rule, and the two disagree about the area and every IoU computed on it. Such a
ring is refused with the place where it crosses, so the user can fix it at the source.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.validation import explain_validity

_WHERE = re.compile(r"\[\s*([-+0-9.eE]+)\s+([-+0-9.eE]+)\s*\]")


def ring_problem(points: Sequence[Sequence[float]]) -> str | None:
    """Why ``points`` (an open ring of [x, y], at least 3) cannot be a polygon outline, or None."""
    coords = np.asarray(points, dtype=np.float64)
    if coords.ndim != 2 or coords.shape[1] != 2 or not np.isfinite(coords).all():
        return "malformed polygon: coordinates must be [x, y] pairs of finite numbers"
    ring = shapely.linearrings(coords)
    if shapely.is_simple(ring) and shapely.area(shapely.polygons(ring)) > 0.0:
        return None
    if len(np.unique(coords, axis=0)) < 3:
        return "malformed polygon: fewer than 3 distinct points"
    if shapely.MultiPoint(coords).convex_hull.area == 0.0:
        return "malformed polygon: zero area (all points on one line)"
    polygon = shapely.Polygon(ring)
    where = _WHERE.search(explain_validity(polygon))
    if where is None:  # GEOS names the point for crossings; a ring touching itself may not
        return "self-intersecting polygon: its edges cross or touch"
    x, y = float(where.group(1)), float(where.group(2))
    return f"self-intersecting polygon: its edges cross near ({x:.4g}, {y:.4g})"


def rle_counts(counts: str | list[int]) -> list[int]:
    """The run lengths of a COCO RLE, decoding the compressed string form (COCO's ``rleFrString``)."""
    if isinstance(counts, list):
        return [int(c) for c in counts]
    out: list[int] = []
    p = 0
    while p < len(counts):
        x = k = 0
        more = True
        while more:
            if p >= len(counts):
                raise ValueError("truncated RLE string")
            c = ord(counts[p]) - 48
            if not 0 <= c < 64:
                raise ValueError("not an RLE string")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out
