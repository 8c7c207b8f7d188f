"""Semantic segmentation datasets for the tests: ``images/`` + ``masks/`` (label PNGs) + a class map.

Each label image holds a sky band, a road band and a few shapes of other classes, with a 255
(ignored) border around the shapes as Pascal VOC draws it; the picture is painted from its labels
(a muted colour per class and some noise), so what the pages draw over it can be checked by eye.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

IGNORE = 255


def scene_labels(width: int, height: int, *, seed: int, n_classes: int, ignore: bool = True) -> np.ndarray:
    """``(height, width)`` uint8 values 0..n_classes-1 (0 background, 1 a band along the bottom,
    the others shapes), plus 255 borders around the shapes when ``ignore``."""
    rng = np.random.default_rng(seed)
    im = Image.new("L", (width, height), 0)
    d = ImageDraw.Draw(im)
    if n_classes > 1:
        d.rectangle((0, int(height * 0.7), width, height), fill=1)
    for value in range(2, n_classes):
        w = int(rng.integers(max(4, width // 10), max(5, width // 4)))
        h = int(rng.integers(max(4, height // 10), max(5, height // 4)))
        x = int(rng.integers(0, max(1, width - w)))
        y = int(rng.integers(0, max(1, height - h)))
        box = (x, y, x + w, y + h)
        shape = d.ellipse if value % 2 else d.rectangle
        if ignore:
            shape(box, fill=value, outline=IGNORE, width=2)
        else:
            shape(box, fill=value)
    return np.asarray(im, dtype=np.uint8).copy()


def paint(labels: np.ndarray, *, seed: int) -> Image.Image:
    """A picture of ``labels``: one muted colour per value, some noise (every file distinct)."""
    rng = np.random.default_rng(seed)
    table = rng.integers(60, 200, size=(256, 3), dtype=np.int16)
    table[0] = (205, 215, 225)
    table[1] = (95, 95, 100)
    table[IGNORE] = (30, 30, 30)
    rgb = table[labels] + rng.integers(-12, 13, size=(*labels.shape, 3), dtype=np.int16)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def write_masks_dataset(
    root: Path,
    *,
    count: int,
    classes: list[str],
    size: tuple[int, int] = (160, 120),
    seed: int = 0,
    unlabelled: int = 0,
    labelmap: bool = False,
) -> tuple[Path, dict[str, np.ndarray]]:
    """``count`` images with masks (value = index in ``classes``) and ``unlabelled`` images without;
    the class map as ``classes.json`` (value → name) or ``labelmap.txt``. Returns the root and
    each image's labels by root-relative image name."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    width, height = size
    labels: dict[str, np.ndarray] = {}
    for i in range(count):
        lab = scene_labels(width, height, seed=seed + i, n_classes=len(classes))
        paint(lab, seed=seed + i).save(root / "images" / f"scene_{i:03d}.jpg", quality=92)
        Image.fromarray(lab, "L").save(root / "masks" / f"scene_{i:03d}.png")
        labels[f"images/scene_{i:03d}.jpg"] = lab
    for j in range(unlabelled):
        lab = scene_labels(width, height, seed=seed + 1000 + j, n_classes=len(classes))
        paint(lab, seed=seed + 1000 + j).save(root / "images" / f"unlabelled_{j:03d}.jpg", quality=92)
    if labelmap:
        (root / "labelmap.txt").write_text("".join(f"{name}\n" for name in classes))
    else:
        (root / "classes.json").write_text(json.dumps({str(v): name for v, name in enumerate(classes)}))
    return root, labels


def decode_labels(
    annotations: list[dict[str, object]], classes: list[str], shape: tuple[int, int]
) -> np.ndarray:
    """The label image back from a sample's stored annotations (``{"kind", "class", "geometry"}``):
    each class's mask gets its value, the class-less crowd mask 255. Asserts that every pixel is
    covered exactly once."""
    from pycocotools import mask as mask_utils

    out = np.zeros(shape, np.uint8)
    cover = np.zeros(shape, np.int32)
    for a in annotations:
        geometry = a["geometry"]
        assert a["kind"] == "mask_rle" and isinstance(geometry, dict)
        m = mask_utils.decode({"size": geometry["size"], "counts": str(geometry["counts"]).encode()}).astype(
            bool
        )
        if a["class"] is None:
            assert geometry.get("iscrowd") is True
            out[m] = IGNORE
        else:
            out[m] = classes.index(str(a["class"]))
        cover += m
    assert (cover == 1).all(), "regions overlap or leave pixels uncovered"
    return out
