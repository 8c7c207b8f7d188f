"""Task registry: every project has one task, looked up here by name.

Each task says which annotation kinds it uses and whether it can be trained. Training-specific
parts (models, losses, metrics, transforms) live in one module per task, ``ml/tasks/<name>.py``,
which registers a ``vistudio.ml.training.task.TrainingTask`` subclass with
``@register_training(name)``. That module is imported on first use, so listing tasks never
imports torch: whether a task can be trained today is known from that module being there.

Each task also says which sections of a project it offers (the tabs of a project's page): a
photo library is browsed, searched and deduplicated; a task that can be split but not trained
yet has no Train, Evaluate or Export.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from vistudio.errors import BadRequest
from vistudio.registry import Registry

if TYPE_CHECKING:
    from vistudio.ml.training.task import TrainingTask


# Every section a project page can have, in tab order, with its title; the Dataset section is
# the project's own URL, the others ``/projects/<name>/<section>``.
SECTIONS: dict[str, str] = {
    "dataset": "Dataset",
    "split": "Split",
    "train": "Train",
    "evaluate": "Evaluate",
    "export": "Export",
    "search": "Search",
    "duplicates": "Duplicates",
}
TRAINING_SECTIONS = ("train", "evaluate", "export")
# what a user does in each section, for the sentence that describes a task
_VERBS = {
    "dataset": "browse",
    "split": "split",
    "train": "train",
    "evaluate": "evaluate",
    "export": "export",
    "search": "search",
    "duplicates": "find duplicates",
}


@cache
def _has_training_module(name: str) -> bool:
    # find_spec looks for the file without importing it (and so without importing torch)
    return importlib.util.find_spec(f"{__name__}.{name}") is not None


@dataclass(frozen=True)
class TaskSpec:
    name: str
    title: str
    annotation_kinds: tuple[str, ...]
    # False: the task is never trained (a photo library); True: it is meant to be, see can_train
    trainable: bool = True

    @property
    def can_train(self) -> bool:
        """Whether projects of this task can be trained today (its training module exists)."""
        return self.trainable and _has_training_module(self.name)

    @property
    def sections(self) -> tuple[str, ...]:
        """The sections (``SECTIONS`` keys) a project of this task offers, in tab order."""
        if not self.trainable:  # nothing to split for: a library is browsed, searched, deduplicated
            return ("dataset", "search", "duplicates")
        return tuple(s for s in SECTIONS if self.can_train or s not in TRAINING_SECTIONS)

    @property
    def label(self) -> str:
        """The task's name in a list of tasks, with a word when it cannot be trained yet."""
        return (
            f"{self.title} (training not yet available)"
            if self.trainable and not self.can_train
            else self.title
        )

    @property
    def summary(self) -> str:
        """What projects of this task can do, in a sentence: "Detection — browse, split, search and
        find duplicates; training not yet available"."""
        verbs = [_VERBS[s] for s in self.sections]
        text = f"{self.title} — {', '.join(verbs[:-1])} and {verbs[-1]}"
        if not self.trainable:
            return f"{text}; no training"
        return text if self.can_train else f"{text}; training not yet available"


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
