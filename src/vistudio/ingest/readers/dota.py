"""DOTA reader: ``images/`` + ``labelTxt/``, one text file of rotated boxes per image, in pixels.

Layout: an image at ``…/images/<path>`` has its labels at ``…/labelTxt/<path>.txt`` (the last
``images`` folder of its path swapped for ``labelTxt``), so both a flat ``images/`` +
``labelTxt/`` and DOTA's own ``train/``, ``val/`` folders (each with ``images/`` and
``labelTxt/``) read from their common root. The source needs at least one ``labelTxt`` folder;
an image without a label file has no objects (DOTA's test images). Images outside any
``images`` folder, files in ``labelTxt`` that are not ``.txt``, and label files without an image
are reported, not read.

One object per line: ``x1 y1 x2 y2 x3 y3 x4 y4 class difficult`` — the four corners in pixels
of the image, in order (DOTA lists them clockwise from the top-left of the object), the class
name (no spaces), and ``difficult`` 0 or 1 (the field may be left out: 0). The ``imagesource:…``
and ``gsd:…`` header lines of DOTA v1 are skipped. Each object becomes a ``rotated_box`` whose
``points`` are the corners divided by the image's size (the header of the image file says it,
after EXIF orientation); ``difficult: 1`` is kept as ``"difficult": True`` in the geometry, as
the VOC reader keeps it. A corner may lie up to ``EDGE_TOLERANCE`` pixels outside the image (it
is then clipped); further out, non-numeric or non-finite coordinates, a wrong number of fields,
and a quadrilateral whose edges cross are refused line by line with the reason; the image keeps
its valid objects. Label paths are resolved inside the source: a symlink leaving it is refused.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path, PurePosixPath

from vistudio.ingest.geometry import ring_problem
from vistudio.ingest.readers._common import Collector, displayed_size, short
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import is_image_name, resolve_inside, walk_images
from vistudio.ingest.types import Annotation, IngestError, ItemError, ParsedSource, SourceError

IMAGES_DIR = "images"
LABELS_DIR = "labelTxt"
# A DOTA label file lists at most a few thousand objects; anything this big is not one.
MAX_LABEL_BYTES = 10 * 2**20
MAX_OBJECTS = 100_000
# Pixels a corner may lie outside the image before the line is refused rather than clipped.
EDGE_TOLERANCE = 1.0
_HEADER = re.compile(r"^[A-Za-z_]+:\S*$")  # imagesource:GoogleEarth, gsd:0.146, gsd:null


def label_path_for(image: str) -> str:
    """The label file of the image at root-relative posix path ``image``: the last ``images``
    folder swapped for ``labelTxt``, the suffix for ``.txt``; ``""`` when no folder is ``images``."""
    parts = list(PurePosixPath(image).parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == IMAGES_DIR:
            parts[i] = LABELS_DIR
            return PurePosixPath(*parts).with_suffix(".txt").as_posix()
    return ""


def parse_dota_labels(
    text: str, *, width: float, height: float, source: str = "labels"
) -> tuple[list[Annotation], list[ItemError]]:
    """Parse the text of one DOTA label file for an image of ``width`` × ``height`` pixels; bad
    lines become ``ItemError`` ``source:line`` (see the module docstring)."""
    annotations: list[Annotation] = []
    errors: list[ItemError] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _HEADER.match(stripped):
            continue
        if len(annotations) >= MAX_OBJECTS:
            errors.append(
                ItemError(f"{source}:{lineno}", f"more than {MAX_OBJECTS} objects; the rest is ignored")
            )
            break
        try:
            annotations.append(_parse_line(stripped.split(), width, height))
        except IngestError as exc:
            errors.append(ItemError(f"{source}:{lineno}", exc.reason))
    return annotations, errors


def _parse_line(tokens: list[str], width: float, height: float) -> Annotation:
    if len(tokens) not in (9, 10):
        raise IngestError(
            "expected 8 coordinates, a class name and a difficulty "
            f"(x1 y1 x2 y2 x3 y3 x4 y4 class difficult), got {len(tokens)} fields"
        )
    coords: list[float] = []
    for index, token in enumerate(tokens[:8], start=1):
        try:
            value = float(token)
        except ValueError:
            raise IngestError(
                f"coordinate {index} is not a number: {short(token, 40)!r} "
                "(a line is x1 y1 x2 y2 x3 y3 x4 y4 class difficult)"
            ) from None
        if not math.isfinite(value):
            raise IngestError(f"not a finite number: {short(token, 40)!r}")
        coords.append(value)
    name = tokens[8]
    try:
        float(name)
    except ValueError:
        pass
    else:  # "… 12 0" where the class should be: a line with a coordinate too many
        raise IngestError(
            f"the class name is a number ({short(name, 40)!r}): is a coordinate missing or extra?"
        )
    difficult = tokens[9] if len(tokens) == 10 else "0"
    if difficult not in ("0", "1"):
        raise IngestError(f"difficult must be 0 or 1, got {short(difficult, 40)!r}")
    points = [[coords[i], coords[i + 1]] for i in range(0, 8, 2)]
    for x, y in points:
        if not (
            -EDGE_TOLERANCE <= x <= width + EDGE_TOLERANCE and -EDGE_TOLERANCE <= y <= height + EDGE_TOLERANCE
        ):
            raise IngestError(f"corner ({x:g}, {y:g}) lies outside the {width:g}x{height:g} image")
    problem = ring_problem(points)
    if problem:
        raise IngestError(problem)
    normalised = [[min(1.0, max(0.0, x / width)), min(1.0, max(0.0, y / height))] for x, y in points]
    if ring_problem(normalised):  # clipping to the border folded it (a corner far past an edge)
        raise IngestError("the quadrilateral degenerates when clipped to the image")
    geometry: dict[str, object] = {"points": normalised}
    if difficult == "1":
        geometry["difficult"] = True
    return Annotation(kind="rotated_box", class_name=name, geometry=geometry)


@register_reader("dota")
def read_dota(path: Path) -> ParsedSource:
    """Read a DOTA folder (``images/`` + ``labelTxt/``, or split folders holding both)."""
    if not path.is_dir():
        raise SourceError(f"not a folder: {path}")
    out = Collector("dota", path)
    label_dirs = _label_dirs(out.root)
    if not label_dirs:
        raise SourceError(f"no {LABELS_DIR}/ folder: a DOTA source holds {IMAGES_DIR}/ and {LABELS_DIR}/")
    images, errors = walk_images(out.root)
    out.parsed.errors.extend(errors)
    used: set[str] = set()
    for image in images:
        name = out.name(image)
        label_rel = label_path_for(name)
        if not label_rel:
            out.error(name, f"not inside an {IMAGES_DIR}/ folder: not read")
            continue
        try:
            width, height = displayed_size(image)
        except Exception as exc:
            out.error(name, f"cannot read image size: {short(str(exc))}")
            continue
        item = out.add(image)
        if item is None:
            continue
        used.add(label_rel)
        try:
            label_path = resolve_inside(out.root, label_rel)
        except IngestError as exc:
            out.error(label_rel, exc.reason)
            continue
        if not label_path.is_file():
            continue
        text = _read_label(out, label_path, label_rel)
        if text is None:
            continue
        anns, errs = parse_dota_labels(text, width=width, height=height, source=label_rel)
        item.annotations.extend(anns)
        out.parsed.errors.extend(errs)
    _report_unknown(out, label_dirs, used)
    out.parsed.classes = sorted(
        {a.class_name for i in out.parsed.items for a in i.annotations if a.class_name}
    )
    return out.parsed


def _read_label(out: Collector, label_path: Path, label_rel: str) -> str | None:
    try:
        with label_path.open("rb") as fh:
            data = fh.read(MAX_LABEL_BYTES + 1)  # never more than the limit, whatever stat says
    except OSError as exc:
        out.error(label_rel, f"cannot read label file: {exc.strerror or exc}")
        return None
    if len(data) > MAX_LABEL_BYTES:
        out.error(label_rel, f"label file larger than {MAX_LABEL_BYTES // 2**20} MiB")
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        out.error(label_rel, "label file is not UTF-8 text")
        return None


def _label_dirs(root: Path) -> list[Path]:
    """Every ``labelTxt`` folder under ``root`` (symlinked folders are not followed)."""
    found: list[Path] = []
    for folder, dirnames, _ in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if Path(folder).name == LABELS_DIR:
            found.append(Path(folder))
    return found


def _report_unknown(out: Collector, label_dirs: list[Path], used: set[str]) -> None:
    """Report what a ``labelTxt`` folder holds that no image reads: other files, orphan labels."""
    for base in label_dirs:
        for folder, dirnames, filenames in os.walk(base):  # does not follow symlinked folders
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for filename in sorted(filenames):
                if filename.startswith("."):
                    continue
                rel = out.name(Path(folder) / filename)
                if rel in used:
                    continue
                if not filename.lower().endswith(".txt"):
                    if not is_image_name(filename):
                        out.error(rel, "not a DOTA label file (.txt): ignored")
                    continue
                out.error(rel, "label file has no matching image")
