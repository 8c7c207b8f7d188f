"""Source readers: turn a folder, COCO JSON, YOLO dataset, Pascal VOC XML, DOTA folder, CSV or a
folder of semantic segmentation masks (optionally zipped) into items.

Each reader is one module registered with ``@register_reader(name)``; ``read_source`` looks
the reader up by name, extracting zip files into the caller's work folder first.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

from vistudio.ingest.archive import extract_zip
from vistudio.ingest.readers import coco, csv, dota, folder, masks, voc, yolo
from vistudio.ingest.readers._registry import Reader, get_reader, known_formats, register_reader
from vistudio.ingest.types import ParsedSource, SourceError

__all__ = [
    "Reader",
    "coco",
    "csv",
    "detect_format",
    "dota",
    "folder",
    "known_formats",
    "masks",
    "read_source",
    "register_reader",
    "voc",
    "yolo",
]

# Manifests larger than this are not opened just to guess a format.
_DETECT_JSON_MAX = 512 * 2**20


def read_source(path: Path, fmt: str, *, work_dir: Path) -> ParsedSource:
    """Parse the source at ``path`` with the reader named ``fmt`` (``"auto"`` guesses it).

    A ``.zip`` file is extracted into a new folder inside ``work_dir`` (a scratch folder the
    caller owns) and read from there; if the zip holds a single top-level folder, that folder
    is the root. Members the extraction refused are listed first in ``errors``.
    Raises ``SourceError`` for a missing path, an unknown format or an unusable source.
    """
    if not path.exists():
        raise SourceError(f"source not found: {path}")
    if fmt == "auto":
        fmt = detect_format(path)
    reader = get_reader(fmt)
    if reader is None:
        raise SourceError(f"unknown format {fmt!r}; known formats: {', '.join(known_formats())}")
    if not (path.is_file() and path.suffix.lower() == ".zip"):
        return reader(path)
    work_dir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix=f"{path.stem[:40]}-", dir=work_dir))
    zip_errors = extract_zip(path, dest)
    root = _single_top_folder(dest)
    parsed = reader(root)
    parsed.errors[:0] = zip_errors
    return parsed


def _single_top_folder(dest: Path) -> Path:
    entries = [p for p in dest.iterdir() if not p.name.startswith(".")]
    if len(entries) == 1 and entries[0].is_dir() and not entries[0].is_symlink():
        return entries[0]
    return dest


def detect_format(path: Path) -> str:
    """Best-effort guess of a source's format: ``coco``, ``yolo``, ``voc``, ``dota``, ``masks``,
    ``csv`` or ``folder``.

    COCO: a ``.json`` with an ``images`` key (or a folder with one). YOLO: a ``data.yaml`` /
    ``dataset.yaml``, or ``images/`` + ``labels/`` folders. VOC: a ``.xml`` file, a folder with
    ``Annotations/``, or one whose first ``.xml`` is an ``<annotation>``. DOTA: a ``labelTxt/``
    folder, at the top or one level down (DOTA's ``train/``, ``val/``). Masks: ``images/`` and
    ``masks/`` folders side by side (a ``classes.json`` there is the class map, not a COCO file).
    CSV: a ``.csv`` file. Zip files are judged by their member names (a single ``.json`` inside a
    zip counts as COCO, ``.xml`` files as VOC, a ``labelTxt/`` folder as DOTA, ``images/`` beside
    ``masks/`` as masks).
    """
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".zip":
            return _detect_zip(path)
        if path.name in masks.MAP_NAMES and _has_masks_layout(path.parent):
            return "masks"
        if suffix == ".json":
            return "coco" if _json_has_images(path) else "folder"
        if suffix == ".csv":
            return "csv"
        if suffix == ".xml":
            return "voc"
        if path.name.lower() in yolo.YAML_NAMES:
            return "yolo"
        return "folder"
    if not path.is_dir():
        return "folder"
    if any((path / n).is_file() for n in yolo.YAML_NAMES):
        return "yolo"
    layout = _has_masks_layout(path)
    jsons = [p for p in path.glob("*.json") if not p.name.startswith(".")]
    if (
        len(jsons) == 1
        and not (layout and jsons[0].name == masks.CLASSES_JSON)
        and _json_has_images(jsons[0])
    ):
        return "coco"
    if layout:
        return "masks"
    if (path / voc.ANNOTATIONS_DIR).is_dir() or _first_xml_is_voc(path):
        return "voc"
    if _has_dota_labels(path):
        return "dota"
    if (path / "images").is_dir() and (path / "labels").is_dir():
        return "yolo"
    if any(not p.name.startswith(".") for p in path.glob("*.csv")):
        return "csv"
    return "folder"


def _has_masks_layout(folder: Path) -> bool:
    return (folder / masks.IMAGES_DIR).is_dir() and (folder / masks.MASKS_DIR).is_dir()


def _json_has_images(path: Path) -> bool:
    try:
        if path.stat().st_size > _DETECT_JSON_MAX:
            return True  # a manifest this big is a COCO file; the reader will judge it properly
        doc = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(doc, dict) and "images" in doc


def _has_dota_labels(folder: Path) -> bool:
    """Whether ``folder`` or one of its sub-folders holds a DOTA ``labelTxt/`` folder."""
    if (folder / dota.LABELS_DIR).is_dir():
        return True
    try:
        with os.scandir(folder) as entries:  # d_type: no stat per entry of a large photo folder
            subdirs = [e.path for e in entries if not e.name.startswith(".") and e.is_dir()]
    except OSError:
        return False
    return any((Path(p) / dota.LABELS_DIR).is_dir() for p in subdirs)


def _first_xml_is_voc(folder: Path) -> bool:
    """Whether the first ``*.xml`` in ``folder`` opens with a VOC ``<annotation>`` element."""
    xmls = sorted(p for p in folder.glob("*.xml") if not p.name.startswith("."))
    if not xmls:
        return False
    try:
        with xmls[0].open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b"<annotation" in head


def _detect_zip(path: Path) -> str:
    try:
        with zipfile.ZipFile(path) as archive:
            names = [PurePosixPath(n.replace("\\", "/")) for n in archive.namelist()]
    except (zipfile.BadZipFile, OSError, ValueError):
        return "folder"  # read_source will report the bad zip
    names = [n for n in names if n.parts and n.parts[0] != "__MACOSX" and not n.name.startswith(".")]
    lowered = {n.name.lower() for n in names}
    if lowered & set(yolo.YAML_NAMES):
        return "yolo"
    if any(n.suffix.lower() == ".xml" and voc.ANNOTATIONS_DIR in n.parts for n in names):
        return "voc"
    folders = {part for n in names for part in n.parts[:-1]}
    if masks.IMAGES_DIR in folders and masks.MASKS_DIR in folders:
        return "masks"  # before COCO: its classes.json is a class map
    if any(n.suffix.lower() == ".json" for n in names):
        return "coco"
    if any(n.suffix.lower() == ".xml" for n in names):
        return "voc"
    if any(dota.LABELS_DIR in n.parts[:-1] for n in names):
        return "dota"
    if any("labels" in n.parts for n in names) and any("images" in n.parts for n in names):
        return "yolo"
    if any(n.suffix.lower() == ".csv" for n in names):
        return "csv"
    return "folder"
