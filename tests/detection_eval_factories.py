"""Detection experiments for evaluation tests, made directly: a catalog detector (the small
ResNet-18 configurations) trained for a few full-batch steps on the train subset of a shapes
project, saved as a checkpoint with the meta training writes, and the experiment's rows — so that
these tests do not depend on the training job."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from vistudio.db import Project, Split, utcnow
from vistudio.db.training import Checkpoint, Experiment
from vistudio.services.experiments import CHECKPOINT_EXT, CHECKPOINT_KIND, split_items
from vistudio.studio import Studio

MODELS = {"detection": "fcos_resnet18_fpn64", "instance_segmentation": "maskrcnn_resnet18_fpn64"}


def _targets(items: list[Any], masks: bool) -> tuple[list[Any], list[dict[str, Any]]]:
    import torch
    from PIL import Image

    from vistudio.ml.inference.detection_matching import object_rle
    from vistudio.ml.inference.detections import decode_masks

    images, targets = [], []
    for it in items:
        w, h = it.target["width"], it.target["height"]
        img = np.asarray(Image.open(it.path).convert("RGB"), np.float32) / 255
        images.append(torch.from_numpy(img.transpose(2, 0, 1).copy()))
        objs = [o for o in it.target["objects"] if not o["iscrowd"]]
        boxes = [[x * w, y * h, (x + bw) * w, (y + bh) * h] for x, y, bw, bh in (o["box"] for o in objs)]
        t: dict[str, Any] = {
            "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor([o["class"] + 1 for o in objs], dtype=torch.int64),
        }
        if masks:
            rles = [object_rle(o["mask"], b, width=w, height=h) for o, b in zip(objs, boxes, strict=True)]
            m = decode_masks(rles) if rles else np.zeros((0, h, w), np.uint8)
            t["masks"] = torch.from_numpy(m.astype(np.uint8))
        targets.append(t)
    return images, targets


def make_detection_experiment(
    studio: Studio,
    *,
    project: str,
    name: str = "det",
    task: str = "detection",
    image_size: int = 96,
    train_steps: int = 0,
    lr: float = 2e-3,
    seed: int = 0,
    split: str = "s1",
    status: str = "succeeded",
    kinds: tuple[str, ...] = ("best", "last"),
    train_images: int = 16,
) -> dict[str, Any]:
    """An experiment of ``task`` whose checkpoints hold the small catalog detector after
    ``train_steps`` full-batch AdamW steps on the first ``train_images`` of the train subset (0:
    seeded random weights)."""
    import torch

    from vistudio.ml.checkpoint import save_checkpoint
    from vistudio.ml.detectors import build_detector

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    model_name = MODELS[task]
    from vistudio.services.samples import class_counts

    classes = sorted(class_counts(studio, project=project))
    with studio.sessions() as s:
        p = s.query(Project).filter_by(name=project).one()
        sp = s.query(Split).filter_by(project_id=p.id, name=split).one()
        project_id, split_id = p.id, sp.id
        items = split_items(studio, s, split_id, ["train"], classes, task=task)
    config = {
        "model": model_name,
        "pretrained": "none",
        "image_size": image_size,
        "score_threshold": 0.05,
        "nms_iou": 0.5,
        "detections_per_image": 100,
        "split": split,
        "epochs": 1,
        "batch_size": len(items),
        "lr": lr,
        "optimizer": "adamw",
        "scheduler": "none",
        "seed": seed,
    }
    net, info = build_detector(model_name, len(classes), image_size=image_size, task=task)
    if train_steps:
        images, targets = _targets(items[:train_images], masks=task == "instance_segmentation")
        opt = torch.optim.AdamW(net.parameters(), lr=lr)
        net.train()
        for _ in range(train_steps):
            opt.zero_grad()
            loss = sum(net(images, targets).values())
            loss.backward()  # type: ignore[union-attr]
            opt.step()
    net.eval()
    meta = {
        "model": model_name,
        "task": task,
        "classes": classes,
        "config": config,
        "preprocess": {
            "kind": "detection",
            "version": 1,
            "input_size": [image_size, image_size],
            "mean": list(info.mean),
            "std": list(info.std),
            "scale": 1 / 255,
            "color": "RGB",
        },
        "epoch": 1,
        "step": train_steps,
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
            task=task,
            config=config,
            classes=classes,
            status=status,
            epochs_done=1,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=None if status in ("queued", "running", "draft") else utcnow(),
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
