"""Anomaly detection: the training parts of the ``anomaly_detection`` task (is this image normal?).

Data: a project with label classes in the MVTec layout — a **normal class** named ``good``
(``normal`` or ``ok`` too, any case, or ``0``: a CSV's ``label`` column of 0/1;
:func:`~vistudio.ml.inference.anomaly.normal_class`) and any number of defect classes
(``crack/``, ``scratch/``…), imported from class folders or a CSV. The
experiment keeps the project's classes, the normal one first (:meth:`AnomalyDetectionTask.model_classes`),
so that results can be broken down by defect type; the training target is 0 for the normal class
and 1 for every other one.

Model: a backbone of the classification catalog (``ml/models``) whose head is one linear output,
the **logit** of "anomalous"; the anomaly score is its sigmoid (0..1). Loss: ``BCEWithLogitsLoss``
with ``pos_weight`` = normal ÷ anomalous images of the **training subset** (config
``pos_weight: "balanced"``, the default; ``"none"`` or a number), so that rare anomalies weigh
as much as the normal images together.

Metrics, per epoch, from every score of the epoch (``ml/inference/anomaly``, the evaluation's
definitions): ``auroc``, ``ap`` (average precision) and ``f1`` at the threshold that maximises it,
for ``train_`` and ``val_``; the default monitor is ``val_auroc``. The validation threshold
(``details["threshold"]``, with ``threshold_tpr``, ``threshold_fpr`` and ``threshold_precision``) is saved with each checkpoint.

Augmentation: by default only a random horizontal flip: a crop can cut the defect out of the
image, colour jitter can hide a stain or make one.

**Only-normal training sets are refused** (a clear 400 when training starts): a single-logit
classifier trained on one class learns nothing about anomalies. A one-class method (PatchCore,
Deep SVDD, synthetic CutPaste anomalies) that learns from normal images alone is not available
yet. The training subset needs normal and anomalous images, and the validation subset at least
one of each (its AUROC is what selects the best checkpoint).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field
from torch import nn
from torchmetrics import Metric, MetricCollection

from vistudio.errors import BadRequest
from vistudio.ml.inference.anomaly import NORMAL_NAMES, anomaly_metrics, normal_class
from vistudio.ml.models import ModelInfo, build_model, get_model_spec
from vistudio.ml.tasks import register_training
from vistudio.ml.tasks.classification import EvalTransform, TrainTransform
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform

ONE_CLASS = (
    "training an anomaly detector needs anomalous images too: a one-class method that learns "
    "from normal images alone is not available yet"
)


def _light_augment() -> Augment:
    return Augment(crop=False, flip=True)


class AnomalyConfig(TrainConfig):
    """Anomaly detection keys on top of the generic ones (and a lighter default augmentation)."""

    pos_weight: Literal["balanced", "none"] | float = Field(
        default="balanced",
        description="weight of the anomalous images in the loss: balanced (normal ÷ anomalous "
        "images of the training subset), none (1), or a number",
    )
    augment: Augment = Field(
        default_factory=_light_augment,
        description="default: horizontal flip only (a crop can cut the defect out)",
    )


def build_scorer(
    name: str, *, pretrained: bool | str = False, freeze_backbone: bool = False
) -> tuple[nn.Module, ModelInfo]:
    """A catalog model whose head is one linear output (the anomaly logit): N×3×H×W → N×1."""
    # the classifier's builder (weights, freezing), then its head replaced by a fresh linear
    # layer with one output, which trains even when the backbone is frozen
    net, info = build_model(name, 2, pretrained=pretrained, freeze_backbone=freeze_backbone)
    parent, attr = get_model_spec(name).head(net)
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, 1))
    info.num_classes = 1
    return net, info


def rebuild_scorer(meta: dict[str, Any]) -> nn.Module:
    """The untrained scorer a checkpoint's ``meta`` describes (its weights are loaded over it)."""
    model, _ = build_scorer(meta["model"], pretrained=False)
    return model


class ScoreOutput(nn.Module):
    """A scorer with the sigmoid: N×3×H×W → N×1 anomaly scores in 0..1 (what is exported)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.net(x))


class ScoreCollector(Metric):
    """Every ``(logit, target)`` of an epoch; ``compute()`` → a 2×N float64 tensor (scores, targets)."""

    full_state_update = False
    logits: list[torch.Tensor]
    targets: list[torch.Tensor]

    def __init__(self) -> None:
        super().__init__()
        self.add_state("logits", default=[], dist_reduce_fx="cat")
        self.add_state("targets", default=[], dist_reduce_fx="cat")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.logits.append(preds.detach().reshape(-1).double())
        self.targets.append(target.detach().reshape(-1).double())

    def compute(self) -> torch.Tensor:
        if not self.logits:
            return torch.zeros(2, 0, dtype=torch.float64)
        return torch.stack([torch.sigmoid(torch.cat(self.logits)), torch.cat(self.targets)])


@register_training("anomaly_detection")
class AnomalyDetectionTask(TrainingTask):
    name = "anomaly_detection"
    config_model: ClassVar[type[TrainConfig]] = AnomalyConfig
    default_monitor = "val_auroc"
    model_noun = "anomaly detector"

    @classmethod
    def model_classes(cls, project_classes: list[str]) -> list[str]:
        """The normal class first, then the defect types (sorted); a project without a normal
        class, or with nothing but it, is a 400 that names its classes."""
        normal = normal_class(project_classes)
        shown = ", ".join(repr(c) for c in project_classes[:50]) or "none"
        if normal is None:
            raise BadRequest(
                f"an anomaly detection project needs a class of normal images named "
                f"{' or '.join(NORMAL_NAMES)} (any case); its classes are: {shown}",
                details={"classes": project_classes[:1000], "normal_names": list(NORMAL_NAMES)},
            )
        others = [c for c in project_classes if c != normal]
        if not others:
            raise BadRequest(
                f"the project has only normal images (class {normal!r}): {ONE_CLASS}; "
                "add at least one class of anomalous images",
                details={"classes": project_classes[:1000]},
            )
        return [normal, *others]

    @classmethod
    def metric_names(cls) -> list[str]:
        return [f"{p}_{m}" for p in ("train", "val") for m in ("loss", "auroc", "ap", "f1")]

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        anomalous = sum(1 for t in targets if int(t) != 0)
        if anomalous == 0:
            return f"its training images are all normal: {ONE_CLASS}"
        if anomalous == len(targets):
            return "its training images are all anomalous: an anomaly detector needs normal images"
        return None

    @classmethod
    def val_targets_problem(cls, targets: Sequence[Any]) -> str | None:
        anomalous = sum(1 for t in targets if int(t) != 0)
        if anomalous == 0 or anomalous == len(targets):
            kind = "anomalous" if anomalous == 0 else "normal"
            return (
                f"its validation subset has no {kind} image: the validation AUROC that picks the "
                "best checkpoint needs both normal and anomalous images"
            )
        return None

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        return build_scorer(
            self.config.model, pretrained=self.config.pretrained, freeze_backbone=self.config.freeze_backbone
        )

    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, AnomalyConfig)
        anomalous = sum(1 for t in train_targets if float(t) > 0.5)
        normal = len(train_targets) - anomalous
        if cfg.pos_weight == "none":
            weight = 1.0
        elif cfg.pos_weight == "balanced":
            weight = normal / anomalous if anomalous and normal else 1.0
        else:
            weight = float(cfg.pos_weight)
        self.pos_weight = weight
        return nn.BCEWithLogitsLoss(pos_weight=torch.tensor([weight], dtype=torch.float32))

    def build_metrics(self, prefix: str) -> MetricCollection:
        return MetricCollection({"scores": ScoreCollector()})

    def encode_target(self, target: Any) -> torch.Tensor:
        index = int(target)
        if not 0 <= index < len(self.classes):
            raise ValueError(f"class index {index} outside 0..{len(self.classes) - 1}")
        return torch.tensor(0.0 if index == 0 else 1.0, dtype=torch.float32)

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return TrainTransform(preprocess, self.config.augment)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return EvalTransform(preprocess)

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[torch.Tensor, Any, Any]:
        """``(BCE loss, logits N, targets N)``; the loss in float32 even under autocast."""
        x, y = batch
        logits = model(x).float().reshape(-1)
        target = y.float().reshape(-1)
        return loss(logits, target), logits.detach(), target

    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        scores, targets = computed["scores"].cpu().numpy()
        if scores.size == 0:
            return {}, {}
        m = anomaly_metrics(targets.round().astype(int), scores, threshold_by="f1")
        scalars = {f"{prefix}_{k}": float(m[k]) for k in ("auroc", "ap", "f1") if m[k] is not None}
        details: dict[str, Any] = {}
        if prefix == "val":
            # the validation threshold (best F1) and what it gives, saved with the checkpoint
            details = {"threshold": m["threshold"], "threshold_by": m["threshold_source"]}
            details |= {f"threshold_{k}": m[k] for k in ("tpr", "fpr", "precision")}
        return scalars, details

    def checkpoint_meta(self) -> dict[str, Any]:
        """What a checkpoint says about its output: one logit, whose sigmoid is the anomaly score
        (``ml/checkpoint.rebuild_model`` builds a scorer from it)."""
        return {"anomaly": {"normal_class": self.classes[0], "output": "logit"}}
