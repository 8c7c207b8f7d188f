"""Generated oriented detection data: coloured rotated rectangles on textured backgrounds, written
as a DOTA folder (``images/`` + ``labelTxt/``) and imported into an oriented detection project
with a seeded split.

Each image holds 1–3 rectangles of the classes ``CLASSES`` (a red, a green and a blue one), each
turned by a random angle and elongated (aspect 1.6–3, so that the angle is visible), one per
quarter of the image so that they do not overlap. Backgrounds are low-contrast noise with stripes.
"""

from __future__ import annotations

import math
import tempfile
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


def write_dota(root: Path, n: int, *, size: int = 96, seed: int = 0, difficult_every: int = 0) -> Path:
    """A DOTA folder of :func:`make_rotated`; returns ``root``. With ``difficult_every`` k > 0, the
    k-th, 2k-th, … object (counted through the folder) is marked difficult (the images are the
    same)."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    count = 0
    for i, (img, objects) in enumerate(make_rotated(n, size=size, seed=seed), start=1):
        img.save(root / "images" / f"img{i:05d}.png")
        lines = []
        for o in objects:
            count += 1
            hard = int(difficult_every > 0 and count % difficult_every == 0)
            corners = " ".join(f"{v:.2f}" for v in np.clip(o["corners"], 0, size).reshape(-1))
            lines.append(f"{corners} {o['class']} {hard}")
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
    difficult_every: int = 0,
) -> str:
    """An oriented detection project of ``n`` generated images, imported from DOTA, split ``s1``
    (``difficult_every``: see :func:`write_dota`)."""
    projects.create_project(studio, name=name, task="oriented_detection")
    src = write_dota(root / f"{name}-dota", n, size=size, seed=seed, difficult_every=difficult_every)
    job = run_import(studio, name, src, fmt="dota")
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=ratios, seed=7)
    return name


# --- a finished experiment without the training job ---------------------------------------------

MODEL, SIZE = "fcos_obb_resnet18_fpn64", 96
# enough for the scores to spread out (an untrained head scores every location about 0.07): after
# 3 steps the best location of an image scores about 0.4, and some 75 of its candidates pass 0.2
STEPS = 3
SCORE_THRESHOLD = 0.2  # a few dozen candidates an image: detections to compare, a quick rotated NMS
DETECTIONS_PER_IMAGE = 20


def _train_a_little(net: Any, items: list[Any]) -> None:
    """A few seeded optimiser steps on the train images (batches of 4)."""
    import torch

    from vistudio.ml.inference.rotated import rotated_object
    from vistudio.ml.preprocess import open_rgb

    images, targets = [], []
    for it in items:
        img = open_rgb(it.path)
        images.append(torch.from_numpy(np.asarray(img, np.float32).transpose(2, 0, 1) / 255))
        w, h = int(it.target["width"]), int(it.target["height"])
        found = [(rotated_object(o, w, h), int(o["class"])) for o in it.target["objects"]]
        boxes = [f[1] for f, _ in found if f is not None]
        labels = [k for f, k in found if f is not None]
        targets.append(
            {
                "boxes": torch.tensor(np.asarray(boxes, np.float32).reshape(-1, 5)),
                "labels": torch.tensor(labels, dtype=torch.int64),
            }
        )
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
    net.train()
    for step in range(STEPS):
        lo = (step * 4) % len(images)
        losses = net(images[lo : lo + 4], targets[lo : lo + 4])
        opt.zero_grad()
        sum(losses.values()).backward()
        opt.step()
    net.eval()


def make_oriented_experiment(studio: Studio, *, project: str, name: str) -> dict[str, Any]:
    """A finished oriented detection experiment whose checkpoints are the small detector after a
    few training steps."""
    import torch

    from vistudio.db import Project, Split, utcnow
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.oriented_detectors import build_oriented_detector
    from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items

    torch.manual_seed(0)
    classes = list(CLASSES)
    net, info = build_oriented_detector(
        MODEL,
        len(classes),
        image_size=SIZE,
        score_threshold=SCORE_THRESHOLD,
        detections_per_image=DETECTIONS_PER_IMAGE,
    )
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        project_id, split_id = p.id, sp.id
        items = split_items(studio, s, split_id, ["train"], classes, task="oriented_detection")
    _train_a_little(net, items)
    config = {
        "model": MODEL,
        "image_size": SIZE,
        "score_threshold": SCORE_THRESHOLD,
        "nms_iou": 0.3,
        "detections_per_image": DETECTIONS_PER_IMAGE,
        "split": "s1",
    }
    preprocess = {
        "kind": "oriented_detection",
        "input_size": [SIZE, SIZE],
        "mean": info.mean,
        "std": info.std,
        "scale": 1 / 255,
        "color": "RGB",
    }
    meta = {
        "model": MODEL,
        "task": "oriented_detection",
        "classes": classes,
        "config": config,
        "preprocess": preprocess,
        "oriented": True,
        "family": "fcos_obb",
        "epoch": 1,
        "step": STEPS,
        "metrics": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ckpt.pt", net, meta)
        sha = studio.store.write_file(CHECKPOINT_KIND, path, ext=CHECKPOINT_EXT)
        size = path.stat().st_size
    with studio.sessions.begin() as s:
        exp = Experiment(
            project_id=project_id,
            split_id=split_id,
            name=name,
            task="oriented_detection",
            config=config,
            classes=classes,
            status="succeeded",
            epochs_done=1,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(exp)
        s.flush()
        for kind in ("best", "last"):
            s.add(
                Checkpoint(
                    experiment_id=exp.id, kind=kind, sha256=sha, size=size, epoch=1, step=STEPS, metrics={}
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
        return {"id": exp.id, "name": name, "meta": meta, "sha256": sha}
