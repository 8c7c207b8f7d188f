"""Label maps as images: the palette PNGs a semantic segmentation evaluation saves, and the RGBA
layers the Evaluate page lays over an image.

A label map is a ``uint8`` ``(height, width)`` array of model class indices (0 the background),
255 marking ignored pixels (``ml/inference/segmentation_metrics.IGNORE_INDEX``).

- :func:`encode_label_png` / :func:`read_label_png`: the saved files — 8-bit palette PNGs whose
  pixel values *are* the class indices (any tool reads them back exactly), with a palette so
  that an image viewer shows them in colour: the background black, class ``k`` in its colour,
  ignored pixels in PASCAL VOC's "void" cream;
- :func:`class_colours`: the colour of each model class, the one the dataset pages draw the
  class's regions in (``web/static/overlay.js`` ``classIndex`` and ``colour``: the class's place
  in the *project's* class list, not in the model's, which puts ``background`` first);
- :func:`prediction_layer`, :func:`truth_layer`, :func:`error_layer`: RGBA overlays — class
  colours with the background transparent, ignored pixels hatched grey, misclassified pixels red.

A library module: NumPy and Pillow, no database.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from PIL import Image

from vistudio.ml.inference.overlays import FP_COLOUR, class_colour
from vistudio.ml.inference.segmentation_metrics import IGNORE_INDEX

RGB = tuple[int, int, int]
BACKGROUND_COLOUR: RGB = (0, 0, 0)
VOID_COLOUR: RGB = (224, 224, 192)  # PASCAL VOC's colour of ignored pixels
IGNORED_COLOUR: RGB = (148, 163, 184)  # the pages' grey of ignored regions
ERROR_COLOUR: RGB = FP_COLOUR
HATCH_PERIOD = 8  # the ignored hatching: diagonal stripes this many pixels apart…
HATCH_WIDTH = 3  # …this many pixels wide


def page_class_index(name: str, page_classes: Sequence[str]) -> int:
    """The colour index overlay.js's ``classIndex`` gives class ``name``: its place in the page's
    class list (the project's classes in their order), else a stable number past the list from
    a hash of the name (JavaScript's ``(h * 31 + charCodeAt(0)) >>> 0`` over its code points)."""
    try:
        return list(page_classes).index(name)
    except ValueError:
        pass
    h = 0
    for ch in name:
        code = ord(ch)
        if code > 0xFFFF:  # charCodeAt(0) of an astral code point is its high surrogate
            code = 0xD800 + ((code - 0x10000) >> 10)
        h = (h * 31 + code) % (1 << 32)
    return len(page_classes) + h % 97


def class_colours(classes: Sequence[str], page_classes: Sequence[str]) -> list[RGB]:
    """The RGB colour of each model class as the dataset pages draw it (see the module's
    docstring); index 0, the background, is never drawn over an image and gets black."""
    out = [class_colour(page_class_index(name, page_classes)) for name in classes]
    if out:
        out[0] = BACKGROUND_COLOUR
    return out


def label_palette(colours: Sequence[RGB]) -> list[int]:
    """A 256-entry Pillow palette (768 ints): entry ``k`` the colour of class ``k``, the
    background black, 255 VOC's void colour, the unused entries black."""
    pal = [BACKGROUND_COLOUR] * 256
    for k, c in enumerate(colours[:IGNORE_INDEX]):
        pal[k] = c
    pal[0] = BACKGROUND_COLOUR
    pal[IGNORE_INDEX] = VOID_COLOUR
    return [v for c in pal for v in c]


def encode_label_png(label: npt.NDArray[np.uint8], palette: Sequence[int]) -> bytes:
    """An 8-bit palette PNG of ``label`` (its values unchanged), with ``palette``
    (:func:`label_palette`)."""
    arr = np.ascontiguousarray(label, dtype=np.uint8)
    if arr.ndim != 2:
        raise ValueError(f"a label map is (height, width), got shape {arr.shape}")
    img = Image.frombytes("P", (arr.shape[1], arr.shape[0]), arr.tobytes())
    img.putpalette(list(palette))
    buf = io.BytesIO()
    img.save(buf, "PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def read_label_png(source: str | Path | bytes) -> npt.NDArray[np.uint8]:
    """The label values of a palette (or greyscale) PNG, as ``uint8`` ``(height, width)``."""
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as img:
        if img.mode not in ("P", "L"):
            raise ValueError(f"a label PNG is a palette or greyscale image, not {img.mode}")
        return np.array(img, dtype=np.uint8)


def shrink(label: npt.NDArray[np.uint8], max_side: int | None) -> npt.NDArray[np.uint8]:
    """``label`` with its longer side at most ``max_side`` (nearest neighbour: no made-up
    classes at the borders); unchanged when it is that small already or ``max_side`` is None."""
    h, w = label.shape
    if max_side is None or max(h, w) <= max_side:
        return label
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img = Image.frombytes("L", (w, h), np.ascontiguousarray(label, dtype=np.uint8).tobytes())
    return np.asarray(img.resize(size, Image.Resampling.NEAREST), np.uint8)


def _hatch(shape: tuple[int, ...]) -> npt.NDArray[np.bool_]:
    h, w = shape[:2]
    ys, xs = np.ogrid[:h, :w]
    return np.asarray((xs + ys) % HATCH_PERIOD < HATCH_WIDTH)


def _rgba(height: int, width: int) -> npt.NDArray[np.uint8]:
    return np.zeros((height, width, 4), np.uint8)


def prediction_layer(label: npt.NDArray[np.uint8], colours: Sequence[RGB]) -> npt.NDArray[np.uint8]:
    """RGBA ``(height, width, 4)``: each pixel of a class other than the background in the class's
    colour, opaque; the background (and any value without a colour) transparent."""
    lut = np.zeros((256, 4), np.uint8)
    for k, c in enumerate(colours[:IGNORE_INDEX]):
        if k > 0:
            lut[k] = (*c, 255)
    return lut[label]


def truth_layer(label: npt.NDArray[np.uint8], colours: Sequence[RGB]) -> npt.NDArray[np.uint8]:
    """As :func:`prediction_layer`, with the ignored pixels (255) hatched grey."""
    out = prediction_layer(label, colours)
    ignored = (label == IGNORE_INDEX) & _hatch(label.shape)
    out[ignored] = (*IGNORED_COLOUR, 255)
    return out


def error_layer(truth: npt.NDArray[np.uint8], pred: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """RGBA: the misclassified pixels (prediction ≠ ground truth, ignored pixels left out) red and
    opaque, the ignored pixels hatched grey, the correct ones transparent."""
    if truth.shape != pred.shape:
        raise ValueError(f"ground truth and prediction differ in size: {truth.shape} vs {pred.shape}")
    out = _rgba(*truth.shape)
    ignored = truth == IGNORE_INDEX
    out[(truth != pred) & ~ignored] = (*ERROR_COLOUR, 255)
    out[ignored & _hatch(truth.shape)] = (*IGNORED_COLOUR, 255)
    return out


def rgba_png(layer: npt.NDArray[np.uint8]) -> bytes:
    """PNG bytes of an RGBA ``(height, width, 4)`` layer."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(layer, dtype=np.uint8)).save(
        buf, "PNG", optimize=False, compress_level=3
    )
    return buf.getvalue()
