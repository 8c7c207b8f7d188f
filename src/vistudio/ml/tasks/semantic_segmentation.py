"""Semantic segmentation: the training parts of the ``semantic_segmentation`` task.

Every pixel gets one class. Models come from the segmenter catalog (``ml/segmenters``: FCN,
DeepLabV3, LR-ASPP, DeepLabV3+ and two small configurations), all returning logits
``(N, K, H, W)`` at their input's size.

**Classes.** The model's classes are ``["background", *others]``: the project's classes sorted,
with a class named ``background`` (if the project has one) moved to index 0, else ``background``
prepended (:meth:`SemanticSegmentationTask.model_classes`). A pixel that no object covers is
background; objects of the project class ``background`` are background too.

**Label maps.** A stored target (``services.experiments.split_items``: polygons normalised to the
image, RLE masks in pixels, ``iscrowd`` flags) becomes one ``uint8`` map (:func:`label_map`),
drawn in this order: everything 0 (background); then each object, in the stored order (the
annotations' order), painted with its class index, a later object over an earlier one; then the
ignored regions on top, painted :data:`IGNORE_INDEX` (255): objects flagged ``iscrowd`` (COCO
crowd regions, VOC difficult objects) and class-less ignored regions (class -1: the 255 pixels of
an imported PNG mask). Ignored pixels count in no loss and no metric. Polygons are rasterised and
RLE masks stored at another size resized (nearest) exactly as the detection evaluation's ground
truth is (``ml/inference/detection_matching.object_rle``).

**Input.** Training and evaluation images are stretched to ``image_size``×``image_size`` and
normalised with ImageNet's mean and std: evaluation through the shared
``ml/preprocess.eval_array`` (Pillow, bilinear with antialiasing), so that evaluation, ``predict``
and an exported model see exactly the input validation saw. Training images first get the
augmentation toggles, applied jointly to the image and its label map with
``torchvision.transforms.v2`` (the map as a ``tv_tensors.Mask``: always nearest-neighbour):
``crop`` (random resized crop, scale 0.7–1, aspect 3/4–4/3, to the input size; without it a plain
resize), ``flip`` (horizontal), ``rotate`` (±15°; the corners it uncovers are ignored, 255),
``color`` (brightness, contrast, saturation 0.2: the image only).

**PREDICTION CONTRACT** (:func:`predict_label_map`; evaluation, ``predict`` and export build on
it): the model's logits ``(K, S, S)`` for one image preprocessed as above are upsampled
**bilinearly** (``align_corners=False``, PyTorch's ``F.interpolate``) to the image's **original
size** (the sample's ``width``×``height``), then the **argmax** over classes (the lowest class
index on a tie) is the predicted class of each pixel: a ``uint8`` ``(height, width)`` map, 0 the
background. Validation computes its scores on exactly these maps against :func:`label_map` at
the sample's size, so a checkpoint's ``val_miou`` is what an evaluation of the same images reports.

**Loss** (``loss``): ``ce`` (cross-entropy, with ``label_smoothing``), ``dice`` (soft Dice over
the batch, classes absent from the batch's labels left out) or ``ce+dice`` (their sum);
``class_weights`` (none, balanced: inverse pixel frequency in the training masks, or one weight per
model class, background first) weigh both; pixels labelled 255 are ignored.

**Metrics** (``ml/inference/segmentation_metrics``, the MMSegmentation definitions over one
dataset-wide confusion histogram): ``val_miou`` (monitored by default), ``val_pixel_accuracy``,
``val_mean_class_accuracy``, ``val_dice``, ``val_loss``; ``train_miou`` and
``train_pixel_accuracy`` at the input size on the augmented batches (cheap, on the device); the
per-class IoU (``None`` for a class absent from labels and predictions), Dice and accuracy, and the
confusion histogram go with each epoch's details.

**Defaults**, measured on CPU on generated shapes (see the README's Training section): LR-ASPP on
MobileNetV3-Large from scratch (it needs no download), AdamW at lr 0.01 (the fastest start of 0.002,
0.005, 0.01 and 0.02: at 0.002 and 0.005 it still predicts the background everywhere after three
epochs), batch 8, 256 px (a 16×16 deepest feature map), cross-entropy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import Field, field_validator
from torch import nn
from torchmetrics import Metric, MetricCollection
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vistudio.errors import BadRequest
from vistudio.ml.inference.segmentation_metrics import (
    IGNORE_INDEX,
    confusion_histogram,
    segmentation_scores,
)
from vistudio.ml.models import ModelInfo
from vistudio.ml.preprocess import PREPROCESS_VERSION, eval_array
from vistudio.ml.segmenters import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_segmenter,
    get_segmenter_spec,
)
from vistudio.ml.tasks import register_training
from vistudio.ml.training.config import Augment, TrainConfig
from vistudio.ml.training.task import TrainingTask, Transform

BACKGROUND = "background"
# label values 0..254 are classes, 255 marks ignored pixels: at most 255 classes, background included
MAX_CLASSES = IGNORE_INDEX
LOSSES = ("ce", "dice", "ce+dice")
# families whose head normalises globally pooled features (ASPP's image pooling): a training batch
# of one image has a single value per channel there, which batch norm cannot normalise
POOLED_BATCH_NORM = ("deeplabv3", "deeplabv3plus")
# predict_label_map resizes at most this many logits at once (64 MB of float32): a 12-megapixel
# photo of 21 classes would otherwise take a gigabyte
RESIZE_CHUNK = 1 << 24


class SemanticSegmentationConfig(TrainConfig):
    """Segmentation keys on top of the generic ones."""

    model: str = Field(
        default="lraspp_mobilenet_v3_large", max_length=64, description="a segmentation model of the catalog"
    )
    pretrained: str = Field(
        default="none",
        description="none: random init; backbone: ImageNet weights of the backbone; full: the whole "
        "network trained on COCO with the VOC classes (its class layers replaced); true/false mean "
        "backbone/none, coco means full",
    )
    image_size: int = Field(default=256, ge=32, le=2048, description="images are resized to this side")
    batch_size: int = Field(default=8, ge=1, le=1024)
    lr: float = Field(default=0.01, gt=0, le=10)
    loss: Literal["ce", "dice", "ce+dice"] = Field(
        default="ce", description="ce: cross-entropy; dice: soft Dice; ce+dice: their sum"
    )
    label_smoothing: float = Field(default=0.0, ge=0, le=0.5, description="of the cross-entropy")
    class_weights: Literal["none", "balanced"] | list[float] = Field(
        default="none",
        description="none; balanced (inverse pixel frequency in the training masks); or one weight "
        "per model class, background first",
    )

    @field_validator("pretrained", mode="before")
    @classmethod
    def _pretrained(cls, v: Any) -> str:
        if v is True:
            return "backbone"
        if v is False or v is None:
            return "none"
        if isinstance(v, str) and v.strip().lower() in ("none", "backbone", "full", "coco"):
            word = v.strip().lower()
            return "full" if word == "coco" else word
        raise ValueError(
            "pretrained must be none, backbone or full for a segmentation model (a weights file is not "
            "supported)"
        )

    @field_validator("class_weights")
    @classmethod
    def _weights(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not 2 <= len(v) <= MAX_CLASSES:
                raise ValueError(f"give one weight per model class (2 to {MAX_CLASSES}), background first")
            if any(not (0 <= w <= 1e6) for w in v):
                raise ValueError("class weights must be between 0 and 1e6")
            if not sum(v) > 0:
                raise ValueError("at least one class weight must be above 0")
        return v

    def warnings(self) -> list[dict[str, Any]]:
        from vistudio.errors import VistudioError

        try:
            spec = get_segmenter_spec(self.model)
        except VistudioError:
            return []  # an unknown model is the validation's error, not a warning
        if self.image_size < spec.min_image_size:
            side = max(1, self.image_size // spec.output_stride)
            return [
                {
                    "key": "image_size",
                    "code": "image_size_too_small",
                    "minimum": spec.min_image_size,
                    "message": f"{self.image_size} px is small for {spec.name}: its deepest feature map "
                    f"would be {side}×{side}; use an image size of {spec.min_image_size} px or more",
                }
            ]
        if self.image_size > 1024:
            return [
                {
                    "key": "image_size",
                    "code": "image_size_large",
                    "message": f"every image is resized to {self.image_size} px: training is slow, "
                    "especially without a GPU",
                }
            ]
        return []


# --- label maps and predictions ---------------------------------------------------------------------


def is_ignored(obj: dict[str, Any]) -> bool:
    """Whether a target's object is an ignored region: a crowd/difficult object or a class-less
    ignored region (class -1)."""
    return bool(obj.get("iscrowd")) or int(obj["class"]) < 0


def _object_mask(obj: dict[str, Any], width: int, height: int) -> npt.NDArray[np.bool_]:
    """One stored object's pixels at ``width``×``height``, as the evaluation's ground truth."""
    from vistudio.ml.inference.detection_matching import object_rle
    from vistudio.ml.inference.detections import decode_masks

    x, y, w, h = obj["box"]
    box = (x * width, y * height, (x + w) * width, (y + h) * height)
    rle = object_rle(obj.get("mask"), box, width=width, height=height)
    return decode_masks([rle])[0].astype(bool)


def label_map(target: dict[str, Any], width: int, height: int) -> npt.NDArray[np.uint8]:
    """A stored target (``{"width", "height", "objects": [{"class", "box", "iscrowd", "mask"}]}``,
    class indices into the model's classes, -1 for a class-less ignored region) → the ``(height,
    width)`` ``uint8`` label map: 0 (background) everywhere, then each object in order painted with
    its class index (a later one over an earlier one), then every ignored region painted 255."""
    if width < 1 or height < 1:
        raise ValueError(f"a label map needs a positive size, got {width}×{height}")
    out = np.zeros((height, width), np.uint8)
    objects = list(target.get("objects") or ())
    for obj in [o for o in objects if not is_ignored(o)]:
        k = int(obj["class"])
        if not 0 <= k < MAX_CLASSES:
            raise ValueError(f"class index {k} outside 0..{MAX_CLASSES - 1}")
        out[_object_mask(obj, width, height)] = k
    for obj in [o for o in objects if is_ignored(o)]:
        out[_object_mask(obj, width, height)] = IGNORE_INDEX
    return out


def predict_label_map(
    logits: torch.Tensor | npt.NDArray[Any], width: int, height: int
) -> npt.NDArray[np.uint8]:
    """THE prediction of one image: logits ``(K, S, S)`` (any size) upsampled bilinearly
    (``align_corners=False``) to ``height``×``width`` (the sample's original size), then the argmax
    over classes (the lowest index on a tie) → ``(height, width)`` ``uint8`` class indices.

    Equal to ``F.interpolate(logits[None], (height, width), mode="bilinear",
    align_corners=False)[0].argmax(0)``, computed a few classes at a time so that a large photo
    needs a few frames of memory, not ``K``."""
    t = torch.as_tensor(logits).detach().float()
    if t.dim() != 3:
        raise ValueError(f"logits of one image are (K, H, W), got shape {tuple(t.shape)}")
    k = int(t.shape[0])
    if not 1 <= k <= 256:
        raise ValueError(f"a label map holds 1 to 256 classes, got {k}")
    chunk = max(1, RESIZE_CHUNK // max(1, width * height))
    best: torch.Tensor | None = None
    index: torch.Tensor | None = None
    for start in range(0, k, chunk):
        part = F.interpolate(
            t[None, start : start + chunk], size=(height, width), mode="bilinear", align_corners=False
        )[0]
        value, idx = part.max(dim=0)
        if best is None or index is None:
            best, index = value, idx
        else:  # strictly better only: a tie keeps the earlier (lower) class, as argmax does
            better = value > best
            best = torch.where(better, value, best)
            index = torch.where(better, idx + start, index)
    assert index is not None
    return index.to(torch.uint8).cpu().numpy()


# --- transforms --------------------------------------------------------------------------------------


def _input_size(preprocess: dict[str, Any]) -> tuple[int, int]:
    height, width = (int(v) for v in preprocess["input_size"])
    return height, width


class SegmentationEvalTransform:
    """The shared evaluation preprocessing of the image; its label map at the input size (for the
    validation loss) and at the sample's original size (for the metrics, see the contract)."""

    def __init__(self, preprocess: dict[str, Any]) -> None:
        self.preprocess = preprocess
        self.size = _input_size(preprocess)

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        x = torch.from_numpy(eval_array(img, self.preprocess))
        height, width = self.size
        small = label_map(target, width, height)
        full = label_map(target, int(target["width"]), int(target["height"]))
        return x, {"mask": torch.from_numpy(small).long(), "full": full}


class SegmentationTrainTransform:
    """The label map at the decoded image's size, the joint augmentation of image and map (nearest
    for the map; rotation fills the map with 255), then scale and normalise as evaluation does."""

    def __init__(self, preprocess: dict[str, Any], augment: Augment) -> None:
        size = _input_size(preprocess)
        ops: list[Any] = [
            v2.RandomResizedCrop(size, scale=(0.7, 1.0), antialias=True)
            if augment.crop
            else v2.Resize(size, antialias=True)
        ]
        if augment.flip:
            ops.append(v2.RandomHorizontalFlip())
        if augment.rotate:
            ops.append(v2.RandomRotation(15, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
        if augment.color:
            ops.append(v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2))
        self.augment = v2.Compose(ops)
        self.mean = [float(v) for v in preprocess["mean"]]
        self.std = [float(v) for v in preprocess["std"]]
        self.scale = float(preprocess["scale"])

    def pair(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The augmented image (uint8 ``(3, S, S)``) and label map (``(S, S)``), before scaling."""
        width, height = img.size
        image = tv_tensors.Image(TF.pil_to_tensor(img))
        mask = tv_tensors.Mask(torch.from_numpy(label_map(target, width, height)))
        image, mask = self.augment(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __call__(self, img: Image.Image, target: Any) -> tuple[torch.Tensor, Any]:
        image, mask = self.pair(img, target)
        x = TF.normalize(image.float() * self.scale, self.mean, self.std)
        return x, {"mask": mask.long(), "full": None}


# --- loss and metrics ------------------------------------------------------------------------------------


class SegmentationLoss(nn.Module):
    """``ce``, ``dice`` or ``ce+dice`` over logits ``(N, K, H, W)`` and labels ``(N, H, W)``, pixels
    labelled 255 ignored, classes weighted by ``weight`` (``(K,)``) when given.

    Cross-entropy (with ``label_smoothing``) is the mean over the labelled pixels, each weighted by
    its true class's weight (PyTorch's definition without smoothing), 0 for a batch without any; Dice is ``1 − 2·Σpt / (Σp + Σt)`` per class over the whole batch (``p`` the
    softmax, ``t`` the one-hot labels), averaged (weighted) over the classes the batch's labels hold."""

    weight: torch.Tensor | None

    def __init__(
        self,
        kind: str,
        num_classes: int,
        weight: torch.Tensor | None = None,
        *,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        if kind not in LOSSES:
            raise BadRequest(f"loss must be one of {', '.join(LOSSES)}, got {kind[:20]!r}")
        self.kind = kind
        self.num_classes = num_classes
        self.label_smoothing = label_smoothing
        self.register_buffer("weight", weight)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        valid = (target >= 0) & (target < self.num_classes)
        safe = torch.where(valid, target, torch.zeros_like(target))
        total = logits.new_zeros(())
        if "ce" in self.kind.split("+"):
            total = total + self._cross_entropy(logits, safe, valid)
        if "dice" in self.kind.split("+"):
            total = total + self._dice(logits, safe, valid)
        return total

    def _cross_entropy(self, logits: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        per_pixel = F.cross_entropy(logits, safe, reduction="none", label_smoothing=self.label_smoothing)
        w = valid.to(logits.dtype)
        if self.weight is not None:
            w = w * self.weight[safe]
        # no division by zero (and no sync to test for it) when every pixel is ignored
        return (per_pixel * w).sum() / w.sum().clamp(min=1e-12)

    def _dice(self, logits: torch.Tensor, safe: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        mask = valid[:, None].to(logits.dtype)
        probs = logits.softmax(dim=1) * mask
        onehot = F.one_hot(safe, self.num_classes).permute(0, 3, 1, 2).to(logits.dtype) * mask
        dims = (0, 2, 3)
        inter = (probs * onehot).sum(dims)
        truth = onehot.sum(dims)
        dice = 2 * inter / (probs.sum(dims) + truth).clamp(min=1e-7)
        w = (truth > 0).to(logits.dtype)
        if self.weight is not None:
            w = w * self.weight
        return ((1 - dice) * w).sum() / w.sum().clamp(min=1e-12)


class ConfusionHistogram(Metric):
    """The ``(K, K)`` pixel confusion histogram (rows truth, columns prediction), summed over the
    epoch. Updated with tensors ``(N, H, W)`` (training: on the device) or with lists of ``(H, W)``
    arrays of any sizes (validation: at each sample's size); pixels labelled 255 are left out."""

    full_state_update = False
    hist: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.add_state(
            "hist", default=torch.zeros(num_classes, num_classes, dtype=torch.int64), dist_reduce_fx="sum"
        )

    def update(self, preds: Any, targets: Any) -> None:
        k = self.num_classes
        if isinstance(preds, torch.Tensor) and isinstance(targets, torch.Tensor):
            t, p = targets.reshape(-1).long(), preds.reshape(-1).long()
            keep = (t >= 0) & (t < k)
            counts = torch.bincount(t[keep] * k + p[keep], minlength=k * k)
            self.hist = self.hist + counts.reshape(k, k)
            return
        acc = np.zeros((k, k), np.int64)
        for p_map, t_map in zip(preds, targets, strict=True):
            confusion_histogram(t_map, p_map, k, IGNORE_INDEX, out=acc)
        self.hist = self.hist + torch.from_numpy(acc).to(self.hist.device)

    def compute(self) -> torch.Tensor:
        return self.hist


# --- the task ------------------------------------------------------------------------------------------


@register_training("semantic_segmentation")
class SemanticSegmentationTask(TrainingTask):
    name = "semantic_segmentation"
    config_model: ClassVar[type[TrainConfig]] = SemanticSegmentationConfig
    default_monitor = "val_miou"
    min_classes = 1  # one class besides the background
    model_noun = "segmentation model"

    @classmethod
    def model_classes(cls, project_classes: list[str]) -> list[str]:
        """``["background", *others]``: the project's classes sorted, ``background`` first
        (the project's own class of that name, or added)."""
        others = sorted(c for c in project_classes if c != BACKGROUND)
        classes = [BACKGROUND, *others]
        if len(classes) > MAX_CLASSES:
            raise BadRequest(
                f"semantic segmentation trains at most {MAX_CLASSES} classes, background included "
                f"(label value 255 marks ignored pixels); this project has {len(classes)}",
                details={"classes": len(classes), "maximum": MAX_CLASSES},
            )
        return classes

    @classmethod
    def metric_names(cls) -> list[str]:
        val = ["val_loss", "val_miou", "val_pixel_accuracy", "val_mean_class_accuracy", "val_dice"]
        return ["train_loss", "train_miou", "train_pixel_accuracy", *val]

    @classmethod
    def catalog(cls) -> list[dict[str, Any]]:
        from vistudio.ml.segmenters import SEGMENTERS, weights_cached

        items = []
        for spec in SEGMENTERS.entries.values():
            cached = weights_cached(spec)
            items.append(
                {**spec.describe(), "pretrained_cached": any(cached.values()), "weights_cached": cached}
            )
        return items

    @classmethod
    def check_config(cls, config: TrainConfig, weights: Any = None) -> None:
        from vistudio.ml.segmenters import check_segmenter_weights

        assert isinstance(config, SemanticSegmentationConfig)
        spec = get_segmenter_spec(config.model)
        if config.batch_size < 2 and spec.family in POOLED_BATCH_NORM:
            raise BadRequest(
                f"invalid training config: batch_size: {spec.name} normalises globally pooled features "
                "with batch norm, which needs at least 2 images a batch; use a batch size of 2 or more "
                "(or an FCN or LR-ASPP model)",
                details={"errors": [{"key": "batch_size", "message": "at least 2 for this model"}]},
            )
        check_segmenter_weights(spec, config.pretrained, weights)

    @classmethod
    def targets_problem(cls, targets: Sequence[Any]) -> str | None:
        if not any(int(o["class"]) > 0 and not o.get("iscrowd") for t in targets for o in t["objects"]):
            return (
                "its training images have no pixels of a class other than background (ignored regions do "
                "not count): annotate or import polygons or masks first"
            )
        return None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def spec(self) -> Any:
        return get_segmenter_spec(self.config.model)

    def build_model(self) -> tuple[nn.Module, ModelInfo]:
        cfg = self.config
        assert isinstance(cfg, SemanticSegmentationConfig)
        return build_segmenter(
            cfg.model, self.num_classes, pretrained=cfg.pretrained, freeze_backbone=cfg.freeze_backbone
        )

    def preprocess(self, info: ModelInfo) -> dict[str, Any]:
        size = int(self.config.image_size)
        return {
            "kind": "segmentation",
            "version": PREPROCESS_VERSION,
            "input_size": [size, size],
            "mean": list(info.mean or IMAGENET_MEAN),
            "std": list(info.std or IMAGENET_STD),
            "scale": 1 / 255,
            "color": "RGB",
        }

    def class_pixels(self, targets: Sequence[Any], side: int = 128) -> npt.NDArray[np.int64]:
        """Labelled pixels of each model class in ``targets`` (encoded), their label maps drawn with
        the longer side at most ``side`` pixels (enough for frequencies, cheap for thousands)."""
        counts = np.zeros(self.num_classes, np.int64)
        for t in targets:
            w, h = int(t["width"]), int(t["height"])
            s = min(1.0, side / max(w, h))
            m = label_map(t, max(1, round(w * s)), max(1, round(h * s)))
            counts += np.bincount(m[m < self.num_classes].reshape(-1), minlength=self.num_classes)[
                : self.num_classes
            ]
        return counts

    def build_loss(self, train_targets: Sequence[Any]) -> nn.Module:
        cfg = self.config
        assert isinstance(cfg, SemanticSegmentationConfig)
        weight = None
        if cfg.class_weights == "balanced":
            counts = self.class_pixels(train_targets)
            total = float(counts.sum())
            # inverse frequency, normalised so that a balanced set weighs 1 everywhere; a class
            # without training pixels gets 0 (it appears in no label; Dice leaves it out)
            weight = torch.tensor(
                [total / (self.num_classes * c) if c > 0 else 0.0 for c in counts.tolist()],
                dtype=torch.float32,
            )
        elif isinstance(cfg.class_weights, list):
            if len(cfg.class_weights) != self.num_classes:
                raise BadRequest(
                    f"class_weights has {len(cfg.class_weights)} values for {self.num_classes} classes "
                    f"(background first): {', '.join(self.classes)[:500]}"
                )
            weight = torch.tensor(cfg.class_weights, dtype=torch.float32)
        return SegmentationLoss(cfg.loss, self.num_classes, weight, label_smoothing=cfg.label_smoothing)

    def build_metrics(self, prefix: str) -> MetricCollection:
        return MetricCollection({"confusion": ConfusionHistogram(self.num_classes)})

    def encode_target(self, target: Any) -> dict[str, Any]:
        if not isinstance(target, dict) or not isinstance(target.get("objects"), list):
            raise ValueError("a segmentation target is {'width', 'height', 'objects': [...]}")
        width, height = int(target["width"]), int(target["height"])
        if width < 1 or height < 1:
            raise ValueError(f"a segmentation target needs a positive size, got {width}×{height}")
        objects = []
        for o in target["objects"]:
            k = int(o["class"])
            if not -1 <= k < self.num_classes:
                raise ValueError(f"class index {k} outside -1..{self.num_classes - 1}")
            box = [float(v) for v in o["box"]]
            if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
                continue  # no area: no pixel to paint
            objects.append(
                {"class": k, "box": box, "iscrowd": bool(o.get("iscrowd")) or k < 0, "mask": o.get("mask")}
            )
        return {"width": width, "height": height, "objects": objects}

    def train_transform(self, preprocess: dict[str, Any]) -> Transform:
        return SegmentationTrainTransform(preprocess, self.config.augment)

    def eval_transform(self, preprocess: dict[str, Any]) -> Transform:
        return SegmentationEvalTransform(preprocess)

    def collate(self, batch: list[Any]) -> Any:
        """``(images (N, 3, S, S), label maps (N, S, S), full-size maps: a list, None in training)``."""
        images, targets = zip(*batch, strict=True) if batch else ((), ())
        return (
            torch.stack(list(images)),
            torch.stack([t["mask"] for t in targets]),
            [t["full"] for t in targets],
        )

    def forward(self, model: nn.Module, batch: Any, loss: nn.Module) -> tuple[torch.Tensor, Any, Any]:
        x, masks, full = batch
        logits = model(x)
        # the loss in float32 even under bf16 autocast: its log-softmax is precision-sensitive
        value = loss(logits.float(), masks)
        if model.training:
            return value, logits.detach().argmax(dim=1), masks
        predictions = [
            predict_label_map(logits[i].detach(), int(m.shape[1]), int(m.shape[0]))
            for i, m in enumerate(full)
        ]
        return value, predictions, full

    def summarise(
        self, prefix: str, computed: dict[str, torch.Tensor]
    ) -> tuple[dict[str, float], dict[str, Any]]:
        hist = computed["confusion"].long().cpu().numpy()
        scores = segmentation_scores(hist)
        named = {
            "miou": scores.miou,
            "pixel_accuracy": scores.pixel_accuracy,
            "mean_class_accuracy": scores.mean_class_accuracy,
            "dice": scores.dice,
        }
        if prefix == "train":  # what the running training curves show
            named = {k: named[k] for k in ("miou", "pixel_accuracy")}
        # a score without a value (no labelled pixel yet) is not reported rather than made up
        scalars = {f"{prefix}_{k}": float(v) for k, v in named.items() if v is not None}
        if prefix == "train":
            return scalars, {}

        def per_class(values: list[float | None]) -> dict[str, float | None]:
            return {
                name: None if v is None else round(v, 6) for name, v in zip(self.classes, values, strict=True)
            }

        details = {
            "per_class_iou": per_class(scores.per_class_iou),
            "per_class_dice": per_class(scores.per_class_dice),
            "per_class_accuracy": per_class(scores.per_class_accuracy),
            "confusion": hist.tolist(),
        }
        return scalars, details

    def checkpoint_meta(self) -> dict[str, Any]:
        return {"family": self.spec.family, "ignore_index": IGNORE_INDEX}
