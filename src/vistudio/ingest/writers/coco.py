"""COCO writer: ``annotations.json`` + ``images/…`` (by split: ``<subset>/annotations.json`` +
``<subset>/images/…``, each folder a COCO dataset of its own).

Categories are the project's classes in their order (ids from 1). Each image carries its size as
displayed. Objects: a ``box`` becomes ``bbox`` in pixels; a ``polygon`` a polygon
``segmentation`` (every ring), a ``mask_rle`` its RLE as stored. A box directly followed by a
polygon or mask of the same class and crowd flag — how the COCO reader stores one COCO annotation —
is written back as one annotation with both, provided the box is that outline's (they overlap with
an IoU of at least 0.5: two neighbouring objects are never merged into one). A polygon or mask alone gets the box around it (COCO
tools expect a ``bbox`` on every annotation; reported in ``converted``, and a re-import then
holds that box too). ``iscrowd`` is kept; VOC's ``difficult`` is written as ``iscrowd``. An
image-level ``label`` becomes an annotation without geometry (read back as a label). Dropped:
rotated boxes and values (no COCO form), truncated/occluded flags.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from vistudio.ingest.readers.coco import _convert as read_annotation
from vistudio.ingest.types import IngestError
from vistudio.ingest.writers._base import (
    INVALID,
    ExportAnnotation,
    ExportSample,
    Rendered,
    Writer,
    box_of,
    register_writer,
    rings_of,
)
from vistudio.ingest.writers._geometry import rle_box, same_object

DIGITS = 3  # decimals of a pixel coordinate
MANIFEST = "annotations.json"
SEGMENTS = ("polygon", "mask_rle")


def _px(value: float) -> float:
    return round(value, DIGITS)


def _shoelace(points: list[list[float]]) -> float:
    twice = 0.0
    for i, (x0, y0) in enumerate(points):
        x1, y1 = points[(i + 1) % len(points)]
        twice += x0 * y1 - x1 * y0
    return abs(twice) / 2


@register_writer("coco")
class CocoWriter(Writer):
    kinds = frozenset({"label", "box", "polygon", "mask_rle"})
    layout = "annotations.json + images/… (by split: <subset>/annotations.json + <subset>/images/…)"

    def image_path(self, s: ExportSample, name: str) -> str:
        return f"{self.subset_folder(s)}/images/{name}" if self.by_split else f"images/{name}"

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        categories = [{"id": i + 1, "name": c, "supercategory": ""} for i, c in enumerate(self.classes)]
        self.category_ids = {c: i + 1 for i, c in enumerate(self.classes)}
        groups: dict[str, list[tuple[ExportSample, str]]] = {}
        for s, path in entries:
            groups.setdefault(self.subset_folder(s) + "/" if self.by_split else "", []).append((s, path))
        if not groups and not self.by_split:
            groups[""] = []  # an empty export is still a valid (empty) COCO dataset
        for prefix, items in sorted(groups.items()):
            images: list[dict[str, Any]] = []
            annotations: list[dict[str, Any]] = []
            for image_id, (s, path) in enumerate(items, start=1):
                images.append(
                    {
                        "id": image_id,
                        "file_name": path.removeprefix(f"{prefix}images/"),
                        "width": s.width,
                        "height": s.height,
                    }
                )
                for ann in self._objects(s, rendered):
                    annotations.append({"id": len(annotations) + 1, "image_id": image_id, **ann})
            doc = {
                "info": {"description": f"{self.title}, exported by vistudio", "version": "1.0"},
                "licenses": [],
                "images": images,
                "annotations": annotations,
                "categories": categories,
            }
            data = json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()
            rendered.files.append((f"{prefix}{MANIFEST}", data))
        return self.finish(rendered)

    def _objects(self, s: ExportSample, rendered: Rendered) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        anns = s.annotations
        i = 0
        while i < len(anns):
            a = anns[i]
            i += 1
            reason = self.unsupported(a)
            if reason:
                rendered.dropped[reason] += 1
                continue
            if a.kind == "box" and i < len(anns):
                nxt = anns[i]
                if (
                    nxt.kind in SEGMENTS
                    and not self.unsupported(nxt)
                    and same_object(a, nxt, s.width, s.height)
                ):
                    i += 1
                    out.extend(self._one(s, rendered, box=a, segment=nxt))
                    continue
            if a.kind == "box":
                out.extend(self._one(s, rendered, box=a))
            elif a.kind in SEGMENTS:
                out.extend(self._one(s, rendered, segment=a))
            else:  # a label: an annotation without geometry
                out.append({"category_id": self.category_ids[a.class_name or ""], "iscrowd": 0, "area": 0.0})
                rendered.annotations += 1
        return out

    def _one(
        self,
        s: ExportSample,
        rendered: Rendered,
        *,
        box: ExportAnnotation | None = None,
        segment: ExportAnnotation | None = None,
    ) -> list[dict[str, Any]]:
        """One COCO annotation of a box and/or a segment; [] (counted as dropped) when invalid."""
        head = box or segment
        assert head is not None and head.class_name is not None
        w, h = float(s.width), float(s.height)
        ann: dict[str, Any] = {"category_id": self.category_ids[head.class_name]}
        crowd = False
        for part in (box, segment):
            if part is not None:
                crowd = self.flags(part, rendered, keeps=("iscrowd",)) or crowd
        count = (box is not None) + (segment is not None)
        derived = box is None
        try:
            if box is not None:
                b = box_of(box.geometry)
                if b is None:
                    raise IngestError("malformed box")
                ann["bbox"] = [_px(b[0] * w), _px(b[1] * h), _px(b[2] * w), _px(b[3] * h)]
                ann["area"] = _px(b[2] * w * b[3] * h)
            if segment is not None and segment.kind == "polygon":
                rings = rings_of(segment.geometry)
                if rings is None:
                    raise IngestError("malformed polygon")
                px = [[[_px(x * w), _px(y * h)] for x, y in ring] for ring in rings]
                ann["segmentation"] = [[v for point in ring for v in point] for ring in px]
                ann["area"] = _px(sum(_shoelace(ring) for ring in px))
                if derived:
                    xs = [p[0] for ring in px for p in ring]
                    ys = [p[1] for ring in px for p in ring]
                    ann["bbox"] = [min(xs), min(ys), _px(max(xs) - min(xs)), _px(max(ys) - min(ys))]
            elif segment is not None:
                g = segment.geometry or {}
                size, counts = g.get("size"), g.get("counts")
                measured = (
                    rle_box(size, counts)
                    if isinstance(size, list) and len(size) == 2 and isinstance(counts, str | list)
                    else None
                )
                if measured is None:
                    raise IngestError("malformed RLE mask")
                ann["segmentation"] = {"size": size, "counts": counts}
                ann["area"] = float(measured[1])
                if derived:
                    ann["bbox"] = measured[0]
            ann["iscrowd"] = int(crowd)
            back = read_annotation(ann, head.class_name, w, h)
        except (IngestError, TypeError, ValueError):
            rendered.dropped[INVALID] += count
            return []
        if len(back) != count + derived:  # pragma: no cover - the reader reads what was written
            rendered.dropped[INVALID] += count
            return []
        if derived:
            rendered.converted["box added around a polygon or mask (COCO needs a bbox)"] += 1
        rendered.annotations += count
        return [ann]
