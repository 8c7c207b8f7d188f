"""Task registry: every project has one task, looked up here by name.

Each task says which annotation kinds it uses and whether it can be trained. Training-specific
parts (models, losses, metrics) attach to these specs in their own modules as they are built.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    annotation_kinds: tuple[str, ...]
    trainable: bool = True


_TASKS: dict[str, TaskSpec] = {}


def register_task(spec: TaskSpec) -> TaskSpec:
    if spec.name in _TASKS:
        raise ValueError(f"task {spec.name!r} is already registered")
    _TASKS[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    try:
        return _TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known tasks: {', '.join(task_names())}") from None


def task_names() -> list[str]:
    return list(_TASKS)


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
