"""Segmenter catalog: semantic segmentation networks, built for a project's classes.

Every entry builds one network that labels every pixel, wrapped in :class:`SegmentationModel` so
that ``model(x)`` with ``x`` an ``(N, 3, H, W)`` normalised float batch returns the class logits
``(N, K, H, W)`` at the input's size, as a plain tensor (torchvision's ``{"out", "aux"}`` dict and
its auxiliary head are dropped: nothing trains them here, and a tensor is what ONNX, evaluation and
the loss want). ``K`` counts the model's classes, background included (``ml/tasks/
semantic_segmentation``: class 0 is the background). The families:

- torchvision's **FCN** (ResNet-50, ResNet-101), **DeepLabV3** (ResNet-50, ResNet-101,
  MobileNetV3-Large) and **LR-ASPP** (MobileNetV3-Large), each with torchvision's own backbone
  settings (dilated last stages: output stride 8 for the ResNets, 16 for MobileNetV3);
- **DeepLabV3+** (ResNet-50, MobileNetV3-Large), written here: torchvision's ASPP on the backbone's
  stride-16 features, upsampled 4× and joined with a 48-channel projection of its stride-4
  features (the low-level skip that recovers object borders), two 3×3 convolutions, the classes,
  then the input size. Written rather than taken from segmentation-models-pytorch: it is forty
  lines over torchvision's ASPP and backbones, it saves a dependency (and its own download
  mechanism), and its weights follow the same policy as every other model here — the backbones'
  ImageNet weights from torchvision, through ``ml/weights``.
- **DINOv3 linear** (``dinov3_vit_small|base|large``, ``ml/dinov3``): the ViT's patch-token grid
  (stride 16, CLS and register tokens dropped), batch norm and a 1×1 convolution to the classes,
  upsampled bilinearly ×16 — the linear probe with which DINOv3's dense features are judged,
  trained with the backbone frozen by default. ``backbone`` weights are the official DINOv3
  checkpoints, gated on the Hugging Face Hub (see ``ml/dinov3``); there are no ``full`` weights;
- two **small configurations** for small images, quick experiments and the test suite:
  ``lraspp_mobilenet_v3_small`` (LR-ASPP on MobileNetV3-Small, 1.0 M parameters) and
  ``deeplabv3plus_resnet18`` (DeepLabV3+ on ResNet-18 at output stride 32 with narrower 128-channel
  ASPP and decoder, 13.5 M parameters, 11 M of them the backbone).

Weights (``pretrained``) follow the one model policy (``ml/weights``), exactly as the detectors
do (``ml/detectors``): ``"none"`` (random initialisation, always works), ``"backbone"`` (the
backbone's ImageNet weights) or ``"full"`` (torchvision's segmentation weights trained on COCO
with the 20 VOC classes plus background, its class convolutions then replaced for ``K`` classes;
FCN, DeepLabV3 and LR-ASPP have them). A missing file is downloaded into torch hub's cache on
first use, unless the workspace is offline: then at once ``ModelUnavailable`` naming the setting.

Every batch norm of a built model follows its training batches with momentum :data:`BN_MOMENTUM`
(0.1, PyTorch's default), whatever torchvision set: see there why.

A library module: no database, no web.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import models as tvm
from torchvision.models import segmentation as tvs
from torchvision.models._utils import IntermediateLayerGetter
from torchvision.models.segmentation.deeplabv3 import ASPP

from vistudio.errors import BadRequest
from vistudio.ml import dinov3
from vistudio.ml.detectors import IMAGENET_MEAN, IMAGENET_STD, _hub_file
from vistudio.ml.models import ModelInfo
from vistudio.ml.weights import WeightsPolicy
from vistudio.registry import Registry

Pretrained = Literal["none", "backbone", "full"]
PRETRAINED: tuple[str, ...] = ("none", "backbone", "full")
# Batch norm's running statistics follow each training batch by this much. torchvision's
# MobileNetV3 uses 0.01 (TensorFlow's 0.99 decay): its running statistics then take hundreds of
# steps to leave their initial 0/1, and a model that learned in a few minutes on CPU predicts the
# background everywhere in eval mode although it segments well in train mode (measured: LR-ASPP,
# 21 steps, train mIoU 0.82, val mIoU 0.22). PyTorch's default, 0.1, settles within tens of steps.
BN_MOMENTUM = 0.1
# what a user can do instead of downloading, in the messages (the detectors' words)
_ALTERNATIVES = [("pretrained", "train from scratch (--no-pretrained / pretrained: none)")]


@dataclass(frozen=True)
class SegmenterSpec:
    name: str
    family: str  # fcn, deeplabv3, lraspp, deeplabv3plus
    backbone: str
    # (num_classes, backbone weights enum or None) → the bare network (a dict or a tensor out)
    builder: Callable[[int, Any | None], nn.Module]
    full_weights: Any | None  # torchvision's COCO-with-VOC-labels weights of the whole network
    backbone_weights: Any | None  # the backbone's ImageNet weights
    # torchvision's own builder for ``full`` weights (its heads sized for the 21 VOC labels)
    full_builder: Callable[..., nn.Module] | None = None
    default_image_size: int = 256
    min_image_size: int = 64  # below it the deepest feature map is a few pixels wide
    output_stride: int = 16  # input side / side of the deepest feature map
    # a DINOv3 architecture: its ``backbone`` weights are a gated Hugging Face repository, and
    # ``builder`` takes their local folder (or None) instead of a torchvision weights enum
    hub: dinov3.DINOv3Arch | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "task": "semantic_segmentation",
            "backbone": self.backbone,
            "full_weights": str(self.full_weights) if self.full_weights is not None else None,
            "backbone_weights": str(self.backbone_weights) if self.backbone_weights is not None else None,
            "pretrained": [p for p in PRETRAINED if p == "none" or _weights_or_none(self, p) is not None],
            "default_image_size": self.default_image_size,
            "min_image_size": self.min_image_size,
            "output_stride": self.output_stride,
            "params_millions": round(parameter_count(self.name) / 1e6, 1),
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
        }


SEGMENTERS: Registry[SegmenterSpec] = Registry("segmenter")


def register_segmenter(spec: SegmenterSpec) -> SegmenterSpec:
    return SEGMENTERS.add(spec.name, spec)


def segmenter_names() -> list[str]:
    """Catalog names, in catalog order."""
    return list(SEGMENTERS.entries)


def get_segmenter_spec(name: str) -> SegmenterSpec:
    if name not in SEGMENTERS.entries:
        names = segmenter_names()
        raise BadRequest(
            f"unknown semantic segmentation model {name!r}; known: {', '.join(names)}",
            details={"models": names},
        )
    return SEGMENTERS.get(name)


# --- the wrapper --------------------------------------------------------------------------------


class SegmentationModel(nn.Module):
    """``net`` with one output: ``(N, 3, H, W)`` → logits ``(N, K, H, W)`` at the input's size.

    torchvision's segmentation networks return ``{"out": logits}`` already upsampled to the input
    (bilinear, ``align_corners=False``); the networks written here return the tensor. Either way
    the logits are resized to the input (bilinear, ``align_corners=False``) if they are not there
    yet, so every model of the catalog keeps the same contract."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        logits: torch.Tensor = out["out"] if isinstance(out, dict) else out
        if logits.shape[-2:] != x.shape[-2:]:
            logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits


# --- DINOv3 linear head ----------------------------------------------------------------------------


class DINOv3LinearSegmenter(nn.Module):
    """A DINOv3 ViT's patch grid ``(N, C, ⌈H/16⌉, ⌈W/16⌉)`` → batch norm → 1×1 convolution →
    logits upsampled ×16 (bilinear) and cropped to the input's ``H × W`` (the backbone pads the
    input bottom/right to a multiple of 16, so the crop drops exactly the padding)."""

    def __init__(self, backbone: dinov3.DINOv3Backbone, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.norm = nn.BatchNorm2d(backbone.embed_dim)
        self.classifier = nn.Conv2d(backbone.embed_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid = self.backbone(x)[-1]
        logits = self.classifier(self.norm(grid))
        stride = self.backbone.strides[-1]
        padded = (int(grid.shape[-2]) * stride, int(grid.shape[-1]) * stride)
        logits = F.interpolate(logits, size=padded, mode="bilinear", align_corners=False)
        return logits[..., : x.shape[-2], : x.shape[-1]]


def _dinov3_linear(name: str) -> Callable[[int, Any | None], nn.Module]:
    def build(num_classes: int, weights: Any | None = None) -> nn.Module:
        backbone = dinov3.DINOv3Backbone.from_arch(name, weights=weights)
        return DINOv3LinearSegmenter(backbone, num_classes)

    return build


# --- DeepLabV3+ ------------------------------------------------------------------------------------


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ (Chen et al., 2018): ASPP on the deep features, a decoder that joins them with
    projected low-level features, the class logits upsampled to the input.

    ``backbone`` returns ``{"low": (N, low_channels, H/4, W/4), "high": (N, high_channels, …)}``."""

    def __init__(
        self,
        backbone: nn.Module,
        *,
        low_channels: int,
        high_channels: int,
        num_classes: int,
        rates: tuple[int, int, int] = (6, 12, 18),
        aspp_channels: int = 256,
        low_projection: int = 48,
        decoder_channels: int = 256,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = ASPP(high_channels, list(rates), aspp_channels)
        self.project = nn.Sequential(
            nn.Conv2d(low_channels, low_projection, 1, bias=False),
            nn.BatchNorm2d(low_projection),
            nn.ReLU(inplace=True),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(aspp_channels + low_projection, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(decoder_channels, decoder_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(decoder_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = nn.Conv2d(decoder_channels, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        low = self.project(features["low"])
        high = F.interpolate(
            self.aspp(features["high"]), size=low.shape[-2:], mode="bilinear", align_corners=False
        )
        logits = self.classifier(self.decoder(torch.cat([high, low], dim=1)))
        return F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _mobilenet_stages(features: nn.Module) -> list[int]:
    """Indices of a MobileNetV3 ``features`` block list where a stage starts (stride 2, or the
    dilated stage that replaced it), with the stem first and the last block last — torchvision's
    own reading of the network, as its segmentation builders do."""
    blocks = list(features.children())
    return [0] + [i for i, b in enumerate(blocks) if getattr(b, "_is_cn", False)] + [len(blocks) - 1]


def deeplabv3plus_resnet50(num_classes: int, backbone_weights: Any | None = None) -> nn.Module:
    # output stride 16: the last stage dilated (DeepLabV3+'s training setting, ASPP rates 6/12/18)
    body = tvm.resnet50(weights=backbone_weights, replace_stride_with_dilation=[False, False, True])
    backbone = IntermediateLayerGetter(body, return_layers={"layer1": "low", "layer4": "high"})
    return DeepLabV3Plus(backbone, low_channels=256, high_channels=2048, num_classes=num_classes)


def deeplabv3plus_mobilenet_v3_large(num_classes: int, backbone_weights: Any | None = None) -> nn.Module:
    features = tvm.mobilenet_v3_large(weights=backbone_weights, dilated=True).features
    stages = _mobilenet_stages(features)
    low, high = stages[-4] - 1, stages[-1]  # the last block at stride 4; the dilated stride-16 end
    backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
    return DeepLabV3Plus(
        backbone,
        low_channels=features[low].out_channels,
        high_channels=features[high].out_channels,
        num_classes=num_classes,
    )


def deeplabv3plus_resnet18(num_classes: int, backbone_weights: Any | None = None) -> nn.Module:
    # ResNet-18's basic blocks cannot dilate: output stride 32, so smaller ASPP rates; a narrower
    # ASPP and decoder keep the head small next to the backbone
    body = tvm.resnet18(weights=backbone_weights)
    backbone = IntermediateLayerGetter(body, return_layers={"layer1": "low", "layer4": "high"})
    return DeepLabV3Plus(
        backbone,
        low_channels=64,
        high_channels=512,
        num_classes=num_classes,
        rates=(2, 4, 6),
        aspp_channels=128,
        low_projection=32,
        decoder_channels=128,
    )


def lraspp_mobilenet_v3_small(num_classes: int, backbone_weights: Any | None = None) -> nn.Module:
    # torchvision's LR-ASPP head on the small MobileNetV3, wired as torchvision wires the large one
    features = tvm.mobilenet_v3_small(weights=backbone_weights, dilated=True).features
    stages = _mobilenet_stages(features)
    low, high = stages[-4], stages[-1]  # stride 8 and the dilated stride-16 end
    backbone = IntermediateLayerGetter(features, return_layers={str(low): "low", str(high): "high"})
    return tvs.LRASPP(
        backbone, features[low].out_channels, features[high].out_channels, num_classes, inter_channels=64
    )


def _torchvision(builder: Callable[..., nn.Module]) -> Callable[[int, Any | None], nn.Module]:
    """A torchvision segmentation builder with a fresh head for ``num_classes`` and no auxiliary
    head (torchvision's LR-ASPP refuses the ``aux_loss`` argument: it has none)."""

    def build(num_classes: int, backbone_weights: Any | None = None) -> nn.Module:
        aux = {} if builder is tvs.lraspp_mobilenet_v3_large else {"aux_loss": False}
        return builder(
            weights=None, weights_backbone=backbone_weights, num_classes=num_classes, progress=False, **aux
        )

    return build


_R50 = tvm.ResNet50_Weights.IMAGENET1K_V1
_R101 = tvm.ResNet101_Weights.IMAGENET1K_V1
_MBV3 = tvm.MobileNet_V3_Large_Weights.IMAGENET1K_V1
for _spec in (
    SegmenterSpec(
        "fcn_resnet50",
        "fcn",
        "resnet50",
        _torchvision(tvs.fcn_resnet50),
        tvs.FCN_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        _R50,
        tvs.fcn_resnet50,
        default_image_size=512,
        output_stride=8,
    ),
    SegmenterSpec(
        "fcn_resnet101",
        "fcn",
        "resnet101",
        _torchvision(tvs.fcn_resnet101),
        tvs.FCN_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        _R101,
        tvs.fcn_resnet101,
        default_image_size=512,
        output_stride=8,
    ),
    SegmenterSpec(
        "deeplabv3_resnet50",
        "deeplabv3",
        "resnet50",
        _torchvision(tvs.deeplabv3_resnet50),
        tvs.DeepLabV3_ResNet50_Weights.COCO_WITH_VOC_LABELS_V1,
        _R50,
        tvs.deeplabv3_resnet50,
        default_image_size=512,
        output_stride=8,
    ),
    SegmenterSpec(
        "deeplabv3_resnet101",
        "deeplabv3",
        "resnet101",
        _torchvision(tvs.deeplabv3_resnet101),
        tvs.DeepLabV3_ResNet101_Weights.COCO_WITH_VOC_LABELS_V1,
        _R101,
        tvs.deeplabv3_resnet101,
        default_image_size=512,
        output_stride=8,
    ),
    SegmenterSpec(
        "deeplabv3_mobilenet_v3_large",
        "deeplabv3",
        "mobilenet_v3_large",
        _torchvision(tvs.deeplabv3_mobilenet_v3_large),
        tvs.DeepLabV3_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        _MBV3,
        tvs.deeplabv3_mobilenet_v3_large,
        default_image_size=512,
    ),
    SegmenterSpec(
        "lraspp_mobilenet_v3_large",
        "lraspp",
        "mobilenet_v3_large",
        _torchvision(tvs.lraspp_mobilenet_v3_large),
        tvs.LRASPP_MobileNet_V3_Large_Weights.COCO_WITH_VOC_LABELS_V1,
        _MBV3,
        tvs.lraspp_mobilenet_v3_large,
    ),
    SegmenterSpec(
        "deeplabv3plus_resnet50",
        "deeplabv3plus",
        "resnet50",
        deeplabv3plus_resnet50,
        None,
        _R50,
        default_image_size=512,
    ),
    SegmenterSpec(
        "deeplabv3plus_mobilenet_v3_large",
        "deeplabv3plus",
        "mobilenet_v3_large",
        deeplabv3plus_mobilenet_v3_large,
        None,
        _MBV3,
    ),
    SegmenterSpec(
        "lraspp_mobilenet_v3_small",
        "lraspp",
        "mobilenet_v3_small",
        lraspp_mobilenet_v3_small,
        None,
        tvm.MobileNet_V3_Small_Weights.IMAGENET1K_V1,
        default_image_size=128,
        min_image_size=32,
    ),
    SegmenterSpec(
        "deeplabv3plus_resnet18",
        "deeplabv3plus",
        "resnet18",
        deeplabv3plus_resnet18,
        None,
        tvm.ResNet18_Weights.IMAGENET1K_V1,
        default_image_size=128,
        output_stride=32,
    ),
):
    register_segmenter(_spec)

for _arch in dinov3.ARCHS.values():
    if _arch.kind == "vit":
        register_segmenter(
            SegmenterSpec(
                _arch.name,
                "dinov3_linear",
                _arch.name,
                _dinov3_linear(_arch.name),
                None,
                _arch.repo,
                default_image_size=dinov3.IMAGE_SIZE,
                min_image_size=32,
                output_stride=16,
                hub=_arch,
            )
        )


@cache
def parameter_count(name: str) -> int:
    """The number of parameters of catalog model ``name`` for 21 classes, counted on the meta device
    (no memory, no initialisation: fast even for the ResNet-101 networks)."""
    spec = get_segmenter_spec(name)
    if spec.hub is not None:  # the backbone's count, and batch norm + 1×1 convolution for 21 classes
        return round(spec.hub.params_millions * 1e6) + spec.hub.embed_dim * 24 + 21
    with torch.device("meta"):
        net = spec.builder(21, None)
    return sum(p.numel() for p in net.parameters())


# --- weights -----------------------------------------------------------------------------------------


def _weights_or_none(spec: SegmenterSpec, pretrained: str) -> Any | None:
    if pretrained == "full":
        return spec.full_weights
    return spec.backbone_weights if pretrained == "backbone" else None


def _weights_for(spec: SegmenterSpec, pretrained: str) -> Any | None:
    if pretrained not in PRETRAINED:
        raise BadRequest(
            f"pretrained must be one of {', '.join(PRETRAINED)} for a segmentation model, "
            f"got {str(pretrained)[:20]!r}",
            details={"model": spec.name, "pretrained": str(pretrained)[:20]},
        )
    weights = _weights_or_none(spec, pretrained)
    if weights is None and pretrained != "none":
        what = "segmentation (COCO with VOC labels)" if pretrained == "full" else "ImageNet backbone"
        offered = "'backbone' or 'none'" if spec.backbone_weights is not None else "'none'"
        raise BadRequest(
            f"{spec.name} has no {what} weights; use pretrained {offered}",
            details={"model": spec.name, "pretrained": pretrained},
        )
    return weights


def weights_cached(spec: SegmenterSpec) -> dict[str, bool]:
    """Whether each kind of pretrained weights of ``spec`` is in torch hub's cache (DINOv3: the
    Hugging Face cache); nothing is downloaded."""
    if spec.hub is not None:
        return {"backbone": dinov3.cached_weights(spec.hub) is not None, "full": False}
    return {
        kind: weights is not None and _hub_file(weights).is_file()
        for kind, weights in (("backbone", spec.backbone_weights), ("full", spec.full_weights))
    }


def ensure_segmenter_weights(
    spec: SegmenterSpec, pretrained: str, policy: WeightsPolicy | None = None
) -> Any | None:
    """The weights enum for ``pretrained``, its file in torch hub's cache (downloaded there under
    ``policy`` when missing): torchvision's builders then load it from the cache."""
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
            settings=_ALTERNATIVES,
            details={"model": spec.name, "expected_file": dest.name},
        )
    return weights


def check_segmenter_weights(
    spec: SegmenterSpec, pretrained: str, policy: WeightsPolicy | None = None
) -> None:
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
        settings=_ALTERNATIVES,
        details={"model": spec.name, "expected_file": _hub_file(weights).name},
    )


# --- building ------------------------------------------------------------------------------------------


def _replace_class_convs(net: nn.Module, old_classes: int, num_classes: int) -> int:
    """Swap every convolution of ``net``'s head that outputs ``old_classes`` channels (one for
    FCN and DeepLabV3, two for LR-ASPP) for a fresh one with ``num_classes`` outputs; how many."""
    head = net.get_submodule("classifier")
    swapped = 0
    for name, module in list(head.named_modules()):
        if isinstance(module, nn.Conv2d) and module.out_channels == old_classes:
            parent = head.get_submodule(name.rpartition(".")[0]) if "." in name else head
            kh, kw = module.kernel_size
            fresh = nn.Conv2d(module.in_channels, num_classes, (kh, kw), bias=module.bias is not None)
            setattr(parent, name.rpartition(".")[2], fresh)
            swapped += 1
    return swapped


def backbone_of(model: nn.Module) -> nn.Module:
    """The feature extractor of a catalog model (what ``freeze_backbone`` freezes)."""
    net = model.net if isinstance(model, SegmentationModel) else model
    return net.get_submodule("backbone")


def build_segmenter(
    name: str,
    num_classes: int,
    *,
    pretrained: str = "none",
    freeze_backbone: bool = False,
    weights: WeightsPolicy | None = None,
) -> tuple[SegmentationModel, ModelInfo]:
    """A catalog segmenter with ``num_classes`` outputs (the model's classes, background
    included), as a :class:`SegmentationModel`. ``pretrained``: none | backbone | full, the
    weights from torch hub's cache or downloaded under ``weights`` (default: the environment's
    policy). A trained model is rebuilt with ``pretrained="none"`` and its checkpoint loaded over it."""
    if num_classes < 2:
        raise BadRequest(
            f"a segmentation model needs at least 2 classes (background and one), got {num_classes}"
        )
    spec = get_segmenter_spec(name)
    chosen = ensure_segmenter_weights(spec, pretrained, weights)
    if pretrained == "full":
        assert spec.full_builder is not None and chosen is not None
        full = len(chosen.meta["categories"])
        net = spec.full_builder(weights=chosen, progress=False)
        if hasattr(net, "aux_classifier"):
            # trained on the 21 VOC labels, and nothing trains it here
            setattr(net, "aux_classifier", None)  # noqa: B010 (typed as a module by torch)
        _replace_class_convs(net, full, num_classes)
    else:
        net = spec.builder(num_classes, chosen)
    model = SegmentationModel(net)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = BN_MOMENTUM
    if freeze_backbone:
        for p in backbone_of(model).parameters():
            p.requires_grad = False
        backbone = backbone_of(model)
        if isinstance(backbone, dinov3.DINOv3Backbone):
            backbone.freeze()  # and eval mode: see DINOv3Backbone
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        mean=list(IMAGENET_MEAN),
        std=list(IMAGENET_STD),
        pretrained=str(chosen) if chosen is not None else None,
        frozen_backbone=freeze_backbone,
        extra={"family": spec.family, "backbone": spec.backbone, "output_stride": spec.output_stride},
    )
    return model, info
