"""Generated oriented detection data: coloured rotated rectangles on textured backgrounds, written
as a DOTA folder (``images/`` + ``labelTxt/``) and imported into an oriented detection project
with a seeded split.

Each image holds 1–3 rectangles of the classes ``CLASSES`` (a red, a green and a blue one), each
turned by a random angle and elongated (aspect 1.6–3, so that the angle is visible), one per
quarter of the image so that they do not overlap. Backgrounds are low-contrast noise with stripes.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from factories import run_import
from vistudio.ml.inference.rotated import corners_from_cxcywha
from vistudio.services import projects, splits
from vistudio.studio import Studio

CLASSES = ("blue", "green", "red")
COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (50, 80, 230)}


def make_rotated(n: int, *, size: int = 96, seed: int = 0) -> list[tuple[Image.Image, list[dict[str, Any]]]]:
    """``n`` images ``size``×``size`` with their objects ``{"class", "box" (cx, cy, w, h, θ) px,
    "corners" (4, 2) px}``."""
    rng = np.random.default_rng(seed)
    out = []
    half = size / 2
    for _ in range(n):
        noise = rng.integers(90, 150, (size, size, 1), dtype=np.uint8).repeat(3, axis=2)
        stripes = ((np.arange(size) // rng.integers(4, 12)) % 2 * 20).astype(np.uint8)
        img = Image.fromarray(
            np.clip(noise.astype(np.int16) + stripes[None, :, None], 0, 255).astype(np.uint8)
        )
        draw = ImageDraw.Draw(img)
        objects = []
        for cell in rng.permutation(4)[: int(rng.integers(1, 4))]:
            kind = CLASSES[int(rng.integers(0, len(CLASSES)))]
            long = float(rng.uniform(0.55, 0.85) * half)
            short = long / float(rng.uniform(1.6, 3.0))
            theta = float(rng.uniform(-math.pi / 2, math.pi / 2))
            cx = (cell % 2) * half + half / 2 + float(rng.uniform(-2, 2))
            cy = (cell // 2) * half + half / 2 + float(rng.uniform(-2, 2))
            box = np.array([cx, cy, long, short, theta])
            corners = corners_from_cxcywha(box[None])[0]
            draw.polygon([tuple(p) for p in corners.tolist()], fill=COLOURS[kind])
            objects.append({"class": kind, "box": box, "corners": corners})
        out.append((img, objects))
    return out


def write_dota(root: Path, n: int, *, size: int = 96, seed: int = 0) -> Path:
    """A DOTA folder of :func:`make_rotated`; returns ``root``."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for i, (img, objects) in enumerate(make_rotated(n, size=size, seed=seed), start=1):
        img.save(root / "images" / f"img{i:05d}.png")
        lines = [
            " ".join(f"{v:.2f}" for v in np.clip(o["corners"], 0, size).reshape(-1)) + f" {o['class']} 0"
            for o in objects
        ]
        (root / "labelTxt" / f"img{i:05d}.txt").write_text("\n".join(lines) + "\n")
    return root


def rotated_project(
    studio: Studio,
    root: Path,
    name: str = "obb",
    *,
    n: int = 60,
    size: int = 96,
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> str:
    """An oriented detection project of ``n`` generated images, imported from DOTA, split ``s1``."""
    projects.create_project(studio, name=name, task="oriented_detection")
    src = write_dota(root / f"{name}-dota", n, size=size, seed=seed)
    job = run_import(studio, name, src, fmt="dota")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=ratios, seed=7)
    return name
