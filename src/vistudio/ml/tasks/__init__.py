"""Task registry: every project has one task, looked up here by name.

Each task says which annotation kinds it uses and whether it can be trained. Training-specific
parts (models, losses, metrics) attach to these specs in their own modules as they are built.
"""

from __future__ import annotations

from dataclasses import dataclass

from vistudio.registry import Registry


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    annotation_kinds: tuple[str, ...]
    trainable: bool = True


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    return TASKS.add(spec.name, spec)


def get_task(name: str) -> TaskSpec:
    return TASKS.get(name)


def task_names() -> list[str]:
    """Task names in the order they were registered (the order users see them in)."""
    return list(TASKS.entries)


for _spec in (
    TaskSpec("classification", "Classification", ("label",)),
    TaskSpec("detection", "Detection", ("box",)),
    TaskSpec("semantic_segmentation", "Semantic segmentation", ("polygon", "mask_rle")),
    TaskSpec("instance_segmentation", "Instance segmentation", ("polygon", "mask_rle", "box")),
    TaskSpec("anomaly_detection", "Anomaly detection", ("label",)),
    TaskSpec("regression", "Regression", ("value",)),
    TaskSpec("oriented_detection", "Oriented detection", ("rotated_box",)),
    TaskSpec("library", "Photo library", (), trainable=False),
):
    register_task(_spec)
