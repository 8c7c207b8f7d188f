"""Generated annotations for the dataset-export tests, and how two sets of annotations are compared.

Geometry follows ``vistudio.ingest.types`` (normalised 0..1, RLE in pixels). The strategies make
objects that every format's precision keeps valid: boxes at least 8 % of the image, star-shaped
(hence simple) polygons whose corners are at least 0.3 rad apart, rectangles turned by any angle
that stay inside the image, random blob masks. ``assert_same`` matches two lists of annotations
object by object within a tolerance in pixels of the image.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from factories import draw_image

FLAGS = ("iscrowd", "difficult", "truncated", "occluded")
CLASSES = ("cat", "dog", "big truck", "ünï")
TOL_PX = 0.005  # the formats write pixels with 3 decimals, YOLO 6 decimals of the image size

Ann = dict[str, Any]  # {"kind", "class", "geometry"}


def ann(kind: str, cls: str | None, geometry: dict[str, Any] | None = None) -> Ann:
    return {"kind": kind, "class": cls, "geometry": geometry}


@st.composite
def boxes(draw: st.DrawFn) -> dict[str, float]:
    x = draw(st.floats(0.0, 0.8))
    y = draw(st.floats(0.0, 0.8))
    # at least 0.08 of a side: more than a pixel on a 16-pixel image (VOC cannot write a box of
    # one pixel or less: its xmax must exceed its xmin, both inclusive)
    w = draw(st.floats(0.08, 1.0 - x))
    h = draw(st.floats(0.08, 1.0 - y))
    return {"x": x, "y": y, "w": w, "h": h}


@st.composite
def rings(draw: st.DrawFn, *, cx: float | None = None, cy: float | None = None) -> list[list[float]]:
    """A star-shaped ring: 3-8 corners at increasing angles (gaps >= 0.3 rad), radius 0.08-0.25."""
    n = draw(st.integers(3, 8))
    gaps = draw(st.lists(st.floats(0.3, 1.0), min_size=n, max_size=n))
    scale = 2 * math.pi / sum(gaps)
    start = draw(st.floats(0, 2 * math.pi))
    angles = [start + scale * sum(gaps[:i]) for i in range(n)]
    radii = draw(st.lists(st.floats(0.08, 0.25), min_size=n, max_size=n))
    cx = draw(st.floats(0.3, 0.7)) if cx is None else cx
    cy = draw(st.floats(0.3, 0.7)) if cy is None else cy
    return [[cx + r * math.cos(a), cy + r * math.sin(a)] for a, r in zip(angles, radii, strict=True)]


@st.composite
def rotated(draw: st.DrawFn) -> list[list[float]]:
    cx, cy = draw(st.floats(0.3, 0.7)), draw(st.floats(0.3, 0.7))
    w, h = draw(st.floats(0.1, 0.3)), draw(st.floats(0.1, 0.3))
    a = draw(st.floats(-math.pi, math.pi))
    c, s = math.cos(a), math.sin(a)
    return [
        [cx + dx * c - dy * s, cy + dx * s + dy * c]
        for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2))
    ]


@st.composite
def masks(draw: st.DrawFn, height: int, width: int) -> dict[str, Any]:
    """An RLE of a random non-empty rectangle union, compressed (string) or not (list of runs)."""
    m = np.zeros((height, width), dtype=np.uint8, order="F")
    for _ in range(draw(st.integers(1, 3))):
        y0, x0 = draw(st.integers(0, height - 1)), draw(st.integers(0, width - 1))
        m[y0 : draw(st.integers(y0 + 1, height)), x0 : draw(st.integers(x0 + 1, width))] = 1
    rle = mask_utils.encode(m)
    if draw(st.booleans()):
        return {"size": [height, width], "counts": rle["counts"].decode()}
    flat = m.flatten(order="F").tolist()
    runs, current, count = [], 0, 0
    for v in flat:
        if v != current:
            runs.append(count)
            current, count = v, 0
        count += 1
    runs.append(count)
    return {"size": [height, width], "counts": runs}


def to_pixels(points: list[list[float]], w: int, h: int) -> list[float]:
    return [v for x, y in points for v in (x * w, y * h)]


def write_coco_source(
    root: Path, images: list[dict[str, Any]], *, classes: tuple[str, ...] = CLASSES
) -> Path:
    """A COCO folder from ``images``: ``{"name", "size": (w, h), "seed", "objects": [...]}``, an
    object being ``{"class", "box"?, "polygon"?: [ring, ...], "mask"?: rle, "iscrowd"?}`` in
    normalised units (the mask in pixels). Returns ``root``."""
    out_images, out_anns = [], []
    for image_id, im in enumerate(images, start=1):
        w, h = im["size"]
        draw_image(root / "images" / im["name"], seed=im["seed"], size=(w, h))
        out_images.append({"id": image_id, "file_name": im["name"], "width": w, "height": h})
        for obj in im["objects"]:
            a: dict[str, Any] = {
                "id": len(out_anns) + 1,
                "image_id": image_id,
                "category_id": classes.index(obj["class"]) + 1,
                "iscrowd": int(bool(obj.get("iscrowd"))),
            }
            if "box" in obj:
                b = obj["box"]
                a["bbox"] = [b["x"] * w, b["y"] * h, b["w"] * w, b["h"] * h]
            if "polygon" in obj:
                a["segmentation"] = [to_pixels(ring, w, h) for ring in obj["polygon"]]
            if "mask" in obj:
                a["segmentation"] = obj["mask"]
            out_anns.append(a)
    doc = {
        "images": out_images,
        "annotations": out_anns,
        "categories": [{"id": i + 1, "name": c} for i, c in enumerate(classes)],
    }
    (root / "annotations.json").write_text(json.dumps(doc))
    return root


def rle_runs(counts: str | list[int]) -> list[int]:
    if isinstance(counts, list):
        return counts
    from vistudio.services.samples import rle_counts

    return rle_counts(counts)


def mask_box(rle: dict[str, Any]) -> dict[str, float]:
    """The normalised box around an RLE mask, by pycocotools."""
    h, w = rle["size"]
    encoded = (
        {"size": rle["size"], "counts": rle["counts"].encode()}
        if isinstance(rle["counts"], str)
        else mask_utils.frPyObjects(rle, h, w)
    )
    x, y, bw, bh = (float(v) for v in mask_utils.toBbox(encoded))
    return {"x": x / w, "y": y / h, "w": bw / w, "h": bh / h}


def flags_of(a: Ann) -> frozenset[str]:
    g = a.get("geometry") or {}
    return frozenset(f for f in FLAGS if g.get(f) is True)


def _close(a: list[float], b: list[float], tol: float) -> bool:
    return len(a) == len(b) and all(abs(x - y) <= tol for x, y in zip(a, b, strict=True))


def same_geometry(
    kind: str, g1: dict[str, Any] | None, g2: dict[str, Any] | None, size: tuple[int, int]
) -> bool:
    w, h = size
    g1, g2 = g1 or {}, g2 or {}
    if kind == "box":
        return _close(
            [g1["x"] * w, g1["y"] * h, g1["w"] * w, g1["h"] * h],
            [g2["x"] * w, g2["y"] * h, g2["w"] * w, g2["h"] * h],
            TOL_PX,
        )
    if kind == "polygon":
        r1, r2 = g1["polygons"], g2["polygons"]
        return len(r1) == len(r2) and all(
            _close(to_pixels(a, w, h), to_pixels(b, w, h), TOL_PX) for a, b in zip(r1, r2, strict=True)
        )
    if kind == "rotated_box":
        return _close(to_pixels(g1["points"], w, h), to_pixels(g2["points"], w, h), TOL_PX)
    if kind == "mask_rle":
        return list(g1["size"]) == list(g2["size"]) and rle_runs(g1["counts"]) == rle_runs(g2["counts"])
    if kind == "value":
        return _close(list(g1["values"]), list(g2["values"]), 1e-9)
    return True  # a label: its class says it all


def assert_same(expected: list[Ann], actual: list[Ann], size: tuple[int, int], where: str = "") -> None:
    """Every expected annotation matches one actual annotation (kind, class, flags, geometry within
    the formats' precision) and nothing is left over."""
    left = list(actual)
    for e in expected:
        for i, a in enumerate(left):
            if (
                a["kind"] == e["kind"]
                and a["class"] == e["class"]
                and flags_of(a) == flags_of(e)
                and same_geometry(e["kind"], e["geometry"], a["geometry"], size)
            ):
                del left[i]
                break
        else:
            raise AssertionError(f"{where}: {e} not found among {actual}")
    assert not left, f"{where}: unexpected {left}"


def kinds(anns: list[Ann]) -> Counter[str]:
    return Counter(a["kind"] for a in anns)


def with_flags(a: Ann, *, keep: tuple[str, ...], ignore_as: str | None = None) -> Ann:
    """``a`` with only the flags ``keep`` (an ignore flag, iscrowd or difficult, the format lacks
    becomes ``ignore_as``)."""
    g = dict(a["geometry"] or {})
    ignored = any(g.get(f) is True for f in ("iscrowd", "difficult"))
    for f in FLAGS:
        g.pop(f, None)
    for f in keep:
        if (a["geometry"] or {}).get(f) is True:
            g[f] = True
    if ignored and ignore_as:
        g[ignore_as] = True
    return {**a, "geometry": None if a["geometry"] is None else g}


def _ignored(a: Ann) -> bool:
    g = a.get("geometry") or {}
    return bool(g.get("iscrowd") or g.get("difficult"))


def outline_bounds(a: Ann) -> tuple[float, float, float, float]:
    """Normalised (x0, y0, x1, y1) around a polygon (numpy) or an RLE mask (pycocotools)."""
    if a["kind"] == "mask_rle":
        b = mask_box(a["geometry"])
        return b["x"], b["y"], b["x"] + b["w"], b["y"] + b["h"]
    pts = np.concatenate([np.asarray(r, dtype=np.float64) for r in a["geometry"]["polygons"]])
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    return float(x0), float(y0), float(x1), float(y1)


def one_object(box: Ann, outline: Ann) -> bool:
    """A box and the outline stored after it are one COCO object: same class and crowd flag, and
    the box is the outline's (IoU >= 0.5)."""
    if box["kind"] != "box" or outline["kind"] not in ("polygon", "mask_rle"):
        return False
    if box["class"] != outline["class"] or _ignored(box) != _ignored(outline):
        return False
    g = box["geometry"]
    a = (g["x"], g["y"], g["x"] + g["w"], g["y"] + g["h"])
    b = outline_bounds(outline)
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 and inter / union >= 0.5


def lone_outlines(anns: list[Ann]) -> list[Ann]:
    """The polygons and masks that are not one object with the box stored before them."""
    return [
        a
        for i, a in enumerate(anns)
        if a["kind"] in ("polygon", "mask_rle") and not (i > 0 and one_object(anns[i - 1], a))
    ]
