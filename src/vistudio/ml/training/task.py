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
from vistudio.ml.training.config import TrainConfig

# (decoded RGB image, encoded target) → (input tensor C×H×W, target as the loss wants it)
Transform = Callable[[Image.Image, Any], tuple[torch.Tensor, Any]]


class TrainingTask(ABC):
    """The task-specific parts of training, for one experiment (its classes and config)."""

    name: ClassVar[str]
    config_model: ClassVar[type[TrainConfig]] = TrainConfig
    default_monitor: ClassVar[str]
    min_classes: ClassVar[int] = 2  # a classifier needs two classes; a detector one

    def __init__(self, *, classes: list[str], config: TrainConfig) -> None:
        self.classes = list(classes)
        self.config = config

    @classmethod
    @abstractmethod
    def metric_names(cls) -> list[str]:
        """Scalar metrics reported every epoch (``train_…``/``val_…``), any of which can be monitored."""

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
        """One batch → ``(loss, predictions, targets)``; the last two go to the metrics."""

    @abstractmethod
    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        """Computed metrics → ``(scalars, details)``: scalars are stored per epoch and plotted;
        details (per-class values, confusion matrix) go with the epoch report and checkpoints."""

    def collate(self, batch: list[Any]) -> Any:
        """Samples → a batch (the default stacks inputs and targets)."""
        return default_collate(batch)

    def checkpoint_meta(self) -> dict[str, Any]:
        """Extra fields for checkpoint ``meta`` (the generic ones are added by the loop)."""
        return {}
