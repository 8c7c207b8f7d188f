"""Object detection: the training parts of the ``detection`` task (boxes).

Models come from the detector catalog (``ml/detectors.build_detector``: torchvision's Faster
R-CNN, FCOS, RetinaNet, SSD, SSDLite and the small ResNet-18 configurations), sized to the
experiment's image size so that torchvision never upscales images to 800 px behind the user's back.
The detectors compute their own losses in training mode; each loss component is averaged over the
epoch and reported as ``train_<component>`` with one name per meaning whatever the family
(``train_loss_classifier``, ``train_loss_box_reg``, ``train_loss_objectness``,
``train_loss_rpn_box_reg``, ``train_loss_centerness``, ``train_loss_mask``). Validation runs the
model in eval mode and computes COCO mAP (``val_map``, ``val_map50``, ``val_map75``) with the
evaluation's own function (``ml/inference/detection_metrics``, equal to pycocotools), in the
sample's pixels, crowd regions and VOC difficult objects ignored; there is no validation loss
(torchvision's detectors only give losses in training mode).

Data: a stored target (``services.experiments.split_items``) holds normalised boxes (and masks
for instance segmentation); the transforms turn it into torchvision's target format at the
decoded image's size, with the augmentation toggles applied jointly to the image, its boxes and
its masks (``torchvision.transforms.v2``). Crowd/difficult objects are left out of the training
targets (torchvision's losses know no ignored regions). A batch is ``(list of images, list of
targets)``: images keep their own sizes.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar, cast

import numpy as np
import torch
from PIL import Image
from pydantic import Field, field_validator
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from vistudio.ml.detectors import IMAGENET_MEAN, IMAGENET_STD, build_detector, get_detector_spec
from vistudio.ml.inference.detection_metrics import (
    PredictedBox,
    PredictedMask,
    TruthBox,
    TruthImage,
    TruthMask,
    coco_box_metrics,
    coco_mask_metrics,
)
from vistudio.ml.inference.detections import Detections, from_torchvision, rle_area
from vistudio.ml.models import ModelInfo
from vistudio.ml.preprocess import PREPROCESS_VERSION
from vistudio.ml.tasks import register_training
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform

# torchvision's loss names → one stable name per meaning, whatever the family
LOSS_NAMES = {
    "loss_classifier": "loss_classifier",
    "classification": "loss_classifier",
    "loss_box_reg": "loss_box_reg",
    "bbox_regression": "loss_box_reg",
    "loss_objectness": "loss_objectness",
    "loss_rpn_box_reg": "loss_rpn_box_reg",
    "bbox_ctrness": "loss_centerness",
    "loss_mask": "loss_mask",
}
FAMILY_LOSSES: dict[str, tuple[str, ...]] = {
    "faster_rcnn": ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"),
    "mask_rcnn": ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_mask"),
    "fcos": ("loss_classifier", "loss_box_reg", "loss_centerness"),
    "retinanet": ("loss_classifier", "loss_box_reg"),
    "ssd": ("loss_classifier", "loss_box_reg"),
    "ssdlite": ("loss_classifier", "loss_box_reg"),
}
BOX_LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg", "loss_centerness")


class DetectionConfig(TrainConfig):
    """Detector keys on top of the generic ones."""

    model: str = Field(
        default="fasterrcnn_mobilenet_v3_large_320_fpn",
        max_length=64,
        description="a detector of the catalog",
    )
    pretrained: str = Field(
        default="none",
        description="none: random init; backbone: ImageNet weights of the backbone; coco: the whole "
        "detector trained on COCO (its class head replaced); true/false mean backbone/none",
    )
    image_size: int = Field(
        default=320, ge=32, le=2048, description="images are resized to this side (min_size = max_size)"
    )
    batch_size: int = Field(default=8, ge=1, le=1024)
    score_threshold: float = Field(
        default=0.05, ge=0, le=1, description="detections scoring below are dropped (validation, export)"
    )
    nms_iou: float = Field(default=0.5, gt=0, le=1, description="IoU above which NMS drops the weaker box")
    detections_per_image: int = Field(default=100, ge=1, le=1000)
    trainable_backbone_layers: int | None = Field(
        default=None,
        ge=0,
        le=6,
        description="pretrained backbones: how many of its last stages train (None: torchvision's default)",
    )

    @field_validator("pretrained", mode="before")
    @classmethod
    def _pretrained(cls, v: Any) -> str:
        if v is True:
            return "backbone"
        if v is False or v is None:
            return "none"
        if isinstance(v, str) and v.strip().lower() in ("none", "backbone", "coco"):
            return v.strip().lower()
        raise ValueError(
            "pretrained must be none, backbone or coco for a detector (a weights file is not supported)"
        )

    @field_validator("freeze_backbone")
    @classmethod
    def _freeze(cls, v: bool) -> bool:
        if v:
            raise ValueError("detectors choose how many backbone stages train: use trainable_backbone_layers")
        return v

    def warnings(self) -> list[dict[str, Any]]:
        from vistudio.errors import VistudioError

        try:
            spec = get_detector_spec(self.model)
        except VistudioError:
            return []
        out: list[dict[str, Any]] = []
        if spec.fixed_size is not None and self.image_size != spec.fixed_size:
            out.append(
                {
                    "key": "image_size",
                    "code": "image_size_fixed",
                    "size": spec.fixed_size,
                    "message": f"{spec.name} always sees {spec.fixed_size}×{spec.fixed_size} px images: "
                    f"the image size {self.image_size} is ignored",
                }
            )
        elif self.image_size < spec.min_image_size:
            out.append(
                {
                    "key": "image_size",
                    "code": "image_size_too_small",
                    "minimum": spec.min_image_size,
                    "message": f"{self.image_size} px is small for {spec.name}: objects shrink below what "
                    f"its feature maps can locate; use an image size of {spec.min_image_size} px or more",
                }
            )
        elif self.image_size > 1024:
            out.append(
                {
                    "key": "image_size",
                    "code": "image_size_large",
                    "message": f"every image is resized to {self.image_size} px: training is slow, "
                    "especially without a GPU",
                }
            )
        return out


def _object_rle(obj: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """One stored object's mask as a COCO RLE at ``width``×``height``, rasterised exactly as the
    evaluation's ground truth is (``detection_matching.object_rle``: polygons through pycocotools,
    an RLE stored at another size resized with nearest neighbour, no mask: the box filled)."""
    from vistudio.ml.inference.detection_matching import object_rle

    x, y, w, h = obj["box"]
    box = (x * width, y * height, (x + w) * width, (y + h) * height)
    return object_rle(obj.get("mask"), box, width=width, height=height)


def _rasterise(objects: Sequence[dict[str, Any]], width: int, height: int) -> torch.Tensor:
    """The objects' masks at ``width``×``height`` as ``(N, H, W)`` uint8, the same pixels as the
    evaluation's ground truth (:func:`truth_rle`)."""
    if not objects:
        return torch.zeros((0, height, width), dtype=torch.uint8)
    from vistudio.ml.inference.detections import decode_masks

    decoded = decode_masks([_object_rle(o, width, height) for o in objects])
    return torch.from_numpy(np.ascontiguousarray(decoded, dtype=np.uint8))


def truth_rle(obj: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    """One stored object's mask as an RLE at ``width``×``height`` (the sample's size)."""
    return _object_rle(obj, width, height)


class RandomScaleCrop:
    """Zoom in: with probability ``p``, crop a random window of ``min_scale``..1 of the image's area
    (same aspect ratio); boxes are clipped to it, masks cropped. The detector resizes the window
    back to the image size, so objects grow by up to 1/sqrt(min_scale) — the scale jitter."""

    def __init__(self, min_scale: float = 0.4, p: float = 0.5) -> None:
        self.min_scale, self.p = min_scale, p

    def __call__(self, sample: dict[str, Any]) -> dict[str, Any]:
        if random.random() >= self.p:
            return sample
        height, width = sample["image"].shape[-2:]
        s = math.sqrt(random.uniform(self.min_scale, 1.0))
        ch, cw = max(1, round(height * s)), max(1, round(width * s))
        top, left = random.randint(0, height - ch), random.randint(0, width - cw)
        return {
            k: F.crop(v, top, left, ch, cw) if isinstance(v, tv_tensors.TVTensor) else v
            for k, v in sample.items()
        }


class DetectionEvalTransform:
    """The image as a float 0..1 tensor at its decoded size; the stored target passes through with
    the decoded size added (the model resizes and normalises inside)."""

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        return F.to_dtype(F.pil_to_tensor(img), torch.float32, scale=True), target


class DetectionTrainTransform:
    """Stored target → torchvision's target at the decoded size, then joint augmentation of the
    image, its boxes and masks; boxes that leave the image (or shrink below a pixel) are dropped."""

    def __init__(self, augment: Augment, *, masks: bool) -> None:
        self.masks = masks
        ops: list[Any] = []
        if augment.crop:
            ops.append(RandomScaleCrop())
        if augment.flip:
            ops.append(v2.RandomHorizontalFlip())
        if augment.rotate:
            ops.append(v2.RandomRotation(10))
        if augment.color:
            ops.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
        self.augment = v2.Compose(ops) if ops else None
        self.sanitize = v2.SanitizeBoundingBoxes(min_size=1.0)

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        width, height = img.size
        objects = [o for o in target["objects"] if not o["iscrowd"]]
        boxes = torch.tensor(
            [
                [x * width, y * height, (x + w) * width, (y + h) * height]
                for x, y, w, h in (o["box"] for o in objects)
            ],
            dtype=torch.float32,
        ).reshape(-1, 4)
        sample: dict[str, Any] = {
            "image": tv_tensors.Image(F.pil_to_tensor(img)),
            "boxes": tv_tensors.BoundingBoxes(boxes, format="XYXY", canvas_size=(height, width)),
            "labels": torch.tensor([o["class"] + 1 for o in objects], dtype=torch.int64),
        }
        if self.masks:
            sample["masks"] = tv_tensors.Mask(_rasterise(objects, width, height))
        if self.augment is not None:
            sample = self.augment(sample)
        sample = self.sanitize(sample)
        out: dict[str, Any] = {
            "boxes": sample["boxes"].as_subclass(torch.Tensor).float(),
            "labels": sample["labels"],
        }
        if self.masks:
            out["masks"] = sample["masks"].as_subclass(torch.Tensor)
        image = F.to_dtype(sample["image"].as_subclass(torch.Tensor), torch.float32, scale=True)
        return image, out


class LossMeans(Metric):
    """The mean of each loss component over the batches of an epoch (weighted by batch size)."""

    full_state_update = False
    images: torch.Tensor

    def __init__(self, names: Sequence[str]) -> None:
        super().__init__()
        self.names = tuple(names)
        for name in self.names:
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("images", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, losses: dict[str, torch.Tensor], targets: Sequence[Any]) -> None:
        n = len(targets)
        for name in self.names:
            if name in losses:
                setattr(self, name, getattr(self, name) + losses[name].detach().double() * n)
        self.images = self.images + n

    def compute(self) -> dict[str, torch.Tensor]:
        count = self.images.clamp(min=1)
        return {name: getattr(self, name) / count for name in self.names}


class DetectionMAP(Metric):
    """COCO mAP of the validation images, in each sample's pixels, through the evaluation's function.

    Keeps every image's ground truth and :class:`Detections` until ``compute``."""

    full_state_update = False
    images: torch.Tensor

    def __init__(self, num_classes: int, *, masks: bool) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.masks = masks
        self.add_state("images", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.truths: list[dict[str, Any]] = []
        self.predictions: list[Detections] = []

    def update(self, predictions: Sequence[Detections], targets: Sequence[dict[str, Any]]) -> None:
        self.truths.extend(targets)
        self.predictions.extend(predictions)
        self.images = self.images + len(targets)

    def reset(self) -> None:
        super().reset()
        self.truths, self.predictions = [], []

    def compute(self) -> dict[str, torch.Tensor]:
        classes = range(self.num_classes)
        truths, boxes, masks = [], {}, {}
        mask_truths = []
        for image_id, (t, d) in enumerate(zip(self.truths, self.predictions, strict=True), start=1):
            w, h = int(t["width"]), int(t["height"])
            objects = t["objects"]
            # instance segmentation: the box statistics' size ranges use the mask area, as COCO's
            # own annotations (and the evaluation) do
            rles = [truth_rle(o, w, h) for o in objects] if self.masks else []
            areas = rle_area(rles).tolist() if rles else [None] * len(objects)
            truths.append(
                TruthImage(
                    image_id,
                    w,
                    h,
                    [
                        TruthBox(
                            o["class"],
                            (o["box"][0] * w, o["box"][1] * h, o["box"][2] * w, o["box"][3] * h),
                            o["iscrowd"],
                            area,
                        )
                        for o, area in zip(objects, areas, strict=True)
                    ],
                )
            )
            xywh = d.boxes.copy()
            xywh[:, 2:] -= xywh[:, :2]
            boxes[image_id] = [
                PredictedBox(int(k), tuple(float(v) for v in b), float(s))  # type: ignore[arg-type]
                for k, b, s in zip(d.labels, xywh, d.scores, strict=True)
            ]
            if self.masks:
                mask_truths.append(
                    TruthImage(
                        image_id,
                        w,
                        h,
                        cast(
                            Any,
                            [
                                TruthMask(o["class"], r, o["iscrowd"])
                                for o, r in zip(objects, rles, strict=True)
                            ],
                        ),
                    )
                )
                masks[image_id] = [
                    PredictedMask(int(k), r, float(s))
                    for k, r, s in zip(d.labels, d.masks or [], d.scores, strict=True)
                ]
        out: dict[str, torch.Tensor] = {}
        parts = [("", coco_box_metrics(truths=truths, predictions=boxes, class_ids=classes))]
        if self.masks:
            parts.append(
                ("mask_", coco_mask_metrics(truths=mask_truths, predictions=masks, class_ids=classes))
            )
        for prefix, m in parts:
            out[f"{prefix}map"] = torch.tensor(m.ap, dtype=torch.float64)
            out[f"{prefix}map50"] = torch.tensor(m.ap50, dtype=torch.float64)
            out[f"{prefix}map75"] = torch.tensor(m.ap75, dtype=torch.float64)
            out[f"{prefix}per_class"] = torch.tensor(
                [
                    [m.per_class[k].ap, m.per_class[k].ap50] if k in m.per_class else [-1.0, -1.0]
                    for k in classes
                ],
                dtype=torch.float64,
            )
        return out


@register_training("detection")
class DetectionTask(TrainingTask):
    name = "detection"
    config_model: ClassVar[type[TrainConfig]] = DetectionConfig
    default_monitor = "val_map"
    min_classes = 1
    model_noun = "detector"
    masks: ClassVar[bool] = False
    # what the objects of a training target are made of, in messages
    object_words: ClassVar[str] = "boxes"

    @classmethod
    def metric_names(cls) -> list[str]:
        losses = [f"train_{n}" for n in BOX_LOSSES] + (["train_loss_mask"] if cls.masks else [])
        val = ["val_map", "val_map50", "val_map75"]
        if cls.masks:
            val += ["val_mask_map", "val_mask_map50", "val_mask_map75"]
        return ["train_loss", *losses, *val]

    @classmethod
    def monitor_mode(cls, metric: str) -> str:
        return "min" if metric.startswith("train_loss") else "max"

    @classmethod
    def catalog(cls) -> list[dict[str, Any]]:
        from vistudio.ml.detectors import DETECTORS, _hub_file

        items = []
        for spec in DETECTORS.entries.values():
            if spec.task != cls.name:
                continue
            cached = {
                kind: weights is not None and _hub_file(weights).is_file()
                for kind, weights in (("backbone", spec.backbone_weights), ("coco", spec.coco_weights))
            }
            num_params = spec.coco_weights.meta.get("num_params", 0) if spec.coco_weights is not None else 0
            items.append(
                {
                    **spec.describe(),
                    "params_millions": round(num_params / 1e6, 1) if num_params else None,
                    "pretrained_cached": any(cached.values()),
                    "weights_cached": cached,
                }
            )
        return items

    @classmethod
    def check_config(cls, config: TrainConfig, weights: Any = None) -> None:
        from vistudio.errors import BadRequest
        from vistudio.ml.detectors import check_detector_weights

        assert isinstance(config, DetectionConfig)
        spec = get_detector_spec(config.model, cls.name)
        layers = config.trainable_backbone_layers
        if layers is not None and layers > spec.max_trainable_layers:
            raise BadRequest(
                f"invalid training config: trainable_backbone_layers: {spec.name} has "
                f"{spec.max_trainable_layers} backbone stages; use 0..{spec.max_trainable_layers}",
                details={"errors": [{"key": "trainable_backbone_layers", "message": "too many layers"}]},
            )
        check_detector_weights(spec, config.pretrained, weights)

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        if not any(not o["iscrowd"] for t in targets for o in t["objects"]):
            return (
                f"its training images have no {cls.object_words} of the project's classes (crowd and "
                f"difficult ones do not count): annotate or import {cls.object_words} first"
            )
        return None

    @property
    def spec(self) -> Any:
        return get_detector_spec(self.config.model, self.name)

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        cfg = self.config
        assert isinstance(cfg, DetectionConfig)
        return build_detector(
            cfg.model,
            len(self.classes),
            image_size=cfg.image_size,
            pretrained=cfg.pretrained,
            score_threshold=cfg.score_threshold,
            nms_iou=cfg.nms_iou,
            detections_per_image=cfg.detections_per_image,
            trainable_backbone_layers=cfg.trainable_backbone_layers,
            task=self.name,
        )

    def preprocess(self, info: ModelInfo) -> dict[str, Any]:
        size = int(info.extra.get("image_size") or self.config.image_size)
        return {
            "kind": "detection",
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
            return MetricCollection({"losses": LossMeans(FAMILY_LOSSES[self.spec.family])})
        return MetricCollection({"map": DetectionMAP(len(self.classes), masks=self.masks)})

    def encode_target(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, dict) or not isinstance(target.get("objects"), list):
            raise ValueError("a detection target is {'width', 'height', 'objects': [...]}")
        objects = []
        for o in target["objects"]:
            k = int(o["class"])
            if not 0 <= k < len(self.classes):
                raise ValueError(f"class index {k} outside 0..{len(self.classes) - 1}")
            box = [float(v) for v in o["box"]]
            if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
                continue  # no area: nothing to learn or to find
            objects.append(
                {
                    "class": k,
                    "box": box,
                    "iscrowd": bool(o.get("iscrowd")),
                    "mask": o.get("mask") if self.masks else None,
                }
            )
        return {"width": int(target["width"]), "height": int(target["height"]), "objects": objects}

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return DetectionTrainTransform(self.config.augment, masks=self.masks)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return DetectionEvalTransform()

    def collate(self, batch: list[Any]) -> Any:
        images, targets = zip(*batch, strict=True) if batch else ((), ())
        return list(images), list(targets)

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[Any, Any, Any]:
        images, targets = batch
        if model.training:
            raw = model(images, targets)
            losses = {LOSS_NAMES.get(k, k): v.float() for k, v in raw.items()}
            total = torch.stack(list(losses.values())).sum()
            return total, {k: v.detach() for k, v in losses.items()}, targets
        outputs = model(images)
        detections = [
            from_torchvision(
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
            if key.endswith("per_class"):
                table = value.cpu().tolist()
                details[key] = {
                    name: {"ap": round(row[0], 6), "ap50": round(row[1], 6)}
                    for name, row in zip(self.classes, table, strict=True)
                }
            else:
                scalars[f"{prefix}_{key}"] = float(value)
        return scalars, details

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"masks": self.masks, "family": self.spec.family}
