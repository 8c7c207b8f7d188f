"""Oriented object detection: the training parts of the ``oriented_detection`` task (rotated boxes).

Models come from the oriented detector catalog (``ml/oriented_detectors``: a ResNet/FPN backbone
with a dense head that predicts each object's centre, size and angle — FCOS-style from every
location, or RetinaNet-style relative to anchors). The model computes its own losses in training
mode; each component is averaged over the epoch and reported as ``train_loss_classifier``,
``train_loss_box_reg`` (centre and size), ``train_loss_angle`` and ``train_loss_centerness`` (not
reported by the RetinaNet-style models, which have no centre-ness). Validation runs the model in eval mode and
computes the DOTA-style mAP at IoU 0.5 (``ml/inference/dota_metrics.dota_ap``, polygon IoU,
difficult objects ignored): ``val_map50`` with the 11-point AP (the DOTA devkit's and MMRotate's
default) and ``val_map50_area`` with the area under the precision-recall curve; there is no
validation loss.

Data: a stored target (``services.experiments.split_items``) lists each object with its four
corners normalised to the image (``points``). :meth:`OrientedDetectionTask.encode_target` leaves
out rotated boxes without a width or a height (nothing to learn or to find; the experiment's
start warns about them) and keeps difficult objects for the metric only. Augmentation moves the
corner points with the image — horizontal and vertical flips (``augment.flip``), turns by a
multiple of 90° (``augment.rotate``), colour jitter (``augment.color``) — and the boxes' (cx, cy,
w, h, θ) are derived again from the moved corners. ``augment.crop`` does not apply to rotated
boxes (a crop would cut boxes into shapes that are no longer rectangles).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from PIL import Image
from pydantic import Field
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vistudio.ml.detectors import IMAGENET_MEAN, IMAGENET_STD
from vistudio.ml.inference.dota_metrics import OrientedDetection, OrientedObject, dota_ap
from vistudio.ml.inference.rotated import MIN_SIDE_PX, cxcywha_from_corners, rotated_object
from vistudio.ml.models import ModelInfo
from vistudio.ml.oriented_detectors import (
    FAMILIES,
    LOSS_NAMES,
    build_oriented_detector,
    check_oriented_weights,
    get_oriented_spec,
    to_sample_pixels,
)
from vistudio.ml.preprocess import PREPROCESS_VERSION
from vistudio.ml.tasks import register_training
from vistudio.ml.tasks.detection import DetectionConfig, DetectionEvalTransform, LossMeans
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform


class OrientedDetectionConfig(DetectionConfig):
    """The detector keys, for the oriented detector catalog."""

    model: str = Field(
        default="fcos_obb_resnet18_fpn64", max_length=64, description="an oriented detector of the catalog"
    )
    pretrained: str = Field(
        default="none",
        description="none: random init; backbone: ImageNet weights of the backbone (the *_resnet50_fpn models)",
    )
    nms_iou: float = Field(
        default=0.3, gt=0, le=1, description="rotated IoU above which NMS drops the weaker box"
    )

    def warnings(self) -> list[dict[str, Any]]:
        from vistudio.errors import VistudioError

        try:
            spec = get_oriented_spec(self.model)
        except VistudioError:
            return []
        if self.image_size < spec.min_image_size:
            return [
                {
                    "key": "image_size",
                    "code": "image_size_too_small",
                    "minimum": spec.min_image_size,
                    "message": f"{self.image_size} px is small for {spec.name}: objects shrink below what "
                    f"its feature maps can locate; use an image size of {spec.min_image_size} px or more",
                }
            ]
        return []


def degenerate_count(targets: Sequence[Any]) -> int:
    """How many objects of stored targets have no usable rotated box."""
    return sum(
        rotated_object(o, int(t["width"]), int(t["height"])) is None for t in targets for o in t["objects"]
    )


class OrientedTrainTransform:
    """Stored target → ``{"boxes": (M, 5) cx, cy, w, h, θ, "labels": (M,)}`` at the decoded
    image's size, with the image and its corner points augmented together; difficult objects are
    left out of training."""

    def __init__(self, augment: Augment) -> None:
        self.flip = augment.flip
        self.rotate = augment.rotate
        self.color = v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2) if augment.color else None

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        width, height = img.size
        objects = [o for o in target["objects"] if not o["iscrowd"]]
        corners = np.array(
            [np.asarray(o["points"], dtype=np.float64) for o in objects], dtype=np.float64
        ).reshape(-1, 4, 2) * np.array([width, height])
        image = F.pil_to_tensor(img)
        if self.flip and random.random() < 0.5:
            image = image.flip(-1)
            corners[..., 0] = width - corners[..., 0]
        if self.flip and random.random() < 0.5:
            image = image.flip(-2)
            corners[..., 1] = height - corners[..., 1]
        if self.rotate:
            for _ in range(random.randrange(4)):  # each a quarter turn, counter-clockwise on screen
                w = image.shape[-1]
                image = torch.rot90(image, 1, dims=(-2, -1))
                corners = np.stack([corners[..., 1], w - corners[..., 0]], axis=-1)
        if self.color is not None:
            image = self.color(image)
        boxes = cxcywha_from_corners(corners) if len(corners) else np.zeros((0, 5))
        out = {
            "boxes": torch.from_numpy(boxes).float(),
            "labels": torch.tensor([o["class"] for o in objects], dtype=torch.int64),
        }
        return F.to_dtype(image, torch.float32, scale=True), out


class OrientedMAP(Metric):
    """DOTA mAP50 of the validation images (11-point and area), in each sample's pixels."""

    full_state_update = False
    images: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state("images", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.truths: list[OrientedObject] = []
        self.detections: list[OrientedDetection] = []
        self.count = 0

    def update(self, predictions: Sequence[dict[str, Any]], targets: Sequence[dict[str, Any]]) -> None:
        for p, t in zip(predictions, targets, strict=True):
            image = self.count
            self.count += 1
            w, h = int(t["width"]), int(t["height"])
            for o in t["objects"]:
                found = rotated_object(o, w, h)
                if found is not None:
                    self.truths.append(OrientedObject(image, int(o["class"]), found[0], bool(o["iscrowd"])))
            self.detections.extend(
                OrientedDetection(image, int(k), c, float(s))
                for k, c, s in zip(p["labels"], p["corners"], p["scores"], strict=True)
            )
        self.images = self.images + len(targets)

    def reset(self) -> None:
        super().reset()
        self.truths, self.detections, self.count = [], [], 0

    def compute(self) -> dict[str, torch.Tensor]:
        out = {}
        per_class = []
        for key, method in (("map50", "11point"), ("map50_area", "area")):
            r = dota_ap(self.detections, self.truths, num_classes=self.num_classes, method=method)
            out[key] = torch.tensor(r["map"] if r["map"] is not None else 0.0, dtype=torch.float64)
            per_class.append([-1.0 if a is None else a for a in r["ap"]])
        out["per_class"] = torch.tensor(per_class, dtype=torch.float64).T.reshape(self.num_classes, 2)
        return out


@register_training("oriented_detection")
class OrientedDetectionTask(TrainingTask):
    name = "oriented_detection"
    config_model: ClassVar[type[TrainConfig]] = OrientedDetectionConfig
    default_monitor = "val_map50"
    min_classes = 1
    model_noun = "detector"

    @classmethod
    def metric_names(cls) -> list[str]:
        return ["train_loss", *(f"train_{n}" for n in LOSS_NAMES), "val_map50", "val_map50_area"]

    @classmethod
    def monitor_mode(cls, metric: str) -> str:
        return "min" if metric.startswith("train_loss") else "max"

    @classmethod
    def catalog(cls) -> list[dict[str, Any]]:
        from vistudio.ml.detectors import _hub_file
        from vistudio.ml.oriented_detectors import ORIENTED_DETECTORS

        items = []
        for spec in ORIENTED_DETECTORS.entries.values():
            cached = {
                "backbone": spec.backbone_weights is not None and _hub_file(spec.backbone_weights).is_file(),
                "coco": False,
            }
            items.append(
                {
                    **spec.describe(),
                    "params_millions": None,
                    "pretrained_cached": any(cached.values()),
                    "weights_cached": cached,
                }
            )
        return items

    @classmethod
    def check_config(cls, config: TrainConfig, weights: Any = None) -> None:
        assert isinstance(config, OrientedDetectionConfig)
        spec = get_oriented_spec(config.model)
        check_oriented_weights(spec, config.pretrained, weights)

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        usable = any(
            not o["iscrowd"] and rotated_object(o, int(t["width"]), int(t["height"])) is not None
            for t in targets
            for o in t["objects"]
        )
        if not usable:
            return (
                "its training images have no rotated boxes of the project's classes with a width and a "
                "height (difficult ones do not count): annotate or import rotated boxes first"
            )
        return None

    @classmethod
    def targets_warnings(cls, targets: Sequence[Any]) -> list[dict[str, Any]]:
        n = degenerate_count(targets)
        if not n:
            return []
        return [
            {
                "key": "objects",
                "code": "degenerate_rotated_boxes",
                "count": n,
                "message": f"{n} rotated box{'es' if n > 1 else ''} of the training and validation images "
                f"{'have' if n > 1 else 'has'} no width or no height (a side under {MIN_SIDE_PX} px): "
                "skipped, as nothing can be learnt from or found of them",
            }
        ]

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        cfg = self.config
        assert isinstance(cfg, OrientedDetectionConfig)
        return build_oriented_detector(
            cfg.model,
            len(self.classes),
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            score_threshold=cfg.score_threshold,
            nms_iou=cfg.nms_iou,
            detections_per_image=cfg.detections_per_image,
            trainable_backbone_layers=cfg.trainable_backbone_layers,
        )

    def preprocess(self, info: ModelInfo) -> dict[str, Any]:
        size = int(info.extra.get("image_size") or self.config.image_size)
        return {
            "kind": "oriented_detection",
            "version": PREPROCESS_VERSION,
            "input_size": [size, size],
            "mean": list(info.mean or IMAGENET_MEAN),
            "std": list(info.std or IMAGENET_STD),
            "scale": 1 / 255,
            "color": "RGB",
        }

    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        return nn.Identity()  # the detector computes its own losses

    def build_metrics(self, prefix: str) -> MetricCollection:
        if prefix == "train":
            family = FAMILIES[get_oriented_spec(self.config.model).family]
            return MetricCollection({"losses": LossMeans(family.loss_names)})
        return MetricCollection({"map": OrientedMAP(len(self.classes))})

    def encode_target(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, dict) or not isinstance(target.get("objects"), list):
            raise ValueError("an oriented detection target is {'width', 'height', 'objects': [...]}")
        width, height = int(target["width"]), int(target["height"])
        objects = []
        for o in target["objects"]:
            k = int(o["class"])
            if not 0 <= k < len(self.classes):
                raise ValueError(f"class index {k} outside 0..{len(self.classes) - 1}")
            if rotated_object(o, width, height) is None:
                continue  # no width or height: counted by targets_warnings when the experiment starts
            objects.append(
                {
                    "class": k,
                    "points": [[float(x), float(y)] for x, y in o["points"]],
                    "iscrowd": bool(o.get("iscrowd")),
                }
            )
        return {"width": width, "height": height, "objects": objects}

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return OrientedTrainTransform(self.config.augment)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return DetectionEvalTransform()

    def collate(self, batch: list[Any]) -> Any:
        images, targets = zip(*batch, strict=True) if batch else ((), ())
        return list(images), list(targets)

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[Any, Any, Any]:
        images, targets = batch
        if model.training:
            losses = {k: v.float() for k, v in model(images, targets).items()}
            total = torch.stack(list(losses.values())).sum()
            return total, {k: v.detach() for k, v in losses.items()}, targets
        outputs = model(images)
        detections = [
            to_sample_pixels(
                out,
                input_size=(int(img.shape[-1]), int(img.shape[-2])),
                original_size=(int(t["width"]), int(t["height"])),
            )
            for out, img, t in zip(outputs, images, targets, strict=True)
        ]
        return None, detections, targets

    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        scalars: dict[str, float] = {}
        details: dict[str, Any] = {}
        for key, value in computed.items():
            if key == "per_class":
                details["per_class"] = {
                    name: {
                        "ap50": None if row[0] < 0 else round(row[0], 6),
                        "ap50_area": None if row[1] < 0 else round(row[1], 6),
                    }
                    for name, row in zip(self.classes, value.cpu().tolist(), strict=True)
                }
            else:
                scalars[f"{prefix}_{key}"] = float(value)
        return scalars, details

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"oriented": True, "family": get_oriented_spec(self.config.model).family}
