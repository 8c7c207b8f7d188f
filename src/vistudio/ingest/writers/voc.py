"""Pascal VOC writer: ``Annotations/<name>.xml`` + ``JPEGImages/<name>`` + ``ImageSets/Main/``.

One XML per image — images without objects too, since the VOC reader only imports images an XML
names. ``<size>`` is the image's size as displayed; each ``box`` is an ``<object>`` whose
``<bndbox>`` is in VOC's 1-based inclusive pixels (``xmin = x·W + 1``, ``xmax = (x + w)·W``, the
inverse of the reader's conversion), with up to three decimals (whole pixels when the box has
them). ``difficult``, ``truncated`` and ``occluded`` are kept; COCO's ``iscrowd`` is written as
``difficult`` (both mean "do not count this object"). ``ImageSets/Main/trainval.txt`` lists every
image id (by split also ``train.txt``, ``val.txt``, ``test.txt``); the reader reads every XML.

Dropped: everything but boxes (labels, polygons, masks, rotated boxes, values), and boxes one pixel
wide or high or less (in inclusive pixels their ``xmax`` would not exceed ``xmin``, which VOC
readers refuse). Class names lose
characters XML cannot hold and surrounding spaces (the reader strips them). Every ``<object>`` is
checked with the VOC reader before it is written.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import PurePosixPath

from vistudio.ingest.readers.voc import convert_object
from vistudio.ingest.types import IngestError
from vistudio.ingest.writers._base import (
    INVALID,
    ExportSample,
    Rendered,
    Writer,
    box_of,
    num,
    register_writer,
)

DIGITS = 3
IMAGES = "JPEGImages"
ANNOTATIONS = "Annotations"
SETS = "ImageSets/Main"
# Characters XML 1.0 cannot hold at all.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@register_writer("voc")
class VocWriter(Writer):
    kinds = frozenset({"box"})
    layout = "Annotations/….xml + JPEGImages/… + ImageSets/Main/*.txt"

    def image_path(self, s: ExportSample, name: str) -> str:
        return f"{IMAGES}/{name}"

    def format_class_name(self, name: str) -> str | None:
        return _NOT_XML.sub("_", name).strip() or None

    def render(self, entries: Sequence[tuple[ExportSample, str]]) -> Rendered:
        rendered = Rendered()
        sets: dict[str, list[str]] = {"trainval": []}
        for s, path in entries:
            image = path.removeprefix(f"{IMAGES}/")
            image_id = str(PurePosixPath(image).with_suffix(""))
            sets["trainval"].append(image_id)
            if self.by_split:
                subset = self.subset_folder(s)
                sets.setdefault(subset, []).append(image_id)
                if subset == "test":
                    sets["trainval"].pop()
            rendered.files.append((f"{ANNOTATIONS}/{image_id}.xml", self._xml(s, image, rendered)))
        for name, ids in sets.items():
            rendered.files.append((f"{SETS}/{name}.txt", "".join(i + "\n" for i in ids).encode()))
        return self.finish(rendered)

    def _xml(self, s: ExportSample, image: str, rendered: Rendered) -> bytes:
        root = ET.Element("annotation")
        ET.SubElement(root, "folder").text = IMAGES
        ET.SubElement(root, "filename").text = image
        ET.SubElement(ET.SubElement(root, "source"), "database").text = _NOT_XML.sub("_", self.title)
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text = str(s.width)
        ET.SubElement(size, "height").text = str(s.height)
        ET.SubElement(size, "depth").text = "3"
        ET.SubElement(root, "segmented").text = "0"
        w, h = float(s.width), float(s.height)
        for a in s.annotations:
            reason = self.unsupported(a)
            name = self.class_label(a.class_name) if not reason and a.class_name else None
            if reason or name is None:
                rendered.dropped[reason or "objects whose class name XML cannot hold"] += 1
                continue
            b = box_of(a.geometry)
            if b is None:
                rendered.dropped[INVALID] += 1
                continue
            g = a.geometry or {}
            difficult = self.flags(a, rendered, keeps=("difficult", "truncated", "occluded"))
            x, y, bw, bh = b
            obj = ET.Element("object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "pose").text = "Unspecified"
            ET.SubElement(obj, "truncated").text = "1" if g.get("truncated") is True else "0"
            ET.SubElement(obj, "difficult").text = "1" if difficult else "0"
            if g.get("occluded") is True:
                ET.SubElement(obj, "occluded").text = "1"
            box = ET.SubElement(obj, "bndbox")
            for tag, value in (
                ("xmin", x * w + 1),
                ("ymin", y * h + 1),
                ("xmax", (x + bw) * w),
                ("ymax", (y + bh) * h),
            ):
                ET.SubElement(box, tag).text = num(value, DIGITS)
            try:
                convert_object(obj, w, h)
            except IngestError:
                rendered.dropped[INVALID] += 1
                continue
            root.append(obj)
            rendered.annotations += 1
        ET.indent(root)
        return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"
