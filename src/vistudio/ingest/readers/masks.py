"""Semantic segmentation masks reader: ``images/`` + ``masks/`` (label PNGs) + a class map.

Layout (format name ``masks``; ``vistudio import`` guesses it from an ``images/`` and a ``masks/``
folder side by side)::

    <root>/images/<path>/<stem>.<any image extension>
    <root>/masks/<path>/<stem>.png           one label image per image, same relative path and stem
    <root>/classes.json  or  <root>/labelmap.txt

The source is that folder (or a ``.zip`` of it, or its class map file). Sub-folders are allowed on
both sides; hidden files are skipped; every path is resolved inside the source (``..`` and
symlinks leaving it are refused, item by item, with the reason).

**Class map** (exactly one of the two files; both, or neither, is refused as ambiguous / missing):

- ``classes.json``: either ``{"0": "background", "1": "road", …}`` (pixel value → class name; the
  keys are whole numbers written as text) or ``{"background": 0, "road": 1, …}`` (class name →
  pixel value). Values run 0..254, gaps allowed; two values may not name one class.
- ``labelmap.txt`` (CVAT's and Datumaro's "Segmentation mask" export): one class per line, the
  line's index among the class lines is its pixel value; blank lines and ``#`` comments are
  skipped. A line is ``name`` or ``name:r,g,b:parts:actions`` (CVAT) — the text before the first
  ``:`` is the name, the colour (when given on every line) lets colour masks be read.

The classes are the map's names in value order, every one of them (a class absent from all masks
is still a class of the project). A value the map names ``background`` is the class
``background`` like any other; the models add their own implicit background.

**Masks** are PNG (lossless: JPEG would blur label values). A palette PNG (mode ``P``: Pascal VOC's
``SegmentationClass``) is read as its palette indices, not its colours; an 8-bit grey PNG (``L``)
as its grey values; a 1-bit PNG as 0 and 1. A colour PNG (``RGB``) is read only with a colour
map (``labelmap.txt`` with ``r,g,b`` on every line): each colour is looked up there. Anything else
— 16-bit grey, a colour mask without a colour map, an alpha channel (``RGBA``, ``LA``, ``PA``) — is
refused for that image with the reason.

Each mask is checked before its image is accepted: a decodable PNG (truncated or corrupt → its
reason), within Pillow's decompression-bomb pixel limit (checked on the header, before decoding),
the size of its image **as the product stores it** (width and height after EXIF orientation, as
``probe`` records them: a label image carries no EXIF of its own, so it is taken to be drawn on
the image as displayed; a mask matching the un-rotated pixel array of a photo turned by its EXIF
orientation is refused with that explanation), and every pixel value in the map or 255.

**What a mask becomes** (``ingest.types``): one ``mask_rle`` annotation per class present, geometry
``{"size": [h, w], "counts": "<COCO compressed RLE>"}`` in the image's pixels (pycocotools'
column-major runs and string compression, made with faster-coco-eval), ordered by value. The value
255 — and only it — is the *ignore* region: one ``mask_rle`` with no class and ``"iscrowd": True``
(training leaves those pixels out). The runs of every class come from one pass over the mask
(where the value changes, in column-major order), never a loop over pixels or over classes × pixels.

**Per item** — a bad mask, or an ambiguous pairing, refuses its image with the reason (the image is
not imported unlabelled: a re-import after the fix would skip it as already present and never
add its labels); the rest of the source imports:

- an image without a mask is imported without annotations (unlabelled; the import report counts
  those as ``unlabelled``);
- a mask without an image is reported;
- two images with one stem (``a.jpg`` and ``a.png``) and a mask ``a.png`` are both refused: the
  mask cannot say which it labels (without a mask both import, unlabelled);
- an image file in ``masks/`` that is not a PNG (``a.jpg``), a symlink leaving the source or a
  broken one refuses the image it would label (or is reported alone when there is none); other
  files there are not looked at;
- two masks for one image (``a.png`` and ``a.PNG``) refuse it;
- an empty ``masks/`` is reported once and the images import unlabelled.

Masks are read one after the other while the source is read (before the import's parallel
probing); each costs one decode, one ``bincount`` and one pass over its pixels, about 0.1 s for a
2-megapixel mask.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from vistudio.ingest.readers._common import Collector, exif_orientation, short
from vistudio.ingest.readers._registry import register_reader
from vistudio.ingest.safepath import is_image_name, resolve_inside, walk_images
from vistudio.ingest.types import Annotation, IngestError, ItemError, ParsedSource, SourceError

FORMAT = "masks"
IMAGES_DIR = "images"
MASKS_DIR = "masks"
CLASSES_JSON = "classes.json"
LABELMAP_TXT = "labelmap.txt"
MAP_NAMES = (CLASSES_JSON, LABELMAP_TXT)
IGNORE_VALUE = 255
MAX_VALUE = 254  # the highest class value: 255 is the ignore value
MAX_MAP_BYTES = 1 * 2**20  # a class map is a few lines; anything bigger is not one
MAX_NAME = 200  # characters of a class name (the annotation editor's limit)
MASK_SUFFIX = ".png"
_NUMBER = re.compile(r"^\s*\d{1,4}\s*$")
_MODES = {"P": "palette", "L": "8-bit grey", "1": "1-bit"}


@dataclass(frozen=True)
class ClassMap:
    """Pixel value → class name (values 0..254), and colour → value when the map gives colours."""

    names: dict[int, str]
    colours: dict[tuple[int, int, int], int] | None = None
    source: str = CLASSES_JSON

    @property
    def classes(self) -> list[str]:
        """The class names in value order."""
        return [self.names[v] for v in sorted(self.names)]


# --- the class map -------------------------------------------------------------------------------


def parse_classes_json(text: str) -> ClassMap:
    """``classes.json`` text → ``ClassMap``; raises ``SourceError`` with what is wrong."""
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise SourceError(f"malformed JSON in {CLASSES_JSON}: {short(str(exc))}") from exc
    if not isinstance(doc, dict) or not doc:
        raise SourceError(
            f'{CLASSES_JSON} must be a non-empty object: {{"0": "background", "1": "road"}} '
            '(value → name) or {"background": 0, "road": 1} (name → value)'
        )
    pairs: list[tuple[Any, Any]]
    if all(isinstance(v, str) for v in doc.values()):
        bad = next((k for k in doc if not _NUMBER.match(k)), None)
        if bad is not None:
            raise SourceError(
                f"{CLASSES_JSON}: in a value → name map every key is a pixel value (0..{MAX_VALUE}); "
                f"{short(bad, 40)!r} is not"
            )
        pairs = [(int(k), v) for k, v in doc.items()]
    elif all(isinstance(v, int) and not isinstance(v, bool) for v in doc.values()):
        pairs = [(v, k) for k, v in doc.items()]
    else:
        raise SourceError(
            f'{CLASSES_JSON} must map values to names ({{"1": "road"}}) or names to values '
            '({"road": 1}), not a mix of both or other types'
        )
    return _class_map(pairs, source=CLASSES_JSON)


def parse_labelmap(text: str) -> ClassMap:
    """``labelmap.txt`` text (one class per line; CVAT's ``name:r,g,b:parts:actions`` lines too)
    → ``ClassMap``; raises ``SourceError`` with what is wrong."""
    pairs: list[tuple[Any, Any]] = []
    colours: list[tuple[int, int, int] | None] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        name, _, rest = stripped.partition(":")
        pairs.append((len(pairs), name))
        colour_text = rest.split(":", 1)[0].strip()
        if not colour_text:
            colours.append(None)
            continue
        parts = colour_text.split(",")
        try:
            rgb = tuple(int(p) for p in parts)
        except ValueError:
            rgb = ()
        if len(rgb) != 3 or not all(0 <= c <= 255 for c in rgb):
            raise SourceError(
                f"{LABELMAP_TXT}:{lineno}: colour {short(colour_text, 40)!r} is not r,g,b (0..255 each)"
            )
        colours.append((rgb[0], rgb[1], rgb[2]))
    if not pairs:
        raise SourceError(f"{LABELMAP_TXT} lists no class")
    cmap = _class_map(pairs, source=LABELMAP_TXT)
    if all(c is not None for c in colours):
        by_colour: dict[tuple[int, int, int], int] = {}
        for value, colour in enumerate(colours):
            assert colour is not None
            if colour in by_colour:
                raise SourceError(
                    f"{LABELMAP_TXT}: classes {cmap.names[by_colour[colour]]!r} and {cmap.names[value]!r} "
                    f"have the same colour {colour}"
                )
            by_colour[colour] = value
        return ClassMap(cmap.names, by_colour, LABELMAP_TXT)
    return cmap


def _class_map(pairs: list[tuple[Any, Any]], *, source: str) -> ClassMap:
    names: dict[int, str] = {}
    owner: dict[str, int] = {}
    for value, raw in pairs:
        if value == IGNORE_VALUE:
            raise SourceError(
                f"{source}: value {IGNORE_VALUE} is the ignore value (pixels left out of training); "
                "it cannot name a class"
            )
        if not 0 <= value <= MAX_VALUE:
            raise SourceError(f"{source}: pixel value {value} is outside 0..{MAX_VALUE}")
        name = str(raw).strip()
        if not name:
            raise SourceError(f"{source}: value {value} has an empty class name")
        if len(name) > MAX_NAME:
            raise SourceError(
                f"{source}: the class name of value {value} is longer than {MAX_NAME} characters"
            )
        if value in names:
            raise SourceError(f"{source}: value {value} is listed twice")
        if name in owner:
            raise SourceError(
                f"{source}: class {short(name, 60)!r} is named by values {owner[name]} and {value}"
            )
        names[value] = name
        owner[name] = value
    return ClassMap(names, None, source)


def load_class_map(root: Path) -> ClassMap:
    """The class map of the source at ``root`` (see the module docstring)."""
    found = [n for n in MAP_NAMES if (root / n).exists() or (root / n).is_symlink()]
    if not found:
        raise SourceError(
            f"a masks source needs a class map: {CLASSES_JSON} "
            '({"0": "background", "1": "road"}) or labelmap.txt (one class name per line) '
            "next to images/ and masks/"
        )
    if len(found) > 1:
        raise SourceError(f"both {CLASSES_JSON} and {LABELMAP_TXT} are present: keep the one that is right")
    name = found[0]
    try:
        path = resolve_inside(root, name)
        with path.open("rb") as fh:
            data = fh.read(MAX_MAP_BYTES + 1)
    except IngestError as exc:
        raise SourceError(f"{name}: {exc.reason}") from exc
    except OSError as exc:
        raise SourceError(f"cannot read {name}: {exc.strerror or exc}") from exc
    if len(data) > MAX_MAP_BYTES:
        raise SourceError(f"{name} is larger than {MAX_MAP_BYTES // 2**20} MiB: not a class map")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{name} is not UTF-8 text") from exc
    return parse_classes_json(text) if name == CLASSES_JSON else parse_labelmap(text)


# --- masks -> annotations ------------------------------------------------------------------------


def region_runs(labels: np.ndarray) -> dict[int, list[int]]:
    """Uncompressed COCO RLE counts of every value present in ``labels`` (``(H, W)`` uint8).

    Runs follow pycocotools: column-major order, alternating background / foreground lengths, the
    first one background (0 when the value starts the image), no trailing background run of 0.
    One pass finds where the value changes; each value's runs are then picked from those runs.
    """
    flat = np.ascontiguousarray(labels.T).ravel()
    total = flat.size
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], changes)).astype(np.int64)
    ends = np.concatenate((changes, [total])).astype(np.int64)
    run_values = flat[starts]
    out: dict[int, list[int]] = {}
    for value in np.unique(run_values):
        pick = run_values == value
        s, e = starts[pick], ends[pick]
        gaps = s - np.concatenate(([0], e[:-1]))
        counts = np.empty(2 * len(s), dtype=np.int64)
        counts[0::2] = gaps
        counts[1::2] = e - s
        tail = total - int(e[-1])
        runs = counts.tolist()
        if tail:
            runs.append(tail)
        out[int(value)] = runs
    return out


def compress_runs(runs: list[int], height: int, width: int) -> str:
    """COCO's compressed string of uncompressed RLE ``runs`` (pycocotools' ``rleToString``)."""
    from faster_coco_eval.core import mask as mask_utils

    rle: dict[str, Any] = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    counts = rle["counts"]
    return counts.decode("ascii") if isinstance(counts, bytes) else str(counts)


def label_annotations(labels: np.ndarray, cmap: ClassMap) -> list[Annotation]:
    """One ``mask_rle`` per class present in ``labels`` (``(H, W)`` uint8 values), by value, then
    the ignore region (value 255: no class, ``iscrowd``). Raises ``IngestError`` naming the values
    the map does not know."""
    h, w = labels.shape
    hist = np.bincount(labels.ravel(), minlength=256)
    present = [int(v) for v in np.flatnonzero(hist)]
    unknown = [v for v in present if v != IGNORE_VALUE and v not in cmap.names]
    if unknown:
        listed = ", ".join(f"{v} ({int(hist[v]):,} px)" for v in unknown[:12])
        more = f" and {len(unknown) - 12} more" if len(unknown) > 12 else ""
        raise IngestError(
            f"pixel values not in {cmap.source}: {listed}{more} (only {IGNORE_VALUE} may be left "
            "out of the map: it marks pixels to ignore)"
        )
    runs = region_runs(labels)
    out: list[Annotation] = []
    for value in present:
        if value == IGNORE_VALUE:
            continue
        geometry: dict[str, Any] = {"size": [h, w], "counts": compress_runs(runs[value], h, w)}
        out.append(Annotation(kind="mask_rle", class_name=cmap.names[value], geometry=geometry))
    if IGNORE_VALUE in runs:
        counts = compress_runs(runs[IGNORE_VALUE], h, w)
        out.append(Annotation(kind="mask_rle", geometry={"size": [h, w], "counts": counts, "iscrowd": True}))
    return out


def _bomb(pixels: str) -> str:
    return f"mask too large ({pixels} pixels, limit {Image.MAX_IMAGE_PIXELS}): possible decompression bomb"


def read_mask(
    path: Path, *, size: tuple[int, int], cmap: ClassMap, raw_size: tuple[int, int] | None = None
) -> np.ndarray:
    """The label values (``(H, W)`` uint8) of the mask PNG at ``path`` for an image of ``size``
    (width, height as stored); ``raw_size``: the image's un-rotated size when its EXIF orientation
    turns it (only to say so when the mask matches that instead). Raises ``IngestError``."""
    try:
        im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # warning: as an error
        found = re.search(r"(\d+) pixels", str(exc))
        raise IngestError(_bomb(found.group(1) if found else "?")) from exc
    except UnidentifiedImageError as exc:
        raise IngestError("mask is not an image (not a PNG)") from exc
    except OSError as exc:
        raise IngestError(f"cannot read mask: {short(str(exc))}") from exc
    except Exception as exc:  # Pillow plugins raise many types on damaged headers
        raise IngestError(f"truncated or corrupt PNG: {short(str(exc))}") from exc
    with im:
        if im.format != "PNG":
            raise IngestError(f"mask is a {im.format or 'non-PNG'} file, not a PNG (masks must be lossless)")
        width, height = im.size
        if Image.MAX_IMAGE_PIXELS is not None and width * height > Image.MAX_IMAGE_PIXELS:
            raise IngestError(_bomb(str(width * height)))
        if (width, height) != size:
            turned = raw_size is not None and (width, height) == raw_size
            hint = (
                " (it matches the image before its EXIF orientation turns it: draw masks on the image "
                "as displayed)"
                if turned
                else ""
            )
            raise IngestError(f"mask is {width}×{height} px but its image is {size[0]}×{size[1]}{hint}")
        mode = im.mode
        if mode not in _MODES and not (mode == "RGB" and cmap.colours is not None):
            raise IngestError(_mode_reason(mode, cmap))
        try:
            im.load()
        except Image.DecompressionBombError as exc:
            raise IngestError(_bomb(str(width * height))) from exc
        except Exception as exc:
            raise IngestError(f"truncated or corrupt PNG: {short(str(exc))}") from exc
        arr = np.asarray(im)
    if mode == "RGB":
        assert cmap.colours is not None
        return _colours_to_values(arr, cmap.colours)
    return arr.astype(np.uint8, copy=False)


def _mode_reason(mode: str, cmap: ClassMap) -> str:
    if mode in ("RGBA", "LA", "PA"):
        return f"mask has an alpha channel (mode {mode}): save it as a palette or 8-bit grey PNG"
    if mode.startswith("I;16") or mode in ("I", "F"):
        return (
            f"16-bit or wider mask (mode {mode}): label values must be 8-bit (palette or grey PNG, "
            f"values 0..{MAX_VALUE} and {IGNORE_VALUE})"
        )
    if mode == "RGB":
        return (
            "colour (RGB) mask: save masks as palette or 8-bit grey PNGs of class values, or give the "
            f"class colours in {LABELMAP_TXT} (name:r,g,b on every line)"
            + (f" instead of {cmap.source}" if cmap.source != LABELMAP_TXT else "")
        )
    return f"unsupported mask mode {mode}: use a palette or 8-bit grey PNG"


def _colours_to_values(rgb: np.ndarray, colours: dict[tuple[int, int, int], int]) -> np.ndarray:
    packed = (rgb[..., 0].astype(np.uint32) << 16) | (rgb[..., 1].astype(np.uint32) << 8) | rgb[..., 2]
    found, inverse = np.unique(packed, return_inverse=True)
    lookup = np.empty(len(found), dtype=np.uint8)
    unknown: list[str] = []
    for i, key in enumerate(found.tolist()):
        colour = (key >> 16, (key >> 8) & 255, key & 255)
        if colour in colours:
            lookup[i] = colours[colour]
        else:
            unknown.append("({}, {}, {})".format(*colour))
    if unknown:
        more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
        raise IngestError(f"colours not in {LABELMAP_TXT}: {', '.join(unknown[:8])}{more}")
    values: np.ndarray = lookup[inverse.reshape(packed.shape)]
    return values


# --- the reader ------------------------------------------------------------------------------------


Key = tuple[str, str]  # (posix folder under images/ or masks/, stem)


@register_reader(FORMAT)
def read_masks(path: Path) -> ParsedSource:
    """Read an ``images/`` + ``masks/`` + class map folder (or its class map file) into items with
    one ``mask_rle`` per class present (see the module docstring)."""
    if path.is_file():
        if path.name not in MAP_NAMES:
            raise SourceError(f"not a masks source: {path.name} (give the folder, or its {CLASSES_JSON})")
        path = path.parent
    if not path.is_dir():
        raise SourceError(f"source not found: {path}")
    out = Collector(FORMAT, path)
    images_dir = _subfolder(out, IMAGES_DIR)
    masks_dir = _subfolder(out, MASKS_DIR)
    cmap = load_class_map(out.root)
    out.parsed.classes = cmap.classes

    images, errors = walk_images(images_dir)
    out.parsed.errors.extend(ItemError(f"{IMAGES_DIR}/{e.path}", e.reason) for e in errors)
    groups: dict[Key, list[Path]] = defaultdict(list)
    for image in images:
        groups[_key(image.relative_to(images_dir))].append(image)
    masks, refused = _list_masks(out, masks_dir)
    if not masks and not refused:
        out.error(f"{MASKS_DIR}/", "no PNG masks in masks/: every image is imported without labels")

    for key, paths in groups.items():
        found = masks.pop(key, [])
        names = [out.name(p) for p in paths]
        if not found and key in refused:
            # its mask exists but cannot be read: importing the image unlabelled would lose the
            # labels for good (a re-import skips images already present)
            for e in refused.pop(key):
                for name in names:
                    out.error(name, f"{e.path}: {e.reason}")
            continue
        if not found:
            for image in paths:
                out.add(image)  # unlabelled
            continue
        if len(found) > 1:
            listed = ", ".join(out.name(m) for m in found)
            for name in names:
                out.error(name, f"several masks for one image: {listed}")
            continue
        mask = found[0]
        if len(paths) > 1:
            for name in names:
                out.error(
                    name,
                    f"images {', '.join(PurePosixPath(n).name for n in names)} share the stem {key[1]!r}: "
                    f"{out.name(mask)} cannot say which one it labels (rename one)",
                )
            continue
        _read_item(out, paths[0], mask, cmap)

    for key, found in sorted(masks.items()):
        for mask in found:
            folder = f"{IMAGES_DIR}/{key[0]}/" if key[0] else f"{IMAGES_DIR}/"
            out.error(out.name(mask), f"mask has no image (no {folder}{key[1]}.* image)")
    for problems in refused.values():
        out.parsed.errors.extend(problems)
    out.parsed.errors.sort(key=lambda e: e.path)
    return out.parsed


def _subfolder(out: Collector, name: str) -> Path:
    folder = out.root / name
    if not folder.is_dir():
        raise SourceError(
            f"a masks source needs {IMAGES_DIR}/ and {MASKS_DIR}/ folders side by side (and "
            f"{CLASSES_JSON} or {LABELMAP_TXT}); {name}/ is missing"
        )
    real = folder.resolve()
    if not real.is_relative_to(out.root):
        raise SourceError(f"{name}/ is a symlink pointing outside the source folder")
    return real


def _key(relative: Path | PurePosixPath) -> Key:
    parent = relative.parent.as_posix()
    return ("" if parent == "." else parent, relative.stem)


def _list_masks(out: Collector, masks_dir: Path) -> tuple[dict[Key, list[Path]], dict[Key, list[ItemError]]]:
    """The PNG masks under ``masks_dir`` by key, and the mask files refused (not PNG, a symlink
    leaving the source, a broken link) by the key of the image they would label."""
    files, errors = walk_images(masks_dir)
    masks: dict[Key, list[Path]] = defaultdict(list)
    refused: dict[Key, list[ItemError]] = defaultdict(list)
    for e in errors:
        where = f"{MASKS_DIR}/{e.path}"
        if is_image_name(e.path):
            refused[_key(PurePosixPath(e.path))].append(ItemError(where, e.reason))
        else:
            out.error(where, e.reason)
    for mask in files:
        relative = mask.relative_to(masks_dir)
        if relative.suffix.lower() != MASK_SUFFIX:
            reason = f"masks must be PNG files (lossless): a {relative.suffix} mask is not read"
            refused[_key(relative)].append(ItemError(out.name(mask), reason))
            continue
        masks[_key(relative)].append(mask)
    return masks, refused


def _read_item(out: Collector, image: Path, mask: Path, cmap: ClassMap) -> None:
    name = out.name(image)
    try:
        # a symlinked mask is followed only when it stays inside the source
        resolve_inside(out.root, out.name(mask))
        size, raw = _image_size(image)
        labels = read_mask(mask, size=size, cmap=cmap, raw_size=raw)
        annotations = label_annotations(labels, cmap)
    except IngestError as exc:
        out.error(name, f"{out.name(mask)}: {exc.reason}")
        return
    out.add(image, annotations)


def _image_size(image: Path) -> tuple[tuple[int, int], tuple[int, int] | None]:
    """The image's (width, height) as stored (after EXIF orientation, as ``probe`` records it) and,
    when its orientation turns it, its raw size. Only the header is read."""
    try:
        with Image.open(image) as im:
            width, height = im.size
            turned = exif_orientation(im) in (5, 6, 7, 8)
    except Image.DecompressionBombError as exc:
        raise IngestError(f"image too large: possible decompression bomb ({short(str(exc), 80)})") from exc
    except Exception as exc:  # the probe reports the same file in its own words
        raise IngestError(f"cannot read the image: {short(str(exc))}") from exc
    if width <= 0 or height <= 0:
        raise IngestError("cannot read the image: zero size")
    if turned:
        return (height, width), (width, height)
    return (width, height), None
