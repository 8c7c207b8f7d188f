"""Detector catalog: torchvision's box and mask detectors, built for a project's classes.

Every entry builds one torchvision detection model (Faster R-CNN, FCOS, RetinaNet, SSD, SSDLite,
Mask R-CNN) with:

- **the experiment's image size**: ``min_size = max_size = image_size``. torchvision's defaults
  (800/1333) silently upscale every image to 800 px, a 24-times slower training step on CPU for
  images that are 128 px to begin with. SSD300 and SSDLite320 have a fixed input side (300, 320)
  that cannot change: their entries say so (``fixed_size``) and ignore ``image_size``.
- **weights** through the one model policy (``ml/weights``): ``"none"`` (random initialisation,
  always works), ``"backbone"`` (ImageNet weights of the backbone) or ``"coco"`` (the whole
  detector trained on COCO, its class head then replaced). A missing file is downloaded into
  torch hub's cache on first use, unless the workspace is offline: then ``ModelUnavailable``.
- **heads sized for the project**: ``num_classes`` counts the project's classes; the model gets
  one more output for the background (torchvision's convention: label 0 is background, so class
  index ``i`` of the project is model label ``i + 1``).
- **post-processing knobs**: score threshold, NMS IoU and detections per image.

Three small configurations, ``fcos_resnet18_fpn64``, ``fasterrcnn_resnet18_fpn64`` and
``maskrcnn_resnet18_fpn64`` (a ResNet-18 backbone with a 64-channel FPN, R-CNN heads at that width),
are the same architectures at a size that trains in a minute on
a laptop CPU at 96–160 px: for small images and quick experiments, and what the test suite trains.

DINOv3 backbones (``ml/dinov3``) feed FCOS through an FPN: ``fcos_dinov3_vit_small|base|large``
and ``fcos_dinov3_convnext_small|base|large``. A ViT's single stride-16 patch grid becomes a simple
pyramid first (a 2× transposed convolution for stride 8, the grid, a 2× max pool for stride 32, as
ViTDet does); a ConvNeXt gives its stride-8, 16 and 32 stages. The FPN adds P6 and P7, the five
levels FCOS expects. Their ``backbone`` weights are the gated official DINOv3 checkpoints; with them
the backbone is frozen unless ``trainable_backbone_layers`` is 1 (0 freezes, 1 trains it; random
backbones always train).

A library module: no database, no web.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import torch
from torch import nn
from torchvision import models as tvm
from torchvision.models import detection as tvd
from torchvision.models.detection import backbone_utils as bu
from torchvision.ops import feature_pyramid_network as fpn

from vistudio.errors import BadRequest
from vistudio.ml import dinov3
from vistudio.ml.models import ModelInfo
from vistudio.ml.weights import WeightsPolicy
from vistudio.registry import Registry

Pretrained = Literal["none", "backbone", "coco"]
PRETRAINED: tuple[str, ...] = ("none", "backbone", "coco")
# torchvision's detectors normalise inside the model (GeneralizedRCNNTransform): they take RGB
# float tensors in 0..1 at any size, and return boxes in the input's pixels
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    family: str  # faster_rcnn, fcos, retinanet, ssd, ssdlite, mask_rcnn
    masks: bool  # instance segmentation (Mask R-CNN) or boxes only
    builder: Callable[..., nn.Module]
    coco_weights: Any | None  # a torchvision WeightsEnum member (the whole detector), if any
    backbone_weights: Any | None  # the backbone's ImageNet weights, if any
    default_image_size: int = 640
    min_image_size: int = 64
    fixed_size: int | None = None  # SSD300/SSDLite320: the input side is fixed by the architecture
    max_trainable_layers: int = 5
    # a DINOv3 architecture: ``backbone_weights`` names its gated Hugging Face repository, and
    # ``builder`` takes their local folder (``backbone_weights=``) or None
    hub: dinov3.DINOv3Arch | None = None

    @property
    def task(self) -> str:
        return "instance_segmentation" if self.masks else "detection"

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "task": self.task,
            "masks": self.masks,
            "coco_weights": str(self.coco_weights) if self.coco_weights is not None else None,
            "backbone_weights": str(self.backbone_weights) if self.backbone_weights is not None else None,
            "default_image_size": self.default_image_size,
            "min_image_size": self.min_image_size,
            "fixed_size": self.fixed_size,
            "max_trainable_layers": self.max_trainable_layers,
        }


DETECTORS: Registry[DetectorSpec] = Registry("detector")


def register_detector(spec: DetectorSpec) -> DetectorSpec:
    return DETECTORS.add(spec.name, spec)


def detector_names(task: str | None = None) -> list[str]:
    """Catalog names, in catalog order; only those of ``task`` (detection or instance_segmentation)."""
    return [n for n, s in DETECTORS.entries.items() if task is None or s.task == task]


def get_detector_spec(name: str, task: str | None = None) -> DetectorSpec:
    names = detector_names(task)
    if name not in names:
        what = f"{task.replace('_', ' ')} model" if task else "detector"
        raise BadRequest(f"unknown {what} {name!r}; known: {', '.join(names)}", details={"models": names})
    return DETECTORS.get(name)


# --- DINOv3 backbones --------------------------------------------------------------------------------


class DINOv3FPN(nn.Module):
    """A DINOv3 backbone as torchvision's detectors take one: ``(N, 3, H, W)`` → an ``OrderedDict``
    of five ``out_channels``-wide maps at strides 8, 16, 32, 64, 128 (P3–P7)."""

    def __init__(self, body: dinov3.DINOv3Backbone, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        self.vit = body.kind == "vit"
        if self.vit:  # one stride-16 grid → strides 8, 16, 32
            width = body.widths[0]
            self.up = nn.ConvTranspose2d(width, width, 2, stride=2)
            self.down = nn.MaxPool2d(2)
            in_channels = [width, width, width]
        else:
            in_channels = body.widths[1:]
        self.fpn = fpn.FeaturePyramidNetwork(
            in_channels, out_channels, extra_blocks=fpn.LastLevelP6P7(out_channels, out_channels)
        )
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.body(x)
        levels = [self.up(maps[0]), maps[0], self.down(maps[0])] if self.vit else maps[1:]
        out: dict[str, torch.Tensor] = self.fpn(OrderedDict((str(i), m) for i, m in enumerate(levels)))
        return out


def _fcos_dinov3(name: str) -> Callable[..., nn.Module]:
    def build(*, num_classes: int, backbone_weights: Any = None, **kwargs: Any) -> nn.Module:
        body = dinov3.DINOv3Backbone.from_arch(name, weights=backbone_weights)
        return tvd.FCOS(DINOv3FPN(body), num_classes, **kwargs)

    return build


# --- the two small configurations -----------------------------------------------------------------


def _resnet18_fpn(returned: list[int], channels: int, extra: nn.Module) -> nn.Module:
    body = tvm.resnet18(weights=None)
    in_channels = [64 * 2 ** (i - 1) for i in returned]
    return bu.BackboneWithFPN(
        body,
        return_layers={f"layer{i}": str(k) for k, i in enumerate(returned)},
        in_channels_list=in_channels,
        out_channels=channels,
        extra_blocks=extra,
    )


def fcos_resnet18_fpn64(*, num_classes: int, **kwargs: Any) -> nn.Module:
    backbone = _resnet18_fpn([2, 3, 4], 64, fpn.LastLevelP6P7(64, 64))
    return tvd.FCOS(backbone, num_classes, **kwargs)


def fasterrcnn_resnet18_fpn64(*, num_classes: int, **kwargs: Any) -> nn.Module:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead

    backbone = _resnet18_fpn([1, 2, 3, 4], 64, fpn.LastLevelMaxPool())
    # the box head at the FPN's width too (see maskrcnn_resnet18_fpn64)
    return tvd.FasterRCNN(
        backbone,
        num_classes=None,
        box_head=TwoMLPHead(64 * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        box_batch_size_per_image=128,
        **kwargs,
    )


def maskrcnn_resnet18_fpn64(*, num_classes: int, **kwargs: Any) -> nn.Module:
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

    backbone = _resnet18_fpn([1, 2, 3, 4], 64, fpn.LastLevelMaxPool())
    # heads at the FPN's width too: torchvision's default mask head (four 256-channel convolutions
    # on every positive region) would cost ten times the rest of this small model
    return tvd.MaskRCNN(
        backbone,
        num_classes=None,
        box_head=TwoMLPHead(64 * 7 * 7, 256),
        box_predictor=FastRCNNPredictor(256, num_classes),
        mask_head=MaskRCNNHeads(64, [64, 64, 64, 64], 1),
        mask_predictor=MaskRCNNPredictor(64, 64, num_classes),
        box_batch_size_per_image=128,
        **kwargs,
    )


_R50 = tvm.ResNet50_Weights.IMAGENET1K_V1
_MBV3 = tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
for _spec in (
    DetectorSpec(
        "fasterrcnn_resnet50_fpn",
        "faster_rcnn",
        False,
        tvd.fasterrcnn_resnet50_fpn,
        tvd.FasterRCNN_ResNet50_FPN_Weights.COCO_V1,
        _R50,
        800,
        128,
    ),
    DetectorSpec(
        "fasterrcnn_resnet50_fpn_v2",
        "faster_rcnn",
        False,
        tvd.fasterrcnn_resnet50_fpn_v2,
        tvd.FasterRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        _R50,
        800,
        128,
    ),
    DetectorSpec(
        "fasterrcnn_mobilenet_v3_large_fpn",
        "faster_rcnn",
        False,
        tvd.fasterrcnn_mobilenet_v3_large_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_FPN_Weights.COCO_V1,
        _MBV3,
        800,
        128,
        max_trainable_layers=6,
    ),
    DetectorSpec(
        "fasterrcnn_mobilenet_v3_large_320_fpn",
        "faster_rcnn",
        False,
        tvd.fasterrcnn_mobilenet_v3_large_320_fpn,
        tvd.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights.COCO_V1,
        _MBV3,
        320,
        128,
        max_trainable_layers=6,
    ),
    DetectorSpec(
        "fcos_resnet50_fpn",
        "fcos",
        False,
        tvd.fcos_resnet50_fpn,
        tvd.FCOS_ResNet50_FPN_Weights.COCO_V1,
        _R50,
        800,
        64,
    ),
    DetectorSpec(
        "retinanet_resnet50_fpn",
        "retinanet",
        False,
        tvd.retinanet_resnet50_fpn,
        tvd.RetinaNet_ResNet50_FPN_Weights.COCO_V1,
        _R50,
        800,
        64,
    ),
    DetectorSpec(
        "retinanet_resnet50_fpn_v2",
        "retinanet",
        False,
        tvd.retinanet_resnet50_fpn_v2,
        tvd.RetinaNet_ResNet50_FPN_V2_Weights.COCO_V1,
        _R50,
        800,
        64,
    ),
    DetectorSpec(
        "ssd300_vgg16",
        "ssd",
        False,
        tvd.ssd300_vgg16,
        tvd.SSD300_VGG16_Weights.COCO_V1,
        tvm.VGG16_Weights.IMAGENET1K_FEATURES,
        300,
        300,
        fixed_size=300,
    ),
    DetectorSpec(
        "ssdlite320_mobilenet_v3_large",
        "ssdlite",
        False,
        tvd.ssdlite320_mobilenet_v3_large,
        tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1,
        _MBV3,
        320,
        320,
        fixed_size=320,
        max_trainable_layers=6,
    ),
    DetectorSpec("fcos_resnet18_fpn64", "fcos", False, fcos_resnet18_fpn64, None, None, 160, 64),
    DetectorSpec(
        "fasterrcnn_resnet18_fpn64", "faster_rcnn", False, fasterrcnn_resnet18_fpn64, None, None, 160, 64
    ),
    DetectorSpec(
        "maskrcnn_resnet50_fpn",
        "mask_rcnn",
        True,
        tvd.maskrcnn_resnet50_fpn,
        tvd.MaskRCNN_ResNet50_FPN_Weights.COCO_V1,
        _R50,
        800,
        128,
    ),
    DetectorSpec(
        "maskrcnn_resnet50_fpn_v2",
        "mask_rcnn",
        True,
        tvd.maskrcnn_resnet50_fpn_v2,
        tvd.MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1,
        _R50,
        800,
        128,
    ),
    DetectorSpec("maskrcnn_resnet18_fpn64", "mask_rcnn", True, maskrcnn_resnet18_fpn64, None, None, 160, 64),
):
    register_detector(_spec)

for _arch in dinov3.ARCHS.values():
    register_detector(
        DetectorSpec(
            f"fcos_{_arch.name}",
            "fcos",
            False,
            _fcos_dinov3(_arch.name),
            None,
            _arch.repo,
            default_image_size=512,
            min_image_size=64,
            max_trainable_layers=1,
            hub=_arch,
        )
    )


# --- weights ----------------------------------------------------------------------------------------


def _weights_for(spec: DetectorSpec, pretrained: str) -> Any | None:
    if pretrained == "none":
        return None
    weights = spec.coco_weights if pretrained == "coco" else spec.backbone_weights
    if weights is None:
        raise BadRequest(
            f"{spec.name} has no {'COCO' if pretrained == 'coco' else 'ImageNet backbone'} weights; "
            "use pretrained 'none'",
            details={"model": spec.name, "pretrained": pretrained},
        )
    return weights


def _hub_file(weights: Any) -> Any:
    """Where ``weights`` live once cached: torch hub's file of a weights enum; for a DINOv3
    repository name, its ``model.safetensors`` in the Hugging Face cache (when not cached, a path
    that is no file)."""
    from pathlib import Path

    if isinstance(weights, str):
        arch = next((a for a in dinov3.ARCHS.values() if a.repo == weights), None)
        folder = dinov3.cached_weights(arch) if arch is not None else None
        if folder is not None:
            return folder / dinov3.WEIGHT_FILES[-1]
        return Path(torch.hub.get_dir()) / "checkpoints" / weights.replace("/", "--")
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name


def ensure_weights(spec: DetectorSpec, pretrained: str, policy: WeightsPolicy | None = None) -> Any | None:
    """The weights enum for ``pretrained``, its file in torch hub's cache (downloaded there under
    ``policy`` when missing): torchvision's builder then loads it from the cache."""
    weights = _weights_for(spec, pretrained)
    if weights is None:
        return None
    if spec.hub is not None:
        return dinov3.ensure_weights(spec.hub, policy)  # the local folder the builder loads
    dest = _hub_file(weights)
    if not dest.is_file():
        (policy or WeightsPolicy.from_env()).url_download(
            weights.url,
            dest,
            what=f"the {pretrained} weights of {spec.name} are",
            settings=[("pretrained", "train from scratch (--no-pretrained / pretrained: none)")],
            details={"model": spec.name, "expected_file": dest.name},
        )
    return weights


def check_detector_weights(spec: DetectorSpec, pretrained: str, policy: WeightsPolicy | None = None) -> None:
    """Before training starts: ``ModelUnavailable`` when the weights are neither cached nor downloadable."""
    weights = _weights_for(spec, pretrained)
    if weights is not None and spec.hub is not None:
        dinov3.check_weights(spec.hub, policy)
        return
    if weights is None or _hub_file(weights).is_file():
        return
    (policy or WeightsPolicy.from_env()).require_network(
        weights.url,
        what=f"the {pretrained} weights of {spec.name} are",
        settings=[("pretrained", "train from scratch (--no-pretrained / pretrained: none)")],
        details={"model": spec.name, "expected_file": _hub_file(weights).name},
    )


# --- heads ------------------------------------------------------------------------------------------


def _replace_heads(model: nn.Module, spec: DetectorSpec, num_outputs: int) -> None:
    """Swap the class-dependent heads of a COCO-trained detector for ``num_outputs`` outputs."""
    from torchvision.models.detection import fcos, retinanet, ssd, ssdlite
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

    m: Any = model
    if spec.family in ("faster_rcnn", "mask_rcnn"):
        box = m.roi_heads.box_predictor
        m.roi_heads.box_predictor = FastRCNNPredictor(box.cls_score.in_features, num_outputs)
        if spec.family == "mask_rcnn":
            layer = m.roi_heads.mask_predictor.conv5_mask
            m.roi_heads.mask_predictor = MaskRCNNPredictor(layer.in_channels, layer.out_channels, num_outputs)
    elif spec.family == "fcos":
        old = m.head.classification_head
        m.head.classification_head = fcos.FCOSClassificationHead(
            old.conv[0].in_channels, old.num_anchors, num_outputs
        )
    elif spec.family == "retinanet":
        old = m.head.classification_head
        in_channels = old.cls_logits.in_channels
        norm = partial(nn.GroupNorm, 32) if isinstance(old.conv[0][1], nn.GroupNorm) else None
        m.head.classification_head = retinanet.RetinaNetClassificationHead(
            in_channels, old.num_anchors, num_outputs, norm_layer=norm
        )
    elif spec.family == "ssd":
        anchors = m.anchor_generator.num_anchors_per_location()
        channels = [c.in_channels for c in m.head.classification_head.module_list]
        m.head.classification_head = ssd.SSDClassificationHead(channels, anchors, num_outputs)
    elif spec.family == "ssdlite":
        anchors = m.anchor_generator.num_anchors_per_location()
        channels = [c[0][0].in_channels for c in m.head.classification_head.module_list]
        bn = partial(nn.BatchNorm2d, eps=0.001, momentum=0.03)
        m.head.classification_head = ssdlite.SSDLiteClassificationHead(channels, anchors, num_outputs, bn)
    else:  # pragma: no cover - every family of the catalog is handled above
        raise AssertionError(spec.family)


# --- building ---------------------------------------------------------------------------------------


def pin_roi_scales(model: nn.Module, side: int = 128) -> None:
    """Fix the feature scales of an R-CNN's region pooling once, from a square input.

    torchvision's ``MultiScaleRoIAlign`` infers them from the first batch it sees, from the
    unpadded image height rounded in log2: when that first image is in landscape (say 96×67 after
    resizing), every scale comes out twice too large, and every later result — training,
    evaluation, the parity check of an export — depends on which image came first. Measured here
    on a ``side``×``side`` input (the feature strides), they are the same whatever comes first,
    and the same as in the exported ONNX graph."""
    heads = getattr(model, "roi_heads", None)
    backbone = getattr(model, "backbone", None)
    if heads is None or backbone is None:
        return
    from torchvision.ops.poolers import MultiScaleRoIAlign, _setup_scales

    pools = [
        p
        for p in (heads.box_roi_pool, getattr(heads, "mask_roi_pool", None))
        if isinstance(p, MultiScaleRoIAlign)
    ]
    if not pools:
        return
    was_training = backbone.training
    backbone.eval()  # batch-norm statistics stay as they are
    try:
        with torch.no_grad():
            features = backbone(torch.zeros(1, 3, side, side))
    finally:
        backbone.train(was_training)
    for pool in pools:
        chosen = [v for k, v in features.items() if k in pool.featmap_names]  # as the pool filters
        pool.scales, pool.map_levels = _setup_scales(
            chosen, [(side, side)], pool.canonical_scale, pool.canonical_level
        )


def build_detector(
    name: str,
    num_classes: int,
    *,
    image_size: int,
    pretrained: str = "none",
    score_threshold: float = 0.05,
    nms_iou: float = 0.5,
    detections_per_image: int = 100,
    trainable_backbone_layers: int | None = None,
    task: str | None = None,
    weights: WeightsPolicy | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """A catalog detector for ``num_classes`` project classes (plus the background output).

    ``image_size`` sets ``min_size``/``max_size`` (ignored by fixed-size SSD models). A trained
    detector is rebuilt with ``pretrained="none"`` and its checkpoint loaded over it."""
    if num_classes < 1:
        raise BadRequest("a detector needs at least one class")
    if pretrained not in PRETRAINED:
        raise BadRequest(f"pretrained must be one of {', '.join(PRETRAINED)}, got {str(pretrained)[:20]!r}")
    spec = get_detector_spec(name, task)
    chosen = ensure_weights(spec, pretrained, weights)
    kwargs: dict[str, Any] = {
        "detections_per_img": detections_per_image,
    }
    # the score threshold and NMS IoU have family-specific names in torchvision
    if spec.family in ("faster_rcnn", "mask_rcnn"):
        kwargs |= {"box_score_thresh": score_threshold, "box_nms_thresh": nms_iou}
        kwargs["box_detections_per_img"] = kwargs.pop("detections_per_img")
    else:
        kwargs |= {"score_thresh": score_threshold, "nms_thresh": nms_iou}
    if spec.fixed_size is None:
        kwargs |= {"min_size": image_size, "max_size": image_size}
    if spec.hub is not None:
        layers = trainable_backbone_layers
        if layers is not None and layers not in (0, 1):
            raise BadRequest(
                f"trainable_backbone_layers must be 0 (frozen) or 1 (trained) for {spec.name}",
                details={"model": spec.name},
            )
        model = spec.builder(num_classes=num_classes + 1, backbone_weights=chosen, **kwargs)
        # pretrained DINOv3 features are used frozen unless asked; random ones must learn
        if (chosen is not None and layers is None) or layers == 0:
            body = model.get_submodule("backbone.body")
            assert isinstance(body, dinov3.DINOv3Backbone)
            body.freeze()
    elif spec.coco_weights is None:  # the small configurations: built directly, always from scratch
        model = spec.builder(num_classes=num_classes + 1, **kwargs)
    else:
        layers = trainable_backbone_layers
        if layers is not None and not 0 <= layers <= spec.max_trainable_layers:
            raise BadRequest(
                f"trainable_backbone_layers must be 0..{spec.max_trainable_layers} for {spec.name}",
                details={"model": spec.name},
            )
        # nothing pretrained: torchvision trains every layer (and warns if told a number)
        common = {
            "trainable_backbone_layers": layers if chosen is not None else None,
            "progress": False,
            **kwargs,
        }
        if pretrained == "coco":
            model = spec.builder(weights=chosen, weights_backbone=None, **common)
            _replace_heads(model, spec, num_classes + 1)
        else:
            model = spec.builder(weights=None, weights_backbone=chosen, num_classes=num_classes + 1, **common)
    pin_roi_scales(model)
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretrained=str(chosen) if chosen is not None else None,
        extra={"image_size": spec.fixed_size or image_size, "masks": spec.masks, "family": spec.family},
    )
    return model, info
