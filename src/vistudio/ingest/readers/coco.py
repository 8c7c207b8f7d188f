"""COCO reader: one instances JSON (``images``, ``annotations``, ``categories``).

The source is the JSON file, or a folder holding exactly one ``*.json``. Image files are
looked up under an ``images/`` folder next to the JSON when there is one, then next to the
JSON itself. Each COCO annotation yields a ``box`` (from ``bbox``) and, when present, a
``polygon`` (polygon ``segmentation``) or ``mask_rle`` (RLE ``segmentation``). Crowd
annotations (``iscrowd: 1``) carry ``"iscrowd": True`` in their geometry so that training can
ignore them; an annotation with neither becomes an image-level ``label``. Classes keep the
category id order.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vistudio.ingest.geometry import ring_problem
from vistudio.ingest.readers._common import Collector, displayed_size, short, single_file
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import resolve_inside
from vistudio.ingest.types import Annotation, IngestError, ParsedSource, SourceError, SourceItem


@register_reader("coco")
def read_coco(path: Path) -> ParsedSource:
    """Parse a COCO JSON file (or a folder with exactly one) into items with boxes and masks."""
    json_path = single_file(path, ".json", "COCO")
    try:
        doc = json.loads(json_path.read_bytes().decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"malformed JSON in {json_path.name}: {exc}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {json_path.name}: {exc.strerror or exc}") from exc
    return parse_coco(doc, json_dir=json_path.parent)


def parse_coco(doc: Any, *, json_dir: Path) -> ParsedSource:
    """Turn an already-loaded COCO document into a ``ParsedSource`` rooted at ``json_dir``."""
    if not isinstance(doc, dict):
        raise SourceError("COCO JSON must be an object with an 'images' list")
    images = doc.get("images")
    annotations = doc.get("annotations", [])
    categories = doc.get("categories", [])
    if not isinstance(images, list):
        raise SourceError("COCO JSON has no 'images' list")
    if not isinstance(annotations, list) or not isinstance(categories, list):
        raise SourceError("COCO 'annotations' and 'categories' must be lists")

    out = Collector("coco", json_dir)
    image_roots = [out.root]
    if (out.root / "images").is_dir():
        # resolve_inside only keeps paths inside the root it is given: that root must itself
        # lie inside the source, or a symlinked images/ would import files from anywhere.
        real_images = (out.root / "images").resolve()
        if real_images.is_relative_to(out.root):
            image_roots.insert(0, real_images)
        else:
            out.error("images", "symlinked folder points outside the source folder")

    class_by_id: dict[Any, str] = {}
    for index, cat in enumerate(categories):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            out.error(f"categories[{index}]", "category needs an integer 'id' and a string 'name'")
            continue
        if cat["id"] in class_by_id:
            out.error(f"categories[{index}]", f"category id {cat['id']} listed twice")
            continue
        class_by_id[cat["id"]] = cat["name"]
    classes: list[str] = []
    for cid in sorted(class_by_id):
        if class_by_id[cid] not in classes:
            classes.append(class_by_id[cid])
    out.parsed.classes = classes

    by_id: dict[Any, tuple[SourceItem, float, float]] = {}
    rejected_ids: set[Any] = set()
    for index, entry in enumerate(images):
        _read_image_entry(out, image_roots, index, entry, by_id, rejected_ids)

    for index, ann in enumerate(annotations):
        where = f"annotations[{index}]"
        if not isinstance(ann, dict):
            out.error(where, "annotation is not an object")
            continue
        image_id = ann.get("image_id")
        if not _is_id(image_id) or image_id not in by_id:
            if not (_is_id(image_id) and image_id in rejected_ids):
                out.error(where, f"annotation refers to missing image id {short(repr(image_id))}")
            continue
        item, width, height = by_id[image_id]
        category_id = ann.get("category_id")
        if not _is_id(category_id) or category_id not in class_by_id:
            out.error(f"{item.name} ({where})", f"unknown category id {short(repr(category_id))}")
            continue
        try:
            item.annotations.extend(_convert(ann, class_by_id[category_id], width, height))
        except IngestError as exc:
            out.error(f"{item.name} ({where})", exc.reason)
    return out.parsed


def _read_image_entry(
    out: Collector,
    image_roots: list[Path],
    index: int,
    entry: Any,
    by_id: dict[Any, tuple[SourceItem, float, float]],
    rejected_ids: set[Any],
) -> None:
    where = f"images[{index}]"
    if not isinstance(entry, dict) or not _is_id(entry.get("id")):
        out.error(where, "image entry needs an integer 'id'")
        return
    image_id = entry["id"]
    if image_id in by_id or image_id in rejected_ids:
        out.error(where, f"image id {image_id} listed twice")
        return
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name.strip():
        out.error(where, "image entry has no 'file_name'")
        rejected_ids.add(image_id)
        return
    try:
        path = _locate(image_roots, file_name)
    except IngestError as exc:
        out.error(file_name, exc.reason)
        rejected_ids.add(image_id)
        return
    width: Any = entry.get("width")
    height: Any = entry.get("height")
    if not (_positive(width) and _positive(height)):
        try:
            width, height = displayed_size(path)
        except Exception as exc:
            out.error(file_name, f"cannot read image size: {short(str(exc))}")
            rejected_ids.add(image_id)
            return
    item = out.add(path)
    if item is None:
        rejected_ids.add(image_id)
        return
    by_id[image_id] = (item, float(width), float(height))


def _locate(image_roots: list[Path], file_name: str) -> Path:
    for root in image_roots:
        candidate = resolve_inside(root, file_name)
        if candidate.is_file():
            return candidate
    raise IngestError("file not found")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _positive(value: Any) -> bool:
    return _number(value) and value > 0


def _convert(ann: dict[str, Any], class_name: str, width: float, height: float) -> list[Annotation]:
    crowd = ann.get("iscrowd") in (1, True)
    extra: dict[str, Any] = {"iscrowd": True} if crowd else {}
    result: list[Annotation] = []
    bbox = ann.get("bbox")
    if bbox is not None:
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_number(v) for v in bbox)):
            raise IngestError(f"malformed bbox {short(repr(bbox))}: need 4 numbers [x, y, w, h]")
        x, y, w, h = (float(v) for v in bbox)
        if w <= 0 or h <= 0:
            raise IngestError(f"malformed bbox {short(repr(bbox))}: width and height must be positive")
        # COCO exports often overshoot the border by rounding; clip, but refuse boxes fully outside.
        x0, y0 = max(0.0, x / width), max(0.0, y / height)
        x1, y1 = min(1.0, (x + w) / width), min(1.0, (y + h) / height)
        if x1 <= x0 or y1 <= y0:
            raise IngestError(f"bbox {short(repr(bbox))} lies outside the image")
        geometry = {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, **extra}
        result.append(Annotation(kind="box", class_name=class_name, geometry=geometry))
    seg = ann.get("segmentation")
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (
            isinstance(size, list)
            and len(size) == 2
            and all(_is_id(v) and v > 0 for v in size)
            and (isinstance(counts, str) or (isinstance(counts, list) and all(_is_id(c) for c in counts)))
        ):
            raise IngestError("malformed RLE segmentation: need 'size' [h, w] and 'counts'")
        if size != [round(height), round(width)]:
            raise IngestError(
                f"RLE size {size[0]}×{size[1]} (h×w) differs from the image's {round(height)}×{round(width)}"
            )
        result.append(
            Annotation(
                kind="mask_rle", class_name=class_name, geometry={"size": size, "counts": counts, **extra}
            )
        )
    elif isinstance(seg, list) and seg:
        rings: list[list[list[float]]] = []
        for ring in seg:
            if not (isinstance(ring, list) and len(ring) >= 6 and len(ring) % 2 == 0):
                raise IngestError("malformed polygon: need an even number (>= 6) of coordinates")
            if not all(_number(v) for v in ring):
                raise IngestError("malformed polygon: coordinates must be numbers")
            problem = ring_problem([ring[i : i + 2] for i in range(0, len(ring), 2)])
            if problem:
                raise IngestError(problem)
            points = [[ring[i] / width, ring[i + 1] / height] for i in range(0, len(ring), 2)]
            if not all(math.isfinite(v) for point in points for v in point):
                # a tiny declared width can push huge coordinates to infinity, which JSON cannot carry
                raise IngestError("malformed polygon: coordinates too large for the image size")
            rings.append(points)
        result.append(
            Annotation(kind="polygon", class_name=class_name, geometry={"polygons": rings, **extra})
        )
    elif seg not in (None, []):
        raise IngestError("malformed segmentation: expected a polygon list or an RLE object")
    if not result:
        result.append(Annotation(kind="label", class_name=class_name))
    return result
