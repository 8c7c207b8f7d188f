"""Generated semantic segmentation data: coloured shapes on textured backgrounds with their label
images, imported into a ``semantic_segmentation`` project (label PNGs through the ``masks``
reader: RLE masks, 255 as ignored regions; or polygons through COCO), with a seeded split; and
segmentation experiments made directly (a catalog segmenter trained for a few full-batch steps,
saved with the meta training writes) for tests that do not need the training job.

Each image (``width``×``height``, not square: the predictions are upsampled to it) holds 1–3
shapes — ellipses, rectangles, triangles — each painted in its class's colour, on low-contrast
noise with stripes. Every fourth image has an ignored band (value 255) along its left edge.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from factories import run_import
from vistudio.db import Project, Split, utcnow
from vistudio.db.training import Checkpoint, Experiment
from vistudio.jobs.queue import FINISHED, job_dict
from vistudio.services import projects, splits
from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items
from vistudio.studio import Studio

SHAPES = ("ellipse", "rectangle", "triangle")
# pixel value k of the label images is class CLASSES[k]; 0 the background
CLASSES = ("background", *SHAPES)
MODEL_CLASSES = ["background", *sorted(SHAPES)]
PALETTE = {"ellipse": (40, 200, 60), "rectangle": (235, 140, 20), "triangle": (50, 80, 230)}
IGNORE = 255


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


def _colour(names: tuple[str, ...], name: str) -> tuple[int, int, int]:
    if name in PALETTE:
        return PALETTE[name]
    import colorsys

    k = names.index(name)
    r, g, b = colorsys.hls_to_rgb((k * 0.618) % 1.0, 0.5, 0.9)
    return round(r * 255), round(g * 255), round(b * 255)


def make_scenes(
    n: int,
    *,
    width: int = 80,
    height: int = 64,
    seed: int = 0,
    classes: tuple[str, ...] = CLASSES,
    ignore_every: int = 4,
) -> list[tuple[Image.Image, np.ndarray, list[dict[str, Any]]]]:
    """``n`` scenes: the RGB image, its label map (``uint8``, value = index in ``classes``, 0 the
    background, 255 ignored) and its shapes (``{"class", "polygon" [(x, y)…] px}``, drawn in
    order, a later one over an earlier one)."""
    rng = np.random.default_rng(seed)
    shapes = classes[1:]
    out = []
    for i in range(n):
        noise = rng.integers(90, 150, (height, width, 1), dtype=np.uint8).repeat(3, axis=2)
        stripes = ((np.arange(width) // rng.integers(4, 12)) % 2 * 20).astype(np.uint8)
        bg = np.clip(noise.astype(np.int16) + stripes[None, :, None], 0, 255).astype(np.uint8)
        img = Image.fromarray(bg)
        label = Image.new("L", (width, height), 0)
        draw, ldraw = ImageDraw.Draw(img), ImageDraw.Draw(label)
        objects = []
        cells = rng.permutation(4)[: int(rng.integers(1, 4))]
        for cell in cells:
            kind = shapes[int(rng.integers(0, len(shapes)))]
            geometry = SHAPES[int(rng.integers(0, len(SHAPES)))] if kind not in SHAPES else kind
            w = float(rng.uniform(0.5, 0.95) * width / 2)
            h = float(rng.uniform(0.5, 0.95) * height / 2)
            x = float((cell % 2) * width / 2 + rng.uniform(0, width / 2 - w))
            y = float((cell // 2) * height / 2 + rng.uniform(0, height / 2 - h))
            poly = _polygon(geometry, x, y, w, h)
            draw.polygon(poly, fill=_colour(classes, kind))
            ldraw.polygon(poly, fill=classes.index(kind))
            objects.append({"class": kind, "polygon": poly})
        arr = np.array(label, np.uint8)
        if ignore_every and i % ignore_every == 0:
            arr[:, : max(2, width // 10)] = IGNORE
        out.append((img, arr, objects))
    return out


def write_masks(root: Path, n: int, **kw: Any) -> Path:
    """A ``masks`` source: ``images/scene-<i>.png``, ``masks/scene-<i>.png`` (grey label PNGs) and
    ``classes.json``; returns ``root``."""
    classes = kw.get("classes", CLASSES)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    for i, (img, label, _) in enumerate(make_scenes(n, **kw)):
        img.save(root / "images" / f"scene-{i:04d}.png")
        Image.fromarray(label).save(root / "masks" / f"scene-{i:04d}.png")
    (root / "classes.json").write_text(json.dumps({str(k): c for k, c in enumerate(classes)}))
    return root


def write_polygons(root: Path, n: int, **kw: Any) -> Path:
    """A COCO source of the same scenes with polygons (no ignored regions); returns ``root``."""
    kw = {**kw, "ignore_every": 0}
    classes = kw.get("classes", CLASSES)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i, (img, _, objects) in enumerate(make_scenes(n, **kw), start=1):
        name = f"scene-{i:04d}.png"
        img.save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": img.width, "height": img.height})
        for obj in objects:
            xs, ys = [p[0] for p in obj["polygon"]], [p[1] for p in obj["polygon"]]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": classes.index(obj["class"]),
                    "segmentation": [[round(c, 3) for p in obj["polygon"] for c in p]],
                    "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                    "area": 1.0,
                    "iscrowd": 0,
                }
            )
    categories = [{"id": k, "name": c} for k, c in enumerate(classes) if k > 0]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def segmentation_project(
    studio: Studio,
    root: Path,
    name: str = "scenes",
    *,
    n: int = 40,
    fmt: str = "masks",
    ratios: tuple[float, float, float] = (0.6, 0.2, 0.2),
    **kw: Any,
) -> Path:
    """A semantic segmentation project of ``n`` generated scenes imported from label PNGs
    (``fmt="masks"``) or COCO polygons (``"coco"``), with a seeded split ``s1``; returns the
    source folder (its ``masks/`` are the reference ground truth)."""
    projects.create_project(studio, name=name, task="semantic_segmentation")
    writer = write_masks if fmt == "masks" else write_polygons
    src = writer(root / f"{name}-{fmt}", n, **kw)
    job = run_import(studio, name, src, fmt=fmt)
    deadline = time.monotonic() + 120  # a live server's embedded worker may have claimed it
    while job["status"] not in FINISHED and time.monotonic() < deadline:
        time.sleep(0.05)
        job = job_dict(studio.queue.get(job["id"]))
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=ratios, seed=7)
    return src


def make_segmentation_experiment(
    studio: Studio,
    *,
    project: str,
    name: str = "seg",
    model: str = "lraspp_mobilenet_v3_small",
    image_size: int = 64,
    train_steps: int = 0,
    lr: float = 0.01,
    seed: int = 0,
    split: str = "s1",
    kinds: tuple[str, ...] = ("best", "last"),
) -> dict[str, Any]:
    """An experiment whose checkpoints hold a catalog segmenter after ``train_steps`` full-batch
    AdamW steps (cross-entropy, 255 ignored) on the train subset at ``image_size`` (0: seeded
    random weights), with the meta training writes and, as a real start, a dataset version."""
    import torch
    import torch.nn.functional as F

    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.preprocess import eval_array, open_rgb
    from vistudio.ml.segmenters import build_segmenter
    from vistudio.ml.tasks.semantic_segmentation import SemanticSegmentationTask, label_map
    from vistudio.services.samples import class_counts
    from vistudio.services.versions import version_for_training

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    classes = SemanticSegmentationTask.model_classes(sorted(class_counts(studio, project=project)))
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name=split).one()
        project_id, split_id = p.id, sp.id
        items = split_items(studio, s, split_id, ["train"], classes, task="semantic_segmentation")
    net, info = build_segmenter(model, len(classes), pretrained="none")
    preprocess = {
        "kind": "segmentation",
        "version": 1,
        "input_size": [image_size, image_size],
        "mean": list(info.mean),
        "std": list(info.std),
        "scale": 1 / 255,
        "color": "RGB",
    }
    config = {
        "model": model,
        "pretrained": "none",
        "image_size": image_size,
        "split": split,
        "epochs": 1,
        "batch_size": len(items),
        "lr": lr,
        "loss": "ce",
        "seed": seed,
    }
    if train_steps:
        x = torch.from_numpy(np.stack([eval_array(open_rgb(it.path), preprocess) for it in items]))
        y = torch.from_numpy(np.stack([label_map(it.target, image_size, image_size) for it in items])).long()
        opt = torch.optim.AdamW(net.parameters(), lr=lr)
        net.train()
        for _ in range(train_steps):
            opt.zero_grad()
            loss = F.cross_entropy(net(x), y, ignore_index=IGNORE)
            loss.backward()
            opt.step()
    net.eval()
    meta = {
        "model": model,
        "task": "semantic_segmentation",
        "classes": classes,
        "config": config,
        "preprocess": preprocess,
        "epoch": 1,
        "step": train_steps,
        "metrics": {},
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = save_checkpoint(Path(tmp) / "ckpt.pt", net, meta)
        sha = studio.store.write_file(CHECKPOINT_KIND, path, ext=CHECKPOINT_EXT)
        size = path.stat().st_size
    with studio.sessions.begin() as s:
        # as a real start does: the dataset version it trains and evaluates on
        version = version_for_training(s, s.get(Project, project_id), actor=f"experiment {name}")
        exp = Experiment(
            project_id=project_id,
            split_id=split_id,
            version_id=version.id,
            name=name,
            task="semantic_segmentation",
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
        for kind in kinds:
            s.add(
                Checkpoint(
                    experiment_id=exp.id,
                    kind=kind,
                    sha256=sha,
                    size=size,
                    epoch=1,
                    step=train_steps,
                    metrics={},
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
        exp_id = exp.id
    return {"id": exp_id, "name": name, "classes": classes, "model": net, "meta": meta}
