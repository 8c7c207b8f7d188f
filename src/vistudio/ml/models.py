"""Model catalog: ``@register_model`` builders with their weights metadata.

A builder makes a torchvision backbone with a fresh head for ``num_classes``; the six DINOv3 entries
(``dinov3_vit_small|base|large``, ``dinov3_convnext_small|base|large``, see ``ml/dinov3``) make a
DINOv3 backbone with a linear head on its CLS / pooled feature, trained as a linear probe by default
(``freeze_backbone`` true), their gated weights from the Hugging Face Hub. Pretrained weights follow
the one model policy (``vistudio.ml.weights``): torch hub's local cache (``$TORCH_HOME/hub/checkpoints``),
a file the user names, or a download on first use into that cache — unless offline, when a missing
file is at once ``model_unavailable``. ``pretrained False`` (random initialisation) always works. Normalisation (mean/std) always comes from the
weights' metadata, so a model trained from scratch and one fine-tuned from ImageNet see the same
input statistics.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tvm

from vistudio.errors import BadRequest, ModelUnavailable
from vistudio.ml import dinov3
from vistudio.ml.weights import WeightsPolicy
from vistudio.registry import Registry


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str
    builder: Callable[..., nn.Module]
    # a torchvision WeightsEnum member: the pretrained weights and their metadata; None for the
    # DINOv3 entries, whose weights are a Hugging Face repository (``hub``)
    weights: Any
    head: Callable[[nn.Module], tuple[nn.Module, str]]  # → (parent module, attribute of the head)
    default_image_size: int = 224
    min_image_size: int = 32  # below it the model hardly learns: see MIN_IMAGE_SIZES
    total_stride: int = 32  # input side / side of the last feature map
    hub: dinov3.DINOv3Arch | None = None  # a DINOv3 architecture (gated weights on the Hub)
    freeze_by_default: bool = False  # DINOv3: a linear probe unless freeze_backbone is false

    @property
    def mean(self) -> list[float]:
        if self.hub is not None:
            return list(dinov3.IMAGE_MEAN)
        return [float(v) for v in self.weights.transforms().mean]

    @property
    def std(self) -> list[float]:
        if self.hub is not None:
            return list(dinov3.IMAGE_STD)
        return [float(v) for v in self.weights.transforms().std]

    def describe(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "family": self.family,
            "weights": self.hub.repo if self.hub is not None else str(self.weights),
            "params_millions": (
                self.hub.params_millions
                if self.hub is not None
                else round(self.weights.meta.get("num_params", 0) / 1e6, 1)
            ),
            "default_image_size": self.default_image_size,
            "min_image_size": self.min_image_size,
            "total_stride": self.total_stride,
            "mean": self.mean,
            "std": self.std,
            "pretrained_cached": cached_weights_path(self) is not None,
        }
        if self.hub is not None:
            out.update(
                {
                    "licence": self.hub.licence_url,
                    "gated": True,
                    "freeze_backbone_default": self.freeze_by_default,
                }
            )
        return out


@dataclass
class ModelInfo:
    """What a built model needs to be used again: name, classes, input statistics, weights source."""

    name: str
    num_classes: int
    mean: list[float]
    std: list[float]
    pretrained: str | None = None
    frozen_backbone: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


MODELS: Registry[ModelSpec] = Registry("model")


def register_model(spec: ModelSpec) -> ModelSpec:
    return MODELS.add(spec.name, spec)


def model_names() -> list[str]:
    return list(MODELS.entries)


def get_model_spec(name: str) -> ModelSpec:
    try:
        return MODELS.get(name)
    except KeyError:
        raise BadRequest(
            f"unknown model {name!r}; known: {', '.join(model_names())}", details={"models": model_names()}
        ) from None


def _fc(model: nn.Module) -> tuple[nn.Module, str]:
    return model, "fc"


def _classifier_last(model: nn.Module) -> tuple[nn.Module, str]:
    classifier = model.classifier
    assert isinstance(classifier, nn.Sequential)
    return classifier, str(len(classifier) - 1)


# The smallest useful input side per architecture. Every catalog model shrinks its input 32× before
# the head (32 px leaves a 1×1 feature map). ResNets still learn there (resnet18 reaches 90 % on
# the 32-px digits): plain convolutions with residual paths and a stem that keeps detail. MobileNetV3
# and EfficientNet stay near chance at 32 px: their depthwise stages and squeeze-excitation gates
# need some spatial extent, so they get a 3×3 last map at least (96 px); EfficientNet-B3, scaled for
# 300-px inputs, gets 128 px.
MIN_IMAGE_SIZES = {
    "resnet18": 32,
    "resnet34": 32,
    "resnet50": 32,
    "efficientnet_b0": 96,
    "efficientnet_b3": 128,
    "mobilenet_v3_small": 96,
    "mobilenet_v3_large": 96,
}

for _name, _family, _builder, _weights, _head in (
    ("resnet18", "resnet", tvm.resnet18, tvm.ResNet18_Weights.DEFAULT, _fc),
    ("resnet34", "resnet", tvm.resnet34, tvm.ResNet34_Weights.DEFAULT, _fc),
    ("resnet50", "resnet", tvm.resnet50, tvm.ResNet50_Weights.DEFAULT, _fc),
    (
        "efficientnet_b0",
        "efficientnet",
        tvm.efficientnet_b0,
        tvm.EfficientNet_B0_Weights.DEFAULT,
        _classifier_last,
    ),
    (
        "efficientnet_b3",
        "efficientnet",
        tvm.efficientnet_b3,
        tvm.EfficientNet_B3_Weights.DEFAULT,
        _classifier_last,
    ),
    (
        "mobilenet_v3_small",
        "mobilenet",
        tvm.mobilenet_v3_small,
        tvm.MobileNet_V3_Small_Weights.DEFAULT,
        _classifier_last,
    ),
    (
        "mobilenet_v3_large",
        "mobilenet",
        tvm.mobilenet_v3_large,
        tvm.MobileNet_V3_Large_Weights.DEFAULT,
        _classifier_last,
    ),
):
    register_model(
        ModelSpec(_name, _family, _builder, _weights, _head, min_image_size=MIN_IMAGE_SIZES[_name])
    )


def _dinov3_builder(name: str) -> Callable[..., nn.Module]:
    def build(weights: Any = None, num_classes: int = 1000) -> nn.Module:
        return dinov3.build_classifier(name, num_classes)

    return build


def _dinov3_head(model: nn.Module) -> tuple[nn.Module, str]:
    return model, "head"


# DINOv3 (ml/dinov3): ViT-S/B/L at patch 16 and ConvNeXt-S/B/L. A ViT still has a 2×2 patch grid at
# 32 px, and attention needs no spatial extent to learn; a ConvNeXt shrinks 32× like the CNNs above.
for _arch in dinov3.ARCHS.values():
    register_model(
        ModelSpec(
            _arch.name,
            "dinov3",
            _dinov3_builder(_arch.name),
            None,
            _dinov3_head,
            default_image_size=dinov3.IMAGE_SIZE,
            min_image_size=32 if _arch.kind == "vit" else 64,
            total_stride=_arch.total_stride,
            hub=_arch,
            freeze_by_default=True,
        )
    )


def cached_weights_path(spec: ModelSpec) -> Path | None:
    """The pretrained weights file in torch hub's cache (a DINOv3 entry: its folder in the Hugging
    Face cache), if it is there (nothing is downloaded)."""
    if spec.hub is not None:
        return dinov3.cached_weights(spec.hub)
    path = _hub_path(spec)
    return path if path.is_file() else None


def _hub_path(spec: ModelSpec) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(spec.weights.url).name


# what a user can do instead of downloading: (setting, how to set it)
_ALTERNATIVES = [
    ("pretrained", "train from scratch (--no-pretrained / pretrained: false)"),
    ("weights", "give a weights file (--pretrained PATH)"),
]


def check_pretrained_available(spec: ModelSpec, weights: WeightsPolicy | None = None) -> None:
    """Before training starts: ``ModelUnavailable`` when ``spec``'s pretrained weights are not in
    the cache and cannot be downloaded (offline, no network within seconds, or, for gated DINOv3
    weights, the Hub refusing this user)."""
    if spec.hub is not None:
        dinov3.check_weights(spec.hub, weights)
        return
    if cached_weights_path(spec) is not None:
        return
    (weights or WeightsPolicy.from_env()).require_network(
        spec.weights.url,
        what=f"the pretrained weights of {spec.name} are",
        settings=_ALTERNATIVES,
        details={"model": spec.name, "expected_file": _hub_path(spec).name},
    )


def _resolve_weights(
    spec: ModelSpec, pretrained: bool | str | Path, weights: WeightsPolicy | None = None
) -> Path | None:
    if pretrained is False or pretrained is None:
        return None
    if pretrained is True and spec.hub is not None:
        return dinov3.ensure_weights(spec.hub, weights)
    if pretrained is True:
        path = cached_weights_path(spec)
        if path is None:
            # downloaded on first use into torch hub's cache, as torchvision itself would
            path = (weights or WeightsPolicy.from_env()).url_download(
                spec.weights.url,
                _hub_path(spec),
                what=f"the pretrained weights of {spec.name} are",
                settings=_ALTERNATIVES,
                details={"model": spec.name, "expected_file": _hub_path(spec).name},
            )
        return path
    path = Path(pretrained).expanduser()
    if spec.hub is not None and _is_dir(path):
        return path  # a DINOv3 folder in the Hugging Face layout (config.json + model.safetensors)
    if not weights_file_exists(path):
        raise ModelUnavailable(
            f"pretrained weights file not found: {str(path)[:300]}", details={"model": spec.name}
        )
    return path


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def weights_file_exists(path: Path) -> bool:
    """``path.is_file()``, but a name too long or otherwise unusable is simply not a file."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def build_model(
    name: str,
    num_classes: int,
    *,
    pretrained: bool | str | Path = False,
    freeze_backbone: bool | None = None,
    weights: WeightsPolicy | None = None,
) -> tuple[nn.Module, ModelInfo]:
    """A catalog model with a ``num_classes`` head; backbone weights from the cache, a file, or a
    download under ``weights`` (default: the environment's policy) when asked. ``freeze_backbone``
    None: the entry's default (frozen for DINOv3, trained otherwise)."""
    if num_classes < 2:
        raise BadRequest(f"a classifier needs at least 2 classes, got {num_classes}")
    spec = get_model_spec(name)
    if freeze_backbone is None:
        freeze_backbone = spec.freeze_by_default
    weights_file = _resolve_weights(spec, pretrained, weights)
    if spec.hub is not None:
        model: nn.Module = dinov3.build_classifier(name, num_classes, weights=weights_file)
    elif weights_file is None:
        model = spec.builder(weights=None, num_classes=num_classes)
    else:
        model = spec.builder(weights=None)
        try:
            state = torch.load(weights_file, map_location="cpu", weights_only=True)
            if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
                state = state["state_dict"]
            model.load_state_dict(state)
        except Exception as exc:  # a wrong or damaged file: say which and why
            raise ModelUnavailable(
                f"cannot load pretrained weights for {name} from {weights_file}: {exc}",
                details={"model": name},
            ) from exc
        parent, attr = spec.head(model)
        old = getattr(parent, attr)
        setattr(parent, attr, nn.Linear(old.in_features, num_classes))
    if freeze_backbone:
        parent, attr = spec.head(model)
        head_params = {id(p) for p in getattr(parent, attr).parameters()}
        for p in model.parameters():
            p.requires_grad = id(p) in head_params
        if isinstance(model, dinov3.DINOv3Classifier):
            model.freeze_backbone()  # and eval mode: see DINOv3Backbone
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        mean=spec.mean,
        std=spec.std,
        pretrained=str(weights_file) if weights_file else None,
        frozen_backbone=freeze_backbone,
    )
    return model, info
