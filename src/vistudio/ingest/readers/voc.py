"""Pascal VOC reader: one XML file per image (``<annotation>`` with ``<filename>``, ``<size>``, ``<object>``s).

Layouts: the standard VOC folder (``Annotations/*.xml`` + ``JPEGImages/``), XML files beside
their images anywhere under one folder, or a single ``.xml`` file. Only images named by an XML
are imported (an image without one is not known to be free of objects). ``ImageSets/`` is
ignored: every annotation file is read.

The image is ``<filename>`` resolved inside the source only (``..``, absolute paths and
symlinks leaving the source are refused), looked up in ``JPEGImages/``, then next to the XML,
then in the source root; when it names no file there, the XML's own stem with an image
extension (``000001.xml`` → ``000001.jpg``) is tried in the same places.

Each ``<object>`` becomes a ``box`` of class ``<name>``. VOC ``<bndbox>`` coordinates are
1-based and inclusive (pixel columns ``xmin..xmax``), so in the continuous 0-based pixel space
of ``ingest.types`` the box spans ``[xmin - 1, xmax]`` × ``[ymin - 1, ymax]``; that is divided
by the image size (``<size>``, or the image header when ``<size>`` is missing or zero) and stored
as ``{"x", "y", "w", "h"}`` like the COCO reader's boxes. A box may overshoot the image by at
most one pixel (the usual 0-based/1-based slip: ``xmin`` 0, ``xmax`` width + 1) and is then
clipped to it; a box reaching further out, an empty box (``xmax <= xmin``), and negative,
non-numeric or non-finite coordinates are refused with a reason. ``difficult``, ``truncated``
and ``occluded`` set to 1 are kept as ``True`` in the box geometry (as COCO's ``iscrowd``), so
that training and evaluation can ignore difficult objects.

XML is parsed with ``defusedxml`` with DTDs forbidden: entity expansion ("billion laughs") and
external entities are refused, never resolved. Files over ``MAX_XML_BYTES`` and images with more
than ``MAX_OBJECTS`` objects are refused. A bad file or object is reported; the rest imports.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

import defusedxml.ElementTree as DefusedET
from defusedxml import DefusedXmlException

from vistudio.ingest.readers._common import Collector, displayed_size, short
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import resolve_inside
from vistudio.ingest.types import Annotation, IngestError, ParsedSource, SourceError

ANNOTATIONS_DIR = "Annotations"
IMAGES_DIR = "JPEGImages"
# A VOC file for one image is a few kilobytes; even thousands of objects stay far below this.
MAX_XML_BYTES = 10 * 2**20
MAX_OBJECTS = 10_000
# Pixels a box may reach past the image border before it is refused rather than clipped.
EDGE_TOLERANCE = 1.0
FLAGS = ("difficult", "truncated", "occluded")
# Tried in this order when <filename> names no file.
FALLBACK_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif")
_COORDS = ("xmin", "ymin", "xmax", "ymax")


@register_reader("voc")
def read_voc(path: Path) -> ParsedSource:
    """Read a Pascal VOC folder (or one VOC XML file) into items with boxes."""
    if path.is_file():
        if path.suffix.lower() != ".xml":
            raise SourceError(f"not a VOC XML file or folder: {path.name}")
        parent = path.parent.resolve()
        out = Collector("voc", parent.parent if parent.name == ANNOTATIONS_DIR else parent)
        xml_files = [parent / path.name]
    elif path.is_dir():
        out = Collector("voc", path)
        xml_files = _list_xml(out)
    else:
        raise SourceError(f"source not found: {path}")
    if not xml_files:
        raise SourceError(f"no VOC annotation files (*.xml) found in {path.name or path}")
    images_dir = _images_dir(out)
    for xml_path in xml_files:
        roots = [r for r in (images_dir, xml_path.parent, out.root) if r is not None]
        _read_file(out, list(dict.fromkeys(roots)), xml_path)
    out.parsed.classes = sorted(
        {a.class_name for i in out.parsed.items for a in i.annotations if a.class_name}
    )
    return out.parsed


def _list_xml(out: Collector) -> list[Path]:
    """XML files under ``Annotations/`` when there is one, else under the whole source."""
    base = out.root
    annotations = out.root / ANNOTATIONS_DIR
    if annotations.is_dir():
        base = annotations.resolve()
        if not base.is_relative_to(out.root):
            raise SourceError(f"{ANNOTATIONS_DIR} is a symlink pointing outside the source folder")
    found: list[Path] = []
    for folder, dirnames, filenames in os.walk(base):  # does not follow symlinked folders
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            if filename.startswith(".") or not filename.lower().endswith(".xml"):
                continue
            xml_path = Path(folder) / filename
            if xml_path.is_symlink():
                real = xml_path.resolve()
                if not real.is_relative_to(out.root):
                    out.error(out.name(xml_path), "symlink points outside the source folder")
                    continue
            found.append(xml_path)
    return sorted(found)


def _images_dir(out: Collector) -> Path | None:
    images = out.root / IMAGES_DIR
    if not images.is_dir():
        return None
    # resolve_inside only keeps paths inside the root it is given: that root must itself lie
    # inside the source, or a symlinked JPEGImages/ would import files from anywhere.
    real = images.resolve()
    if real.is_relative_to(out.root):
        return real
    out.error(IMAGES_DIR, "symlinked folder points outside the source folder")
    return None


def _read_file(out: Collector, roots: list[Path], xml_path: Path) -> None:
    where = out.name(xml_path)
    try:
        doc = parse_voc_xml(xml_path)
        objects = doc.findall("object")
        if len(objects) > MAX_OBJECTS:
            raise IngestError(f"{len(objects)} objects in one image; at most {MAX_OBJECTS} are accepted")
        image = _locate(roots, doc.findtext("filename"), xml_path.stem)
        width, height = _size(doc, image)
    except IngestError as exc:
        out.error(where, exc.reason)
        return
    item = out.add(image)
    if item is None:
        return
    for index, obj in enumerate(objects):
        try:
            item.annotations.append(convert_object(obj, width, height))
        except IngestError as exc:
            out.error(f"{where} (object[{index}])", exc.reason)


def parse_voc_xml(xml_path: Path) -> Any:
    """Parse one VOC file safely; return its ``<annotation>`` element or raise ``IngestError``."""
    try:
        with xml_path.open("rb") as fh:
            data = fh.read(MAX_XML_BYTES + 1)  # never more than the limit, whatever stat says
    except OSError as exc:
        raise IngestError(f"cannot read XML file: {exc.strerror or exc}") from exc
    if len(data) > MAX_XML_BYTES:
        raise IngestError(f"XML file larger than {MAX_XML_BYTES // 2**20} MiB")
    try:
        doc = DefusedET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise IngestError(
            f"XML with a DTD, entity declarations or external references is refused ({type(exc).__name__})"
        ) from exc
    except (ParseError, ValueError) as exc:
        raise IngestError(f"malformed XML: {short(str(exc))}") from exc
    if doc.tag != "annotation":
        raise IngestError(f"not a VOC annotation: root element is <{short(str(doc.tag), 40)}>")
    return doc


def _locate(roots: list[Path], filename: str | None, stem: str) -> Path:
    text = (filename or "").strip()
    if text:
        for root in roots:
            # An escaping or absolute <filename> raises here: refused, never looked up by stem.
            candidate = resolve_inside(root, text)
            if candidate.is_file():
                return candidate
    for root in roots:
        for ext in FALLBACK_EXTENSIONS:
            for suffix in (ext, ext.upper()):
                try:
                    candidate = resolve_inside(root, stem + suffix)
                except IngestError:
                    continue
                if candidate.is_file():
                    return candidate
    named = f"{short(text, 80)!r} nor " if text else ""
    raise IngestError(f"image not found: neither {named}{short(stem, 80)} with an image extension")


def _size(doc: Any, image: Path) -> tuple[float, float]:
    size = doc.find("size")
    if size is not None:
        width, height = _declared(size.findtext("width")), _declared(size.findtext("height"))
        if width is not None and height is not None:
            return width, height
    # <size> missing, zero (some exporters write 0) or garbled: the image header decides.
    try:
        width_px, height_px = displayed_size(image)
    except Exception as exc:
        raise IngestError(f"cannot read image size: {short(str(exc))}") from exc
    return float(width_px), float(height_px)


def _declared(text: str | None) -> float | None:
    try:
        value = float((text or "").strip())
    except ValueError:
        return None
    # Below one pixel a size is meaningless (and dividing by it could overflow).
    return value if math.isfinite(value) and value >= 1 else None


def _coordinate(box: Any, field: str) -> float:
    text = box.findtext(field)
    if text is None or not text.strip():
        raise IngestError(f"bndbox has no <{field}>")
    try:
        value = float(text.strip())
    except ValueError:
        raise IngestError(f"<{field}> is not a number: {short(text.strip(), 40)!r}") from None
    if not math.isfinite(value):
        raise IngestError(f"<{field}> is not a finite number: {short(text.strip(), 40)!r}")
    if value < 0:
        raise IngestError(f"<{field}> is negative: {short(text.strip(), 40)!r}")
    return value


def _flag(obj: Any, field: str) -> bool:
    text = obj.findtext(field)
    value = (text or "").strip().lower()
    if value in ("", "0", "false"):
        return False
    if value in ("1", "true"):
        return True
    raise IngestError(f"<{field}> must be 0 or 1, got {short(value, 40)!r}")


def convert_object(obj: Any, width: float, height: float) -> Annotation:
    """One VOC ``<object>`` element → a normalised ``box`` (see the module docstring)."""
    name = (obj.findtext("name") or "").strip()
    if not name:
        raise IngestError("object has no <name>")
    box = obj.find("bndbox")
    if box is None:
        raise IngestError(f"object {short(name, 40)!r} has no <bndbox>")
    xmin, ymin, xmax, ymax = (_coordinate(box, field) for field in _COORDS)
    shown = f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
    if xmax <= xmin or ymax <= ymin:
        raise IngestError(f"empty box {shown}: xmax must exceed xmin and ymax exceed ymin")
    # 1-based inclusive pixels -> 0-based continuous edges.
    left, top, right, bottom = xmin - 1, ymin - 1, xmax, ymax
    if right > width + EDGE_TOLERANCE or bottom > height + EDGE_TOLERANCE:
        raise IngestError(f"box {shown} extends beyond the {width:g}x{height:g} image")
    flags = {field: True for field in FLAGS if _flag(obj, field)}
    x0, y0 = max(0.0, left / width), max(0.0, top / height)
    x1, y1 = min(1.0, right / width), min(1.0, bottom / height)
    if x1 <= x0 or y1 <= y0:  # pragma: no cover - ruled out by the checks above; kept as a guard
        raise IngestError(f"box {shown} lies outside the image")
    geometry = {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, **flags}
    return Annotation(kind="box", class_name=name, geometry=geometry)
