"""Generated detection data: coloured shapes on textured backgrounds, written as a COCO dataset
(boxes, polygons, an optional crowd region) and imported into a detection or instance
segmentation project with a seeded split.

Each image holds 1–3 objects of the classes ``CLASSES``: a red rectangle, a green ellipse, a blue
triangle, each with its exact polygon (the ellipse as a 24-gon) and its box. Backgrounds are
low-contrast noise with stripes, so that a detector has to learn the shapes and not a flat colour.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from factories import run_import
from vistudio.services import projects, splits
from vistudio.studio import Studio

CLASSES = ("rectangle", "ellipse", "triangle")
COLOURS = {"rectangle": (220, 40, 40), "ellipse": (40, 200, 60), "triangle": (50, 80, 230)}


def _polygon(kind: str, x: float, y: float, w: float, h: float) -> list[tuple[float, float]]:
    if kind == "rectangle":
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    if kind == "triangle":
        return [(x + w / 2, y), (x + w, y + h), (x, y + h)]
    cx, cy = x + w / 2, y + h / 2
    return [
        (cx + w / 2 * math.cos(2 * math.pi * i / 24), cy + h / 2 * math.sin(2 * math.pi * i / 24))
        for i in range(24)
    ]


def make_shapes(
    n: int, *, size: int = 96, seed: int = 0, max_objects: int = 3
) -> list[tuple[Image.Image, list[dict[str, Any]]]]:
    """``n`` images ``size``×``size`` with their objects: ``{"class", "bbox" [x, y, w, h] px,
    "polygon" [(x, y), ...] px}``. Objects do not overlap much (each takes its own cell)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        noise = rng.integers(90, 150, (size, size, 1), dtype=np.uint8).repeat(3, axis=2)
        stripes = ((np.arange(size) // rng.integers(4, 12)) % 2 * 20).astype(np.uint8)
        bg = np.clip(noise.astype(np.int16) + stripes[None, :, None], 0, 255).astype(np.uint8)
        img = Image.fromarray(bg)
        draw = ImageDraw.Draw(img)
        cells = rng.permutation(4)[: int(rng.integers(1, max_objects + 1))]
        objects = []
        half = size / 2
        for cell in cells:
            kind = CLASSES[int(rng.integers(0, len(CLASSES)))]
            w = float(rng.uniform(0.45, 0.9) * half)
            h = float(rng.uniform(0.45, 0.9) * half)
            x = float((cell % 2) * half + rng.uniform(0, half - w))
            y = float((cell // 2) * half + rng.uniform(0, half - h))
            poly = _polygon(kind, x, y, w, h)
            draw.polygon(poly, fill=COLOURS[kind])
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            bbox = [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)]
            objects.append({"class": kind, "bbox": bbox, "polygon": poly})
        out.append((img, objects))
    return out


def write_coco(
    root: Path, n: int, *, size: int = 96, seed: int = 0, masks: bool = True, crowd: bool = False
) -> Path:
    """A COCO folder (``images/`` + ``annotations.json``) of :func:`make_shapes`; returns ``root``.

    ``crowd``: the first image gets an extra ``iscrowd`` box over its top-left quarter."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (img, objects) in enumerate(make_shapes(n, size=size, seed=seed), start=1):
        name = f"img{i:05d}.png"
        img.save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": size, "height": size})
        for obj in objects:
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": i,
                "category_id": CLASSES.index(obj["class"]) + 1,
                "bbox": [round(v, 3) for v in obj["bbox"]],
                "area": obj["bbox"][2] * obj["bbox"][3],
                "iscrowd": 0,
            }
            if masks:
                ann["segmentation"] = [[round(c, 3) for p in obj["polygon"] for c in p]]
            annotations.append(ann)
        if crowd and i == 1:
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 1,
                    "bbox": [0, 0, size / 2, size / 2],
                    "area": size * size / 4,
                    "iscrowd": 1,
                }
            )
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def shapes_project(
    studio: Studio,
    root: Path,
    name: str = "shapes",
    *,
    task: str = "detection",
    n: int = 60,
    size: int = 96,
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> str:
    """A detection (boxes) or instance segmentation (polygons) project of ``n`` generated images,
    imported from COCO, with a seeded split ``s1``."""
    projects.create_project(studio, name=name, task=task)
    src = write_coco(root / f"{name}-coco", n, size=size, seed=seed, masks=task == "instance_segmentation")
    job = run_import(studio, name, src, fmt="coco")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=ratios, seed=7)
    return name
