"""Semantic segmentation data and a small trained segmenter, for the export and predict tests.

:func:`write_shapes_coco` writes coloured shapes (a red rectangle, a green ellipse, a blue
triangle: detection_factories' shapes) on striped noise, in images of assorted sizes, as a COCO
dataset whose rectangles and triangles are polygons and whose ellipses are RLE masks (one crowd
region too), imported by :func:`segmentation_project` into a ``semantic_segmentation`` project
with a seeded split. :func:`make_segmenter_experiment` trains the catalog's smallest segmenter
for a few seconds on the split's training images through the production parts of the task
(``SemanticSegmentationTask``: model, preprocessing, label maps, loss) and records it as a
finished experiment with ``best`` and ``last`` checkpoints, without the training job.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from detection_factories import COLOURS, _polygon
from factories import run_import
from vistudio.jobs.queue import job_dict
from vistudio.jobs.worker import Worker
from vistudio.services import projects, splits
from vistudio.studio import Studio

CLASSES = ("ellipse", "rectangle", "triangle")
MODEL_CLASSES = ["background", *CLASSES]  # the task's model classes: background first, then sorted
SIZES = ((96, 72), (80, 80), (112, 64), (72, 96))  # (width, height): non-square, both ways
MODEL, INPUT = "lraspp_mobilenet_v3_small", 64


def _rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO's uncompressed RLE of a boolean ``(height, width)`` mask (column-major runs, zeros first)."""
    flat = mask.astype(np.uint8).reshape(-1, order="F")
    counts: list[int] = []
    current, run = 0, 0
    for v in flat.tolist():
        if v == current:
            run += 1
        else:
            counts.append(run)
            current, run = v, 1
    counts.append(run)
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def write_shapes_coco(root: Path, n: int, *, seed: int = 0) -> Path:
    """``root/images/*.png`` + ``root/annotations.json``: ``n`` images of 1–3 shapes each."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(1, n + 1):
        width, height = SIZES[i % len(SIZES)]
        noise = rng.integers(90, 150, (height, width, 1), dtype=np.uint8).repeat(3, axis=2)
        stripes = ((np.arange(width) // int(rng.integers(4, 12))) % 2 * 20).astype(np.uint8)
        img = Image.fromarray(
            np.clip(noise.astype(np.int16) + stripes[None, :, None], 0, 255).astype(np.uint8)
        )
        draw = ImageDraw.Draw(img)
        half_w, half_h = width / 2, height / 2
        for cell in rng.permutation(4)[: int(rng.integers(1, 4))]:
            kind = CLASSES[int(rng.integers(0, len(CLASSES)))]
            w = float(rng.uniform(0.5, 0.95) * half_w)
            h = float(rng.uniform(0.5, 0.95) * half_h)
            x = float((cell % 2) * half_w + rng.uniform(0, half_w - w))
            y = float((cell // 2) * half_h + rng.uniform(0, half_h - h))
            poly = _polygon(kind, x, y, w, h)
            draw.polygon(poly, fill=COLOURS[kind])
            xs, ys = [p[0] for p in poly], [p[1] for p in poly]
            ann: dict[str, Any] = {
                "id": len(annotations) + 1,
                "image_id": i,
                "category_id": CLASSES.index(kind) + 1,
                "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                "area": w * h,
                "iscrowd": 0,
            }
            if kind == "ellipse":  # its pixels as an RLE mask, the others as polygons
                layer = Image.new("L", (width, height), 0)
                ImageDraw.Draw(layer).polygon(poly, fill=1)
                ann["segmentation"] = _rle(np.asarray(layer, bool))
            else:
                ann["segmentation"] = [[round(c, 3) for p in poly for c in p]]
            annotations.append(ann)
        if i == 1:  # a crowd region over a corner: ignored pixels (255) in the ground truth
            corner = [0.0, 0.0, width / 4, height / 4]
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": i,
                    "category_id": 2,
                    "bbox": corner,
                    "area": corner[2] * corner[3],
                    "iscrowd": 1,
                    "segmentation": [[0, 0, corner[2], 0, corner[2], corner[3], 0, corner[3]]],
                }
            )
        name = f"shape{i:04d}.png"
        img.save(root / "images" / name)
        images.append({"id": i, "file_name": name, "width": width, "height": height})
    categories = [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)]
    (root / "annotations.json").write_text(
        json.dumps({"images": images, "annotations": annotations, "categories": categories})
    )
    return root


def segmentation_project(studio: Studio, root: Path, name: str = "regions", *, n: int = 16) -> str:
    """A semantic segmentation project of ``n`` generated images, imported from COCO, with a seeded
    split ``s1`` (60/20/20)."""
    projects.create_project(studio, name=name, task="semantic_segmentation")
    job = run_import(studio, name, write_shapes_coco(root / f"{name}-coco", n), fmt="coco")
    # a live server's embedded worker may have claimed it first: wait for that worker's end
    job = job_dict(Worker(studio).run_to_end(job["id"]))
    assert job["status"] == "succeeded", job
    splits.create_split(studio, project=name, name="s1", ratios=(0.6, 0.2, 0.2), seed=7)
    return name


def make_segmenter_experiment(
    studio: Studio, *, project: str, name: str, steps: int = 40, model: str = MODEL, image_size: int = INPUT
) -> dict[str, Any]:
    """A finished experiment of ``project`` (split ``s1``) whose checkpoints are ``model`` trained
    ``steps`` full-batch steps on the training images (seeded: the same model every run)."""
    import torch

    from vistudio.db import Project, Split, utcnow
    from vistudio.db.training import Checkpoint, Experiment
    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.preprocess import eval_array, open_rgb
    from vistudio.ml.tasks.semantic_segmentation import (
        SemanticSegmentationConfig,
        SemanticSegmentationTask,
        label_map,
    )
    from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items

    torch.manual_seed(0)
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name="s1").one()
        project_id, split_id = p.id, sp.id
        classes = SemanticSegmentationTask.model_classes(list(CLASSES))
        items = split_items(studio, s, split_id, ["train"], classes, task="semantic_segmentation")
    config = SemanticSegmentationConfig(model=model, image_size=image_size, epochs=1, batch_size=8, lr=0.01)
    task = SemanticSegmentationTask(classes=classes, config=config)
    net, info = task.build_model()
    preprocess = task.preprocess(info)
    x = torch.from_numpy(
        np.stack([eval_array(open_rgb(it.path, draft_size=image_size), preprocess) for it in items])
    )
    y = torch.from_numpy(
        np.stack([label_map(task.encode_target(it.target), image_size, image_size) for it in items])
    ).long()
    loss = task.build_loss([task.encode_target(it.target) for it in items])
    optimiser = torch.optim.AdamW(net.parameters(), lr=0.01)
    threads = torch.get_num_threads()
    # one thread: on a small machine shared by several test processes, more threads are much slower
    torch.set_num_threads(1)
    try:
        net.train()
        for _ in range(steps):
            optimiser.zero_grad()
            value = loss(net(x), y)
            value.backward()
            optimiser.step()
        net.eval()
    finally:
        torch.set_num_threads(threads)
    final_loss = float(value.detach())
    meta = {
        **task.checkpoint_meta(),
        "model": model,
        "task": "semantic_segmentation",
        "classes": classes,
        "preprocess": preprocess,
        "config": config.model_dump(mode="json"),
        "epoch": 1,
        "step": steps,
        "metrics": {"train_loss": final_loss},
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
            task="semantic_segmentation",
            config=meta["config"],
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
                    experiment_id=exp.id, kind=kind, sha256=sha, size=size, epoch=1, step=steps, metrics={}
                )
            )
            studio.store.acquire(s, CHECKPOINT_KIND, sha, size=size, ext=CHECKPOINT_EXT)
        return {"id": exp.id, "name": name, "meta": meta, "sha256": sha, "train_loss": final_loss}
