"""Task registry: every project has one task, looked up here by name.

Each task says which annotation kinds it uses and whether it can be trained. Training-specific
parts (models, losses, metrics, transforms) live in one module per task, ``ml/tasks/<name>.py``,
which registers a ``vistudio.ml.training.task.TrainingTask`` subclass with
``@register_training(name)``. That module is imported on first use, so listing tasks never
imports torch.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from vistudio.errors import BadRequest
from vistudio.registry import Registry

if TYPE_CHECKING:
    from vistudio.ml.training.task import TrainingTask


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


TRAINING: Registry[Any] = Registry("training task")


def register_training(name: str) -> Any:
    """Class decorator: the training parts of task ``name`` (a ``TrainingTask`` subclass)."""
    get_task(name)  # only known tasks get training parts
    return TRAINING.register(name)


def get_training(name: str) -> type[TrainingTask]:
    """The training parts of a task, importing ``vistudio.ml.tasks.<name>`` on first use.

    A task that exists but has no training module yet is a 400 that says so."""
    try:
        spec = get_task(name)
    except KeyError as exc:
        raise BadRequest(str(exc.args[0])) from None
    if name not in TRAINING.entries and spec.trainable:
        module = f"vistudio.ml.tasks.{name}"
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    if name not in TRAINING.entries:
        raise BadRequest(
            f"training is not available for {spec.title.lower()} projects yet",
            details={"task": name, "trainable": sorted(TRAINING.entries)},
        )
    cls: type[TrainingTask] = TRAINING.get(name)
    return cls
