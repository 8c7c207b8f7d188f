"""What a task plugs into the generic training loop.

The LightningModule, DataModule and trainer factory in this package know nothing about a task:
they ask a :class:`TrainingTask` for the model, the loss, the metrics, the transforms and the
meaning of one batch. Adding a task (detection, segmentation, …) is one module in ``ml/tasks/``
with a subclass registered by ``vistudio.ml.tasks.register_training``; the loop stays as it is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from PIL import Image
from torch import nn
from torch.utils.data import default_collate
from torchmetrics import MetricCollection

from vistudio.ml.models import ModelInfo
from vistudio.ml.tasks import TaskDisplay
from vistudio.ml.training.config import TrainConfig

# (decoded RGB image, encoded target) → (input tensor C×H×W, target as the loss wants it)
Transform = Callable[[Image.Image, Any], tuple[torch.Tensor, Any]]


class TrainingTask(ABC):
    """The task-specific parts of training, for one experiment (its classes and config)."""

    name: ClassVar[str]
    config_model: ClassVar[type[TrainConfig]] = TrainConfig
    default_monitor: ClassVar[str]
    min_classes: ClassVar[int] = 2  # a classifier needs two classes; a detector one
    model_noun: ClassVar[str] = "classifier"  # what is trained, in messages ("… to train a classifier")

    def __init__(self, *, classes: list[str], config: TrainConfig) -> None:
        self.classes = list(classes)
        self.config = config

    @classmethod
    def model_classes(cls, project_classes: list[str]) -> list[str]:
        """The model's classes, in output order, from the project's class names (sorted): what an
        experiment freezes as its ``classes`` and what a stored target's class indices point into.
        The default is the project's classes unchanged; semantic segmentation puts a
        ``background`` class first."""
        return list(project_classes)

    @classmethod
    @abstractmethod
    def metric_names(cls) -> list[str]:
        """Scalar metrics reported every epoch (``train_…``/``val_…``), any of which can be monitored."""

    @classmethod
    def display(cls) -> TaskDisplay:
        """What the experiment pages, the comparison and the CLI show of this task's metrics
        (headline figures, live chart series). It is declared on the task's torch-free
        ``TaskSpec`` (``vistudio.ml.tasks``) so that pages read it without importing this module;
        every key it shows is one of :meth:`metric_names` or its ``_step`` variant."""
        from vistudio.ml.tasks import get_task

        return get_task(cls.name).display

    @classmethod
    def monitor_mode(cls, metric: str) -> str:
        """``min`` for losses and errors, ``max`` for everything else."""
        return "min" if metric.endswith(("loss", "error")) else "max"

    @abstractmethod
    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        """The network (random or pretrained backbone, head sized for ``classes``) and its info."""

    @abstractmethod
    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        """The loss; ``train_targets`` (encoded) lets it weight rare classes."""

    @abstractmethod
    def build_metrics(self, prefix: str) -> MetricCollection:
        """Metrics updated with ``(predictions, targets)`` of every batch, computed per epoch."""

    @abstractmethod
    def encode_target(self, target: Any) -> Any:
        """A stored target (class index, boxes…) → what the transforms and the loss take."""

    @abstractmethod
    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        """Augmentation, then the shared resize/normalise of ``preprocess``."""

    @abstractmethod
    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        """Exactly the shared evaluation preprocessing (``vistudio.ml.preprocess``)."""

    @abstractmethod
    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[torch.Tensor, Any, Any]:
        """One batch → ``(loss, predictions, targets)``; the last two go to the metrics. With the
        model in eval mode (validation) a task without a validation loss returns None as the loss."""

    @abstractmethod
    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Computed metrics → ``(scalars, details)``: scalars are stored per epoch and plotted;
        details (per-class values, confusion matrix) go with the epoch report and checkpoints."""

    def collate(self, batch: list[Any]) -> Any:
        """Samples → a batch (the default stacks inputs and targets)."""
        return default_collate(batch)

    def preprocess(self, info: ModelInfo) -> dict[str, Any]:
        """The input description stored with checkpoints (``meta["preprocess"]``) and handed to the
        transforms; the default is the shared classification preprocessing at the config's size."""
        from vistudio.ml.preprocess import preprocess_meta

        return preprocess_meta(self.config.image_size, info.mean, info.std)

    @classmethod
    def catalog(cls) -> list[dict[str, Any]]:
        """The models this task trains (``describe()`` of each catalog entry); default: the image
        classifiers of ``ml/models``."""
        from vistudio.ml.models import MODELS

        return [spec.describe() for spec in MODELS.entries.values()]

    @classmethod
    def check_config(cls, config: TrainConfig, weights: Any = None) -> None:
        """What can be checked before training starts: the model is in the task's catalog and its
        pretrained weights are present or downloadable under ``weights`` (a ``WeightsPolicy``).
        The default checks the image classifiers of ``ml/models``."""
        from pathlib import Path

        from vistudio.errors import ModelUnavailable
        from vistudio.ml.models import check_pretrained_available, get_model_spec, weights_file_exists

        spec = get_model_spec(config.model)
        if config.pretrained is True:
            check_pretrained_available(spec, weights)
        if isinstance(config.pretrained, str) and not weights_file_exists(
            Path(config.pretrained).expanduser()
        ):
            raise ModelUnavailable(
                f"pretrained weights file not found: {config.pretrained[:300]}", details={"model": spec.name}
            )

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        """Why the (stored, not yet encoded) training targets of a split cannot train a model, or
        None; the default accepts any non-empty list (its items are already usable)."""
        return None

    @classmethod
    def targets_warnings(cls, targets: Sequence[Any]) -> list[dict[str, Any]]:
        """What in the (stored) training and validation targets will be left out of training,
        as config-style warnings (``{"key", "code", "message", …}``); the default: nothing."""
        return []

    @classmethod
    def val_targets_problem(cls, targets: Sequence[Any]) -> str | None:
        """Why the (stored) validation targets of a split cannot select the best checkpoint, or
        None (the default); anomaly detection needs normal and anomalous images there."""
        return None

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra fields for checkpoint ``meta`` (the generic ones are added by the loop)."""
        return {}
