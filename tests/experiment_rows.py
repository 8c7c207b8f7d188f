"""Experiments made of database rows alone (no model, no checkpoint): a finished run's config, best
metrics and metric series, as the training loop records them, for tests of what pages and the CLI
show. The series follow a detector's run (per-step batch loss and running loss components, epoch
loss and validation mAP) or a classifier's."""

from __future__ import annotations

import math
from typing import Any

from vistudio.db import Project, utcnow
from vistudio.db.training import EpochMetric, Experiment
from vistudio.studio import Studio

# the loss components each detector family reports (ml/tasks/detection FAMILY_LOSSES)
FAMILY_COMPONENTS = {
    "fasterrcnn": ("classifier", "box_reg", "objectness", "rpn_box_reg"),
    "fcos": ("classifier", "box_reg", "centerness"),
    "maskrcnn": ("classifier", "box_reg", "objectness", "rpn_box_reg", "mask"),
}


def _points(
    task: str, model: str, epochs: int, steps_per_epoch: int, shift: float
) -> list[tuple[int, int, str, float]]:
    """(epoch, step, name, value) of a run that improves epoch after epoch."""
    rows: list[tuple[int, int, str, float]] = []
    family = next((f for f in FAMILY_COMPONENTS if model.startswith(f)), "fasterrcnn")
    components = FAMILY_COMPONENTS[family] if task != "classification" else ()
    for epoch in range(1, epochs + 1):
        for k in range(1, steps_per_epoch + 1):
            step = (epoch - 1) * steps_per_epoch + k
            if step != 1 and step % 2:
                continue  # a point every two steps, and at step 1
            decay = math.exp(-step / (steps_per_epoch * 1.5)) + shift
            rows.append((epoch, step, "train_loss_step", 0.4 + 2.0 * decay + 0.08 * math.sin(step)))
            rows.append((epoch, step, "lr", 1e-3))
            for i, c in enumerate(components):
                rows.append((epoch, step, f"train_loss_{c}_step", (0.05 + 0.5 * decay) / (i + 1)))
            if task == "classification":
                rows.append((epoch, step, "train_accuracy_step", min(0.98, 0.35 + 0.6 * (1 - decay))))
        end = epoch * steps_per_epoch
        decay = math.exp(-end / (steps_per_epoch * 1.5)) + shift
        rows.append((epoch, end, "train_loss", 0.4 + 2.0 * decay))
        for i, c in enumerate(components):
            rows.append((epoch, end, f"train_loss_{c}", (0.05 + 0.5 * decay) / (i + 1)))
        score = max(0.0, min(0.95, 0.75 * (1 - decay)))
        if task == "classification":
            rows += [
                (epoch, end, "train_accuracy", score + 0.03),
                (epoch, end, "val_accuracy", score),
                (epoch, end, "val_f1_macro", score - 0.02),
                (epoch, end, "val_loss", 0.5 + decay),
            ]
            continue
        rows += [
            (epoch, end, "val_map", score * 0.8),
            (epoch, end, "val_map50", score),
            (epoch, end, "val_map75", score * 0.7),
        ]
        if task == "instance_segmentation":
            rows += [
                (epoch, end, "val_mask_map", score * 0.75),
                (epoch, end, "val_mask_map50", score * 0.97),
                (epoch, end, "val_mask_map75", score * 0.6),
            ]
    return rows


def experiment_with_metrics(
    studio: Studio,
    *,
    project: str,
    name: str,
    task: str = "detection",
    model: str = "fasterrcnn_mobilenet_v3_large_320_fpn",
    epochs: int = 3,
    steps_per_epoch: int = 8,
    shift: float = 0.0,
    status: str = "succeeded",
) -> dict[str, Any]:
    """A finished experiment of ``task`` with its metric series and best metrics (the last epoch's,
    the run improving throughout); ``shift`` makes a worse run. Returns ``{"id", "name", "best"}``."""
    rows = _points(task, model, epochs, steps_per_epoch, shift)
    last = {n: v for e, _, n, v in rows if e == epochs and not n.endswith("_step") and n != "lr"}
    best = {**last, "epoch": epochs}
    monitor = {"classification": "val_accuracy", "instance_segmentation": "val_mask_map"}.get(task, "val_map")
    config = {
        "model": model,
        "split": "s1",
        "epochs": epochs,
        "batch_size": 4,
        "lr": 1e-3,
        "image_size": 96 if task != "classification" else 32,
        "monitor": monitor,
    }
    with studio.sessions.begin() as s:
        p = s.query(Project).filter_by(name=project).one()
        exp = Experiment(
            project_id=p.id,
            split_id=None,
            name=name,
            task=task,
            config=config,
            classes=["ellipse", "rectangle", "triangle"],
            status=status,
            epochs_done=epochs,
            best_metrics=best,
            final_metrics=last,
            created_at=utcnow(),
            started_at=utcnow(),
            finished_at=utcnow(),
        )
        s.add(exp)
        s.flush()
        s.add_all(
            EpochMetric(experiment_id=exp.id, epoch=e, step=st, name=n, value=float(v))
            for e, st, n, v in rows
        )
        exp_id = exp.id
    return {"id": exp_id, "name": name, "best": best}
