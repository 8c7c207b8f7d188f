"""Test data for anomaly detection: smooth colour gradients (normal, class folder ``good/``) and the
same kind of gradient with a defect drawn on it — a thin bright scratch (``scratch/``) or a dark
blob (``blob/``) — in the MVTec class-folder layout; a project imported from it with a split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from factories import run_import
from vistudio.services import projects, splits
from vistudio.studio import Studio


def gradient(rng: np.random.Generator, size: int) -> Image.Image:
    """A smooth gradient between two random colours in a random direction."""
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
    t = (np.cos(angle) * xx + np.sin(angle) * yy + 1.5) / 3.0
    a, b = rng.uniform(60, 200, 3), rng.uniform(60, 200, 3)
    img = a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]
    return Image.fromarray(img.clip(0, 255).astype(np.uint8))


def defect_image(path: Path, *, kind: str, seed: int, size: int = 32) -> Path:
    """A gradient (``kind="good"``), with a scratch (``"scratch"``) or a blob (``"blob"``)."""
    rng = np.random.default_rng(seed)
    img = gradient(rng, size)
    d = ImageDraw.Draw(img)
    if kind == "scratch":
        x0, y0 = rng.integers(2, size - 2, 2)
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(size * 0.4, size * 0.7)
        x1, y1 = x0 + length * np.cos(angle), y0 + length * np.sin(angle)
        d.line([(int(x0), int(y0)), (int(x1), int(y1))], fill=(255, 255, 255), width=2)
    elif kind == "blob":
        cx, cy = rng.integers(6, size - 6, 2)
        r = int(rng.integers(3, 6))
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=(20, 20, 25))
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def write_mvtec(root: Path, counts: dict[str, int], *, seed: int = 0) -> Path:
    """``root/<kind>/<kind>-<i>.png`` for each kind of ``counts``; returns ``root``."""
    n = 0
    for kind, count in counts.items():
        for i in range(count):
            defect_image(root / kind / f"{kind}-{i:04d}.png", kind=kind, seed=seed * 100_000 + n)
            n += 1
    return root


def anomaly_project(
    studio: Studio,
    root: Path,
    *,
    name: str = "parts",
    counts: dict[str, int] | None = None,
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
) -> dict[str, Any]:
    """An anomaly detection project imported from class folders, with a split ``s1`` (seed 3)."""
    source = write_mvtec(root / f"{name}-src", counts or {"good": 80, "scratch": 20, "blob": 20})
    projects.create_project(studio, name=name, task="anomaly_detection")
    job = run_import(studio, name, source, fmt="folder")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=ratios, seed=3)
    return projects.get_project(studio, name)
