"""Single-label image classification: the training parts of the ``classification`` task.

Model from the catalog (``ml/models.build_model``), cross-entropy with optional label smoothing
and class weights, torchmetrics for accuracy and the confusion matrix; macro/micro precision,
recall and F1 and the per-class values are derived from that confusion matrix with the evaluation's
definitions (``ml/inference/metrics``), so a validation score and an evaluation of the same
checkpoint on the same images agree. Validation and test images go through the shared evaluation
preprocessing (``ml/preprocess``) so that training, evaluation, ONNX and ``predict`` see the same
input; training images get the augmentation toggles first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from PIL import Image
from pydantic import Field, field_validator
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
)
from torchvision.transforms import v2

from vistudio.errors import BadRequest
from vistudio.ml.inference.metrics import classification_metrics
from vistudio.ml.models import ModelInfo, build_model
from vistudio.ml.preprocess import eval_array
from vistudio.ml.tasks import register_training
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform

AVERAGED = ("precision", "recall", "f1")


class ClassificationConfig(TrainConfig):
    """Classification keys on top of the generic ones."""

    label_smoothing: float = Field(default=0.0, ge=0, le=0.5)
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        default="none",
        description="none; balanced (inverse class frequency in the training subset); or one "
        "weight per class, in class order",
    )

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not 2 <= len(v) <= 100_000:
                raise ValueError("give one weight per class")
            if any(not (0 <= w <= 1e6) for w in v):
                raise ValueError("class weights must be between 0 and 1e6")
            if not sum(v) > 0:
                raise ValueError("at least one class weight must be above 0")
        return v


class EvalTransform:
    """The shared evaluation preprocessing; the target passes through."""

    def __init__(self, preprocess: dict[str, Any]) -> None:
        self.preprocess = preprocess

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        return torch.from_numpy(eval_array(img, self.preprocess)), target


class TrainTransform(EvalTransform):
    """Augmentation on the decoded image, then the same resize/normalise as evaluation."""

    def __init__(self, preprocess: dict[str, Any], augment: Augment) -> None:
        super().__init__(preprocess)
        size = tuple(preprocess["input_size"])
        ops: list[Any] = []
        if augment.crop:
            ops.append(v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True))
        if augment.flip:
            ops.append(v2.RandomHorizontalFlip())
        if augment.rotate:
            ops.append(v2.RandomRotation(15))
        if augment.color:
            ops.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
        self.augment = v2.Compose(ops) if ops else None

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        if self.augment is not None:
            img = self.augment(img)
        return super().__call__(img, target)


@register_training("classification")
class ClassificationTask(TrainingTask):
    name = "classification"
    config_model: ClassVar[type[TrainConfig]] = ClassificationConfig
    default_monitor = "val_accuracy"

    @classmethod
    def metric_names(cls) -> list[str]:
        val = ["val_loss", "val_accuracy"] + [f"val_{m}_{a}" for m in AVERAGED for a in ("macro", "micro")]
        return ["train_loss", "train_accuracy", *val]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        return build_model(
            self.config.model,
            self.num_classes,
            pretrained=self.config.pretrained,
            freeze_backbone=self.config.freeze_backbone,
        )

    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, ClassificationConfig)
        weight = None
        if cfg.class_weights == "balanced":
            counts = Counter(int(t) for t in train_targets)
            total = sum(counts.values())
            # inverse frequency, normalised so that a balanced set gets weight 1 everywhere
            weight = torch.tensor(
                [total / (self.num_classes * max(1, counts.get(i, 0))) for i in range(self.num_classes)],
                dtype=torch.float32,
            )
        elif isinstance(cfg.class_weights, list):
            if len(cfg.class_weights) != self.num_classes:
                raise BadRequest(
                    f"class_weights has {len(cfg.class_weights)} values for {self.num_classes} classes"
                )
            weight = torch.tensor(cfg.class_weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight, label_smoothing=cfg.label_smoothing)

    def build_metrics(self, prefix: str) -> MetricCollection:
        n = self.num_classes
        metrics: dict[str, Any] = {"accuracy": MulticlassAccuracy(n, average="micro")}
        if prefix != "train":  # cheap while training: accuracy only
            # precision/recall/F1 come from the confusion matrix in summarise(), with the
            # evaluation's definitions (a class absent from truth and predictions counts as 0)
            metrics["confusion"] = MulticlassConfusionMatrix(n)
        return MetricCollection(metrics)

    def encode_target(self, target: Any) -> int:
        index = int(target)
        if not 0 <= index < self.num_classes:
            raise ValueError(f"class index {index} outside 0..{self.num_classes - 1}")
        return index

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return TrainTransform(preprocess, self.config.augment)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return EvalTransform(preprocess)

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[torch.Tensor, Any, Any]:
        x, y = batch
        logits = model(x)
        # the loss in float32 even under bf16 autocast: its log-softmax is precision-sensitive
        value = loss(logits.float(), y)
        return value, logits.detach().float(), y

    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        scalars = {f"{prefix}_{k}": float(v) for k, v in computed.items() if k != "confusion"}
        details: dict[str, Any] = {}
        if "confusion" in computed:
            cm = computed["confusion"].long().cpu().numpy()
            m = classification_metrics(cm, self.classes)
            for name in AVERAGED:
                for avg in ("macro", "micro"):
                    scalars[f"{prefix}_{name}_{avg}"] = m[f"{avg}_{name}"]
            details["confusion"] = cm.tolist()
            details["per_class"] = {
                row["class"]: {name: round(row[name], 6) for name in AVERAGED} for row in m["per_class"]
            }
        return scalars, details
