"""Oriented (rotated-box) detectors: a ResNet/FPN backbone and a dense head, in two families —
FCOS-style (``OrientedFCOS``: every location predicts a box) and RetinaNet-style
(``OrientedRetinaNet``: every anchor of every location predicts one) — on one base class
(``OrientedDetector``: backbone, batching and normalisation, selection, ``forward``).

**FCOS-style.** Every location of every pyramid level (strides 8 to 128) predicts:

- **class logits** (one per project class, sigmoid; no background output), trained with the
  sigmoid focal loss over all locations, normalised by the number of positive locations;
- **the box** as an offset of its centre from the location, ``(cx - x, cy - y) / stride``, and
  its log size, ``log(w / stride), log(h / stride)``;
- **the angle** as the unit vector ``(cos 2θ, sin 2θ)``;
- **a centre-ness** logit (FCOS's, measured in the box's own rotated frame), which multiplies the
  class score at inference so that locations near an object's centre rank first.

Angle convention: that of ``ml/inference/rotated`` (θ in radians from the x axis to the ``w``
side, turning towards y, clockwise on screen). A rotated rectangle has four equivalent
parameterisations: ``(w, h, θ)``, ``(w, h, θ + π)``, ``(h, w, θ + π/2)``, ``(h, w, θ − π/2)``.
Regressing ``2θ`` as a unit vector makes θ and θ + π the same target. The w/h swap is handled by
the loss: the size-and-angle loss compares the prediction with the target's **long-edge form**
(``w`` ≥ ``h``; ``(h, w, θ + π/2)`` is rewritten so), a function of the rectangle and not of how
it was written, so equivalent targets give the same loss; for a near-square target (sides within
15 % of each other, whose long edge is a matter of annotation noise) the loss is the **minimum
over the two parameterisations** ``(w, h, θ)`` and ``(h, w, θ + π/2)`` (whose angle vectors are
opposite), so such boxes do not pull the angle two ways. (The minimum for every box was tried
first: with both forms allowed, a network starting from zero sits between two opposite angle
targets and learns the angle many epochs later.) The angle loss has weight 2 (``ANGLE_WEIGHT``),
the others 1.

Assignment (centre sampling): a location is a positive of an object when it lies inside the
rotated box, within 1.5 strides of its centre along both of the box's axes, and on the pyramid
level whose range holds the object's largest centre-to-side distance (FCOS's ranges 0–64–128–
256–512–∞ px); a location claimed by several objects goes to the smallest-area one.

Decoding: score = sqrt(sigmoid(class) · sigmoid(centre-ness)) and every location's box decoded
to ``(cx, cy, w, h, θ)`` (θ folded into [-π/2, π/2)) — :meth:`OrientedDetector.candidates`, the
part an ONNX export holds —; then :func:`~vistudio.ml.inference.onnx_oriented.select_detections`,
the one selection that exported models run too: candidates under the score threshold are dropped,
the best 1,000 per level kept, the best 300 of the image kept, then per-class greedy rotated NMS
(``rotated_nms``) and the best ``detections_per_image``.

**RetinaNet-style.** Each location holds ``A`` = 9 **horizontal anchors** (torchvision's
``AnchorGenerator`` rule, written here: sides ``4 · stride · {1, 2^⅓, 2^⅔}`` for height/width
ratios 0.5, 1 and 2); each anchor predicts class logits (sigmoid focal loss over the anchors that
are not ignored, normalised by the number of positives) and 6 regression outputs: the centre offset
and log size relative to the anchor, ``((cx - ax) / aw, (cy - ay) / ah, log(w / aw), log(h /
ah))``, and the same ``(cos 2θ, sin 2θ)``, trained with the same loss (:func:`box_losses`, told each
anchor's aspect so that the ``(h, w, θ + π/2)`` writing of a target is still the same rectangle).
FCOS's location is the square anchor ``(x, y, stride, stride)`` of this encoding
(:func:`encode_boxes` is :func:`encode_to_anchors` of it). Score = sigmoid(class); no centre-ness.

Assignment (RetinaNet's rule, :func:`assign_anchors`): by the IoU of each anchor with each object's
**axis-aligned bounds** — positive at ≥ 0.5 (the object of highest IoU), negative under 0.4,
ignored in between, and every object's best anchors positive whatever their IoU. The bounds rather
than the rotated IoU (``ml/inference/rotated``, a NumPy polygon clipping): the anchors are
horizontal, the IoU of the whole anchor × object matrix is needed at every step (some 120,000
anchors × hundreds of objects on an 800 px DOTA image) and torchvision's ``box_iou`` computes it
in one tensor operation; the rotated IoU of a horizontal anchor with a thin diagonal object is low
for every anchor, so such objects would live on their forced best anchor alone. The price: a thin
diagonal object is learnt by anchors shaped like its (square) bounds, which the regression then
turns and thins.

Images: the model takes RGB float tensors in 0..1 of any size; it resizes each (keeping its aspect
ratio, so angles are unchanged) to fit ``image_size`` × ``image_size``, pads, normalises with
ImageNet's mean and std, and returns boxes in the input's pixels.

Catalog (``family`` ``fcos_obb`` or ``retina_obb``): ``fcos_obb_resnet18_fpn64`` and
``retina_obb_resnet18_fpn64`` (ResNet-18, 64-channel FPN, two-convolution towers, random
initialisation: train in a minute or two on a laptop CPU at 96–160 px) and
``fcos_obb_resnet50_fpn`` and ``retina_obb_resnet50_fpn`` (ResNet-50, 256-channel FPN,
four-convolution towers, optionally ImageNet backbone weights through the one weights policy).

A library module: no database, no web.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as TF
from torch import nn
from torchvision import models as tvm
from torchvision.models.detection import backbone_utils as bu
from torchvision.ops import box_iou, sigmoid_focal_loss
from torchvision.ops import feature_pyramid_network as fpn

from vistudio.errors import BadRequest
from vistudio.ml.detectors import IMAGENET_MEAN, IMAGENET_STD, _hub_file
from vistudio.ml.inference.onnx_oriented import (  # noqa: F401 - PRE_NMS_TOP_N, NMS_CANDIDATES: re-exported
    NMS_CANDIDATES,
    PRE_NMS_TOP_N,
    Selection,
    select_detections,
    to_original,
)
from vistudio.ml.models import ModelInfo
from vistudio.ml.weights import WeightsPolicy
from vistudio.registry import Registry

PRETRAINED: tuple[str, ...] = ("none", "backbone")
STRIDES = (8, 16, 32, 64, 128)
# the largest centre-to-side distance (px of the model's input) each level is responsible for
LEVEL_RANGES = ((0.0, 64.0), (64.0, 128.0), (128.0, 256.0), (256.0, 512.0), (512.0, math.inf))
CENTRE_RADIUS = 1.5  # centre sampling: strides from the object's centre, along its own axes
# the angle loss counts twice: with weight 1 the angle was learnt last, at a different epoch
# from one seed to the next (the small model's validation mAP50 after 12 epochs ranged 0.41–0.93
# over three seeds; with 2 the worst of those seeds reached 0.99)
ANGLE_WEIGHT = 2.0
MAX_LOG_SIZE = math.log(4096 / 8)
LOSS_NAMES = ("loss_classifier", "loss_box_reg", "loss_angle", "loss_centerness")
# sides closer than this ratio: a near-square box, whose long edge is not a convention to learn
SQUARE_ASPECT = 1.15
# RetinaNet-style: anchors of (ANCHOR_SIZE · stride · scale)² px, each height/width ratio; assignment
ANCHOR_SIZE = 4.0
ANCHOR_SCALES = (1.0, 2 ** (1 / 3), 2 ** (2 / 3))
ANCHOR_RATIOS = (0.5, 1.0, 2.0)
POSITIVE_IOU, NEGATIVE_IOU = 0.5, 0.4


@dataclass(frozen=True)
class OrientedDetectorSpec:
    name: str
    depth: int  # ResNet 18 or 50
    channels: int  # FPN and head width
    head_convs: int
    backbone_weights: Any | None  # a torchvision WeightsEnum member, if ImageNet weights exist
    default_image_size: int = 640
    min_image_size: int = 64
    family: str = "fcos_obb"  # a key of FAMILIES
    # retina_obb: the anchors of a location, in strides (see anchor_shapes)
    anchor_size: float = ANCHOR_SIZE
    anchor_scales: tuple[float, ...] = ANCHOR_SCALES
    anchor_ratios: tuple[float, ...] = ANCHOR_RATIOS

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "family": self.family,
            "task": "oriented_detection",
            "masks": False,
            "coco_weights": None,
            "backbone_weights": str(self.backbone_weights) if self.backbone_weights is not None else None,
            "default_image_size": self.default_image_size,
            "min_image_size": self.min_image_size,
            "fixed_size": None,
            "max_trainable_layers": 5,
        }


ORIENTED_DETECTORS: Registry[OrientedDetectorSpec] = Registry("oriented detector")
for _spec in (
    OrientedDetectorSpec("fcos_obb_resnet18_fpn64", 18, 64, 2, None, 160, 64),
    OrientedDetectorSpec("fcos_obb_resnet50_fpn", 50, 256, 4, tvm.ResNet50_Weights.IMAGENET1K_V1, 800, 128),
    OrientedDetectorSpec("retina_obb_resnet18_fpn64", 18, 64, 2, None, 160, 64, family="retina_obb"),
    OrientedDetectorSpec(
        "retina_obb_resnet50_fpn",
        50,
        256,
        4,
        tvm.ResNet50_Weights.IMAGENET1K_V1,
        800,
        128,
        family="retina_obb",
    ),
):
    ORIENTED_DETECTORS.add(_spec.name, _spec)


def get_oriented_spec(name: str) -> OrientedDetectorSpec:
    names = list(ORIENTED_DETECTORS.entries)
    if name not in names:
        raise BadRequest(
            f"unknown oriented detection model {name!r}; known: {', '.join(names)}", details={"models": names}
        )
    return ORIENTED_DETECTORS.get(name)


# --- weights ----------------------------------------------------------------------------------------


def _weights_for(spec: OrientedDetectorSpec, pretrained: str) -> Any | None:
    if pretrained not in PRETRAINED:
        raise BadRequest(
            f"pretrained must be one of {', '.join(PRETRAINED)} for an oriented detector, got "
            f"{str(pretrained)[:20]!r}",
            details={"model": spec.name, "pretrained": str(pretrained)[:20]},
        )
    if pretrained == "none":
        return None
    if spec.backbone_weights is None:
        raise BadRequest(
            f"{spec.name} has no ImageNet backbone weights; use pretrained 'none'",
            details={"model": spec.name, "pretrained": pretrained},
        )
    return spec.backbone_weights


_SETTINGS = [("pretrained", "train from scratch (--no-pretrained / pretrained: none)")]


def check_oriented_weights(
    spec: OrientedDetectorSpec, pretrained: str, policy: WeightsPolicy | None = None
) -> None:
    """Before training starts: ``ModelUnavailable`` when the weights are neither cached nor
    downloadable."""
    weights = _weights_for(spec, pretrained)
    if weights is None or _hub_file(weights).is_file():
        return
    (policy or WeightsPolicy.from_env()).require_network(
        weights.url,
        what=f"the ImageNet backbone weights of {spec.name} are",
        settings=_SETTINGS,
        details={"model": spec.name, "expected_file": _hub_file(weights).name},
    )


def _ensure_weights(spec: OrientedDetectorSpec, pretrained: str, policy: WeightsPolicy | None) -> Any | None:
    weights = _weights_for(spec, pretrained)
    if weights is None:
        return None
    dest: Path = _hub_file(weights)
    if not dest.is_file():
        (policy or WeightsPolicy.from_env()).url_download(
            weights.url,
            dest,
            what=f"the ImageNet backbone weights of {spec.name} are",
            settings=_SETTINGS,
            details={"model": spec.name, "expected_file": dest.name},
        )
    return weights


# --- the network ------------------------------------------------------------------------------------


def _backbone(spec: OrientedDetectorSpec, weights: Any | None, trainable_layers: int | None) -> nn.Module:
    """ResNet C3–C5 with an FPN and P6/P7: five levels at strides 8–128."""
    if spec.depth == 18:
        body = tvm.resnet18(weights=weights)
        in_channels = [128, 256, 512]
    else:
        body = tvm.resnet50(weights=weights)
        in_channels = [512, 1024, 2048]
    if weights is not None:  # a pretrained backbone trains its last stages only (torchvision's rule)
        layers = 3 if trainable_layers is None else trainable_layers
        train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:layers]
        if layers == 5:
            train.append("bn1")
        for name, p in body.named_parameters():
            if all(not name.startswith(t) for t in train):
                p.requires_grad_(False)
    return bu.BackboneWithFPN(
        body,
        return_layers={"layer2": "0", "layer3": "1", "layer4": "2"},
        in_channels_list=in_channels,
        out_channels=spec.channels,
        extra_blocks=fpn.LastLevelP6P7(spec.channels, spec.channels),
    )


def _tower(channels: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for _ in range(convs):
        layers += [
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.GroupNorm(min(32, channels // 2), channels),
            nn.ReLU(inplace=True),
        ]
    return nn.Sequential(*layers)


def _per_anchor(t: torch.Tensor, anchors: int) -> torch.Tensor:
    """A head output ``(B, A·C, H, W)`` → ``(B, H·W·A, C)``: locations row by row, the ``A``
    anchors of a location next to each other (the order of :func:`anchor_boxes`)."""
    b, ac, h, w = t.shape
    c = int(ac) // anchors
    return t.reshape(b, anchors, c, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, c)


class OrientedHead(nn.Module):
    """Shared over the levels: per location and anchor (FCOS: one anchor, the location itself),
    ``num_classes`` logits and 6 or 7 regression outputs (centre offset 2, log size 2, angle vector
    2, and with ``centerness`` a centre-ness logit)."""

    def __init__(
        self, channels: int, num_classes: int, convs: int, *, anchors: int = 1, centerness: bool = True
    ) -> None:
        super().__init__()
        self.anchors = anchors
        self.cls_tower = _tower(channels, convs)
        self.reg_tower = _tower(channels, convs)
        self.cls_logits = nn.Conv2d(channels, anchors * num_classes, 3, padding=1)
        self.box = nn.Conv2d(channels, anchors * 4, 3, padding=1)
        self.angle = nn.Conv2d(channels, anchors * 2, 3, padding=1)
        self.centerness = nn.Conv2d(channels, anchors, 3, padding=1) if centerness else None
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.bias is not None:
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)
        assert self.cls_logits.bias is not None
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))  # prior 0.01

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Levels ``(B, C, H_l, W_l)`` → logits ``(B, L, K)`` and regression ``(B, L, 6 or 7)``, the
        ``L`` locations (× anchors) of all levels concatenated row by row."""
        logits, regs = [], []
        for f in features:
            c = self.cls_tower(f)
            r = self.reg_tower(f)
            logits.append(_per_anchor(self.cls_logits(c), self.anchors))
            parts = [self.box(r), self.angle(r)]
            if self.centerness is not None:
                parts.append(self.centerness(r))
            regs.append(torch.cat([_per_anchor(p, self.anchors) for p in parts], dim=2))
        return torch.cat(logits, 1), torch.cat(regs, 1)


def locations(sizes: list[tuple[int, int]], strides: tuple[int, ...] = STRIDES) -> tuple[torch.Tensor, ...]:
    """The centres of the feature map cells of each level, in input pixels: ``(L, 2)`` points,
    ``(L,)`` strides and ``(L,)`` level indices, levels concatenated row by row."""
    points, strides_out, levels = [], [], []
    for level, ((h, w), s) in enumerate(zip(sizes, strides, strict=True)):
        ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
        p = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).float() * s + s // 2
        points.append(p)
        strides_out.append(torch.full((h * w,), float(s)))
        levels.append(torch.full((h * w,), level, dtype=torch.long))
    return torch.cat(points), torch.cat(strides_out), torch.cat(levels)


def assign_targets(
    points: torch.Tensor,
    strides: torch.Tensor,
    levels: torch.Tensor,
    boxes: torch.Tensor,
    *,
    radius: float = CENTRE_RADIUS,
    ranges: tuple[tuple[float, float], ...] = LEVEL_RANGES,
) -> torch.Tensor:
    """The object each location learns: ``(L,)`` index into ``boxes`` ((M, 5) cx, cy, w, h, θ in
    input pixels), -1 for a negative. See the module docstring for the rule."""
    if boxes.numel() == 0:
        return torch.full((len(points),), -1, dtype=torch.long)
    d = points[:, None, :] - boxes[None, :, :2]  # (L, M, 2)
    cos, sin = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
    u = d[..., 0] * cos + d[..., 1] * sin  # along w
    v = -d[..., 0] * sin + d[..., 1] * cos  # along h
    hw, hh = boxes[:, 2] / 2, boxes[:, 3] / 2
    inside = (u.abs() <= hw) & (v.abs() <= hh)
    reach = radius * strides[:, None]
    central = (u.abs() <= reach) & (v.abs() <= reach)
    farthest = torch.maximum(hw + u.abs(), hh + v.abs())  # the largest centre-to-side distance
    lo = torch.tensor([r[0] for r in ranges], dtype=points.dtype)[levels][:, None]
    hi = torch.tensor([r[1] for r in ranges], dtype=points.dtype)[levels][:, None]
    on_level = (farthest >= lo) & (farthest <= hi)
    ok = inside & central & on_level
    area = (boxes[:, 2] * boxes[:, 3])[None, :].expand_as(ok)
    area = torch.where(ok, area, torch.full_like(area, math.inf))
    best_area, best = area.min(dim=1)
    return torch.where(torch.isfinite(best_area), best, torch.full_like(best, -1))


def centerness_target(points: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """FCOS's centre-ness of ``points`` (N, 2) in their boxes (N, 5), in the boxes' rotated frame."""
    d = points - boxes[:, :2]
    cos, sin = torch.cos(boxes[:, 4]), torch.sin(boxes[:, 4])
    u = d[:, 0] * cos + d[:, 1] * sin
    v = -d[:, 0] * sin + d[:, 1] * cos
    hw, hh = boxes[:, 2] / 2, boxes[:, 3] / 2
    lr = ((hw - u.abs()).clamp(min=0) / (hw + u.abs()).clamp(min=1e-6)).clamp(0, 1)
    tb = ((hh - v.abs()).clamp(min=0) / (hh + v.abs()).clamp(min=1e-6)).clamp(0, 1)
    return torch.sqrt(lr * tb)


# --- RetinaNet-style: anchors ----------------------------------------------------------------------


def anchor_shapes(
    size: float = ANCHOR_SIZE,
    scales: tuple[float, ...] = ANCHOR_SCALES,
    ratios: tuple[float, ...] = ANCHOR_RATIOS,
) -> torch.Tensor:
    """``(A, 2)`` anchor widths and heights in strides: for each height/width ratio ``r`` and each
    scale ``c``, area ``(size · c)²`` (torchvision's ``AnchorGenerator`` rule)."""
    out = [(size * c / math.sqrt(r), size * c * math.sqrt(r)) for r in ratios for c in scales]
    return torch.tensor(out, dtype=torch.float32)


def anchor_boxes(
    sizes: list[tuple[int, int]],
    shapes: torch.Tensor,
    strides: tuple[int, ...] = STRIDES,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Horizontal anchors ``(L·A, 4)`` (cx, cy, w, h in input pixels) centred on every location of
    :func:`locations`, the ``A`` ``shapes`` (in strides) of a location next to each other, and their
    levels ``(L·A,)``."""
    points, step, levels = locations(sizes, strides)
    a = len(shapes)
    centres = points[:, None, :].expand(-1, a, 2)
    wh = shapes[None, :, :] * step[:, None, None]
    return torch.cat([centres, wh], dim=2).reshape(-1, 4), levels.repeat_interleave(a)


def axis_aligned_bounds(boxes: torch.Tensor) -> torch.Tensor:
    """(M, 5) rotated boxes → (M, 4) their axis-aligned bounds (x1, y1, x2, y2)."""
    cos, sin = torch.cos(boxes[:, 4]).abs(), torch.sin(boxes[:, 4]).abs()
    hw = (boxes[:, 2] * cos + boxes[:, 3] * sin) / 2
    hh = (boxes[:, 2] * sin + boxes[:, 3] * cos) / 2
    return torch.stack([boxes[:, 0] - hw, boxes[:, 1] - hh, boxes[:, 0] + hw, boxes[:, 1] + hh], dim=1)


NEGATIVE, IGNORED = -1, -2


def assign_anchors(
    anchors: torch.Tensor,
    boxes: torch.Tensor,
    *,
    positive: float = POSITIVE_IOU,
    negative: float = NEGATIVE_IOU,
) -> torch.Tensor:
    """The object each anchor learns: ``(N,)`` index into ``boxes`` ((M, 5) cx, cy, w, h, θ), or
    ``NEGATIVE`` (-1) or ``IGNORED`` (-2), by RetinaNet's rule on the IoU of the (N, 4) horizontal
    ``anchors`` (cx, cy, w, h) with the objects' **axis-aligned bounds**: the object of highest IoU
    when it is ≥ ``positive``, a negative under ``negative``, ignored in between; and every object's
    best anchors (ties included, IoU > 0) are positives of it whatever their IoU, even when they
    overlap another object more (an anchor that is the best of several objects goes to the one it
    overlaps most), so that every object is learnt."""
    if boxes.numel() == 0:
        return torch.full((len(anchors),), NEGATIVE, dtype=torch.long)
    corners = torch.cat([anchors[:, :2] - anchors[:, 2:] / 2, anchors[:, :2] + anchors[:, 2:] / 2], dim=1)
    iou = box_iou(corners, axis_aligned_bounds(boxes))  # (N, M)
    best_iou, best = iou.max(dim=1)
    match = torch.where(best_iou >= positive, best, torch.full_like(best, IGNORED))
    match = torch.where(best_iou < negative, torch.full_like(best, NEGATIVE), match)
    per_object = iou.max(dim=0).values
    forced = (iou == per_object[None, :]) & (per_object[None, :] > 0)
    forced_iou, forced_obj = torch.where(forced, iou, torch.full_like(iou, -1.0)).max(dim=1)
    return torch.where(forced_iou >= 0, forced_obj, match)


def square_anchors(points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """FCOS's locations as anchors: ``(N, 4)`` (x, y, stride, stride), so that one encoding serves
    both families."""
    s = strides[:, None].to(points.dtype)
    return torch.cat([points, s, s], dim=1)


def encode_to_anchors(anchors: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 5) boxes → (N, 6) regression targets relative to their (N, 4) horizontal anchors (cx,
    cy, w, h): the centre offset in anchor widths and heights ``((cx - ax) / aw, (cy - ay) / ah)``,
    the log size ``(log(w / aw), log(h / ah))`` and ``(cos 2θ, sin 2θ)``."""
    wh = anchors[:, 2:4]
    offset = (boxes[:, :2] - anchors[:, :2]) / wh
    size = torch.log(boxes[:, 2:4].clamp(min=1e-3) / wh)
    angle = torch.stack([torch.cos(2 * boxes[:, 4]), torch.sin(2 * boxes[:, 4])], dim=1)
    return torch.cat([offset, size, angle], dim=1)


def decode_from_anchors(anchors: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """(…, N, ≥6) regression outputs of the (N, 4) anchors → (…, N, 5) boxes (cx, cy, w, h, θ), θ
    in [-π/2, π/2); leading dimensions (a batch) broadcast. The inverse of
    :func:`encode_to_anchors` up to the rectangle."""
    wh = anchors[:, 2:4]
    centre = anchors[:, :2] + reg[..., :2] * wh
    size = torch.exp(reg[..., 2:4].clamp(max=MAX_LOG_SIZE)) * wh
    theta = 0.5 * torch.atan2(reg[..., 5], reg[..., 4])
    theta = torch.where(theta >= math.pi / 2, theta - math.pi, theta)
    return torch.cat([centre, size, theta[..., None]], dim=-1)


def encode_boxes(points: torch.Tensor, strides: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(N, 5) boxes → (N, 6) FCOS regression targets of the (N, 2) ``points`` and (N,) ``strides``:
    offset (2) and log size (2) in strides, (cos 2θ, sin 2θ)."""
    return encode_to_anchors(square_anchors(points, strides), boxes)


def decode_boxes(points: torch.Tensor, strides: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """(…, N, ≥6) regression outputs of the (N, 2) ``points`` and (N,) ``strides`` → (…, N, 5) boxes
    (cx, cy, w, h, θ), θ in [-π/2, π/2); leading dimensions (a batch) broadcast."""
    return decode_from_anchors(square_anchors(points, strides), reg)


def box_losses(
    pred: torch.Tensor,
    target: torch.Tensor,
    *,
    square: float = SQUARE_ASPECT,
    anchor_aspect: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per positive location (or anchor), the box loss (offset and size) and the angle loss, both
    smooth L1.

    ``pred`` and ``target`` (N, 6) as :func:`encode_to_anchors` makes them, the target in either of
    its equivalent parameterisations; ``anchor_aspect`` (N,) is ``log(aw / ah)`` of each target's
    anchor (None: square anchors, FCOS's locations), what the log sizes of a rewritten ``(h, w, θ +
    π/2)`` target shift by. The size-and-angle part is measured against the target's long-edge form
    (``w`` the longer side: one form per rectangle, so the loss does not depend on how the target
    was written); for a near-square target (sides within ``square`` of each other, whose long edge
    is a matter of noise) it is the minimum over both forms. Returns two (N,) tensors."""
    d = target.new_zeros(len(target)) if anchor_aspect is None else anchor_aspect.to(target.dtype)
    offset = TF.smooth_l1_loss(pred[:, :2], target[:, :2], reduction="none", beta=1 / 9).sum(1)
    # (h, w, θ + π/2) relative to the same anchor: log(h / aw) = log(h / ah) − d, log(w / ah) = … + d
    swapped = torch.stack([target[:, 3] - d, target[:, 2] + d, -target[:, 4], -target[:, 5]], dim=1)
    log_ratio = target[:, 2] + d - target[:, 3]  # log(w / h)
    long_first = (log_ratio >= 0)[:, None]
    a = torch.where(long_first, target[:, 2:6], swapped)  # the long-edge form
    b = torch.where(long_first, swapped, target[:, 2:6])
    size_a = TF.smooth_l1_loss(pred[:, 2:4], a[:, :2], reduction="none", beta=1 / 9).sum(1)
    angle_a = TF.smooth_l1_loss(pred[:, 4:6], a[:, 2:], reduction="none", beta=1 / 9).sum(1)
    size_b = TF.smooth_l1_loss(pred[:, 2:4], b[:, :2], reduction="none", beta=1 / 9).sum(1)
    angle_b = TF.smooth_l1_loss(pred[:, 4:6], b[:, 2:], reduction="none", beta=1 / 9).sum(1)
    near_square = log_ratio.abs() <= math.log(square)
    first = ~near_square | (size_a + angle_a <= size_b + angle_b)
    size = torch.where(first, size_a, size_b)
    angle = torch.where(first, angle_a, angle_b)
    return offset + size, angle


def _dense_losses(
    logits: torch.Tensor,
    reg: torch.Tensor,
    cls_target: torch.Tensor,
    pred: list[torch.Tensor],
    target: list[torch.Tensor],
    *,
    valid: torch.Tensor | None = None,
    anchor_aspect: list[torch.Tensor] | None = None,
) -> tuple[dict[str, torch.Tensor], float]:
    """The losses both families share: the sigmoid focal loss of the class logits (``valid``: the
    ``(B, L)`` ones that count, all when None) and :func:`box_losses` of the positives (each
    image's regression outputs ``pred`` and targets ``target``), all normalised by the number of
    positives; also returns that number (at least 1)."""
    num_pos = max(1.0, float(sum(len(p) for p in pred)))
    if valid is None:
        loss_cls = sigmoid_focal_loss(logits, cls_target, reduction="sum") / num_pos
    else:
        loss_cls = sigmoid_focal_loss(logits[valid], cls_target[valid], reduction="sum") / num_pos
    if not pred:
        zero = reg.sum() * 0.0
        return {"loss_classifier": loss_cls, "loss_box_reg": zero, "loss_angle": zero}, num_pos
    aspect = torch.cat(anchor_aspect) if anchor_aspect else None
    box, angle = box_losses(torch.cat(pred)[:, :6], torch.cat(target), anchor_aspect=aspect)
    return {
        "loss_classifier": loss_cls,
        "loss_box_reg": box.sum() / num_pos,
        "loss_angle": ANGLE_WEIGHT * angle.sum() / num_pos,
    }, num_pos


class OrientedDetector(nn.Module):
    """What both families share: the backbone, the batch (:meth:`_batch`), the selection
    (:meth:`select`) and ``forward``; a family adds its head, :meth:`candidates` and
    :meth:`train_losses`.

    Training: ``model(images, targets)`` with ``images`` a list of (3, H, W) float tensors in 0..1
    and ``targets`` a list of ``{"boxes": (M, 5) cx, cy, w, h, θ in the image's pixels, "labels":
    (M,) class indices 0..K-1}`` → ``{name: loss}``. Evaluation: ``model(images)`` → a list of
    ``{"boxes": (N, 5), "scores": (N,), "labels": (N,)}`` in each image's pixels."""

    family: ClassVar[str]
    loss_names: ClassVar[tuple[str, ...]]  # the losses :meth:`train_losses` returns

    def __init__(
        self,
        spec: OrientedDetectorSpec,
        num_classes: int,
        *,
        image_size: int,
        score_threshold: float = 0.05,
        nms_iou: float = 0.3,
        detections_per_image: int = 100,
        weights: Any | None = None,
        trainable_backbone_layers: int | None = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.image_size = image_size
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.detections_per_image = detections_per_image
        self.backbone = _backbone(spec, weights, trainable_backbone_layers)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(3, 1, 1), persistent=False)

    def _batch(self, images: list[torch.Tensor]) -> tuple[torch.Tensor, list[float]]:
        """Resize each image to fit the input square (aspect kept), normalise, pad: ``(B, 3, S, S)``
        and each image's scale factor."""
        side = self.image_size
        batch = images[0].new_zeros((len(images), 3, side, side))
        scales = []
        for i, img in enumerate(images):
            h, w = img.shape[-2:]
            scale = side / max(h, w)
            nh, nw = max(1, min(side, round(h * scale))), max(1, min(side, round(w * scale)))
            x = TF.interpolate(img[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
            batch[i, :, :nh, :nw] = (x - self.mean) / self.std
            scales.append(scale)
        return batch, scales

    def features(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[tuple[int, int]]]:
        """The pyramid levels of a prepared batch and their ``(H, W)`` sizes."""
        features = list(self.backbone(x).values())
        return features, [(int(f.shape[-2]), int(f.shape[-1])) for f in features]

    def candidates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """A prepared ``(B, 3, S, S)`` batch → every candidate's decoded box ``(B, L, 5)`` (cx, cy,
        w, h, θ in the input square's pixels), its scores ``(B, L, K)`` and its level ``(L,)``: what
        an ONNX export computes."""
        raise NotImplementedError

    def train_losses(
        self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        """A prepared batch and its targets (in the batch's pixels) → the losses."""
        raise NotImplementedError

    def select(
        self, boxes: torch.Tensor, scores: torch.Tensor, levels: torch.Tensor, scales: list[float]
    ) -> list[Selection]:
        """:meth:`candidates` → each image's :class:`Selection` in its own pixels, by the selection
        exported models run too (``select_detections``)."""
        b = boxes.detach().float().cpu().numpy()
        s = scores.detach().float().cpu().numpy()
        lv = levels.detach().cpu().numpy()
        return [
            select_detections(
                b[i],
                s[i],
                lv,
                score_threshold=self.score_threshold,
                nms_iou=self.nms_iou,
                detections_per_image=self.detections_per_image,
                scale=scale,
            )
            for i, scale in enumerate(scales)
        ]

    def forward(
        self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]] | None = None
    ) -> Any:
        x, scales = self._batch(images)
        if self.training:
            if targets is None:
                raise ValueError("an oriented detector in training mode needs targets")
            scaled = [
                {"boxes": _scale_boxes(t["boxes"].to(x.device), s), "labels": t["labels"].to(x.device)}
                for t, s in zip(targets, scales, strict=True)
            ]
            return self.train_losses(x, scaled)
        with torch.no_grad():
            return _as_tensors(self.select(*self.candidates(x), scales), x.device)


class OrientedFCOS(OrientedDetector):
    """The FCOS-style oriented detector (see the module docstring)."""

    family = "fcos_obb"
    loss_names = LOSS_NAMES

    def __init__(self, spec: OrientedDetectorSpec, num_classes: int, **kwargs: Any) -> None:
        super().__init__(spec, num_classes, **kwargs)
        self.head = OrientedHead(spec.channels, num_classes, spec.head_convs)

    def dense(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A prepared ``(B, 3, S, S)`` batch → logits ``(B, L, K)``, regression ``(B, L, 7)`` and
        the locations' points ``(L, 2)``, strides ``(L,)`` and levels ``(L,)``."""
        features, sizes = self.features(x)
        logits, reg = self.head(features)
        points, strides, levels = locations(sizes)
        return logits, reg, points.to(x.device), strides.to(x.device), levels.to(x.device)

    def decode(
        self,
        logits: torch.Tensor,
        reg: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        levels: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`dense`'s outputs → boxes ``(B, L, 5)``, scores ``(B, L, K)`` = sqrt(sigmoid(class) ·
        sigmoid(centre-ness)) and levels ``(L,)``."""
        scores = torch.sqrt(torch.sigmoid(logits) * torch.sigmoid(reg[..., 6:7]))
        return decode_boxes(points, strides, reg), scores, levels

    def candidates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(*self.dense(x))

    def train_losses(
        self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return self.losses(*self.dense(x), targets)

    def losses(
        self,
        logits: torch.Tensor,
        reg: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        levels: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        cls_target = torch.zeros_like(logits)
        pos_pred, pos_target, pos_points, pos_boxes = [], [], [], []
        for b, t in enumerate(targets):
            boxes, labels = t["boxes"].float(), t["labels"].long()
            cpu = (points.cpu(), strides.cpu(), levels.cpu(), boxes.cpu())
            match = assign_targets(*cpu).to(logits.device)
            pos = match >= 0
            if not pos.any():
                continue
            obj = match[pos]
            cls_target[b, pos, labels[obj]] = 1.0
            pos_pred.append(reg[b, pos])
            pos_boxes.append(boxes[obj])
            pos_points.append(points[pos])
            pos_target.append(encode_boxes(points[pos], strides[pos], boxes[obj]))
        losses, num_pos = _dense_losses(logits, reg, cls_target, pos_pred, pos_target)
        if not pos_pred:
            return {**losses, "loss_centerness": losses["loss_box_reg"]}
        ctr = centerness_target(torch.cat(pos_points), torch.cat(pos_boxes))
        pred_ctr = torch.cat(pos_pred)[:, 6]
        loss_ctr = TF.binary_cross_entropy_with_logits(pred_ctr, ctr, reduction="sum") / num_pos
        return {**losses, "loss_centerness": loss_ctr}

    @torch.no_grad()
    def postprocess(
        self,
        logits: torch.Tensor,
        reg: torch.Tensor,
        points: torch.Tensor,
        strides: torch.Tensor,
        levels: torch.Tensor,
        scales: list[float],
    ) -> list[dict[str, torch.Tensor]]:
        """The head's raw outputs (:meth:`dense`) → each image's detections in its pixels."""
        decoded = self.decode(logits, reg, points, strides, levels)
        return _as_tensors(self.select(*decoded, scales), logits.device)


class OrientedRetinaNet(OrientedDetector):
    """The RetinaNet-style oriented detector (see the module docstring): ``A`` horizontal anchors
    per location, scores sigmoid(class)."""

    family = "retina_obb"
    loss_names = tuple(n for n in LOSS_NAMES if n != "loss_centerness")  # no centre-ness branch

    def __init__(self, spec: OrientedDetectorSpec, num_classes: int, **kwargs: Any) -> None:
        super().__init__(spec, num_classes, **kwargs)
        self.shapes: torch.Tensor
        self.register_buffer(
            "shapes",
            anchor_shapes(spec.anchor_size, spec.anchor_scales, spec.anchor_ratios),
            persistent=False,
        )
        self.head = OrientedHead(
            spec.channels, num_classes, spec.head_convs, anchors=len(self.shapes), centerness=False
        )

    def dense(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """A prepared ``(B, 3, S, S)`` batch → logits ``(B, N, K)``, regression ``(B, N, 6)``, the
        anchors ``(N, 4)`` and their levels ``(N,)``."""
        features, sizes = self.features(x)
        logits, reg = self.head(features)
        anchors, levels = anchor_boxes(sizes, self.shapes.cpu())
        return logits, reg, anchors.to(x.device), levels.to(x.device)

    def decode(
        self, logits: torch.Tensor, reg: torch.Tensor, anchors: torch.Tensor, levels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`dense`'s outputs → boxes ``(B, N, 5)``, scores ``(B, N, K)`` = sigmoid(class) and
        levels ``(N,)``."""
        return decode_from_anchors(anchors, reg), torch.sigmoid(logits), levels

    def candidates(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.decode(*self.dense(x))

    def train_losses(
        self, x: torch.Tensor, targets: list[dict[str, torch.Tensor]]
    ) -> dict[str, torch.Tensor]:
        return self.losses(*self.dense(x), targets)

    def losses(
        self,
        logits: torch.Tensor,
        reg: torch.Tensor,
        anchors: torch.Tensor,
        levels: torch.Tensor,
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        cls_target = torch.zeros_like(logits)
        valid = torch.ones(logits.shape[:2], dtype=torch.bool, device=logits.device)
        pos_pred, pos_target, pos_aspect = [], [], []
        for b, t in enumerate(targets):
            boxes, labels = t["boxes"].float(), t["labels"].long()
            match = assign_anchors(anchors.cpu(), boxes.cpu()).to(logits.device)
            valid[b] = match != IGNORED
            pos = match >= 0
            if not pos.any():
                continue
            obj = match[pos]
            cls_target[b, pos, labels[obj]] = 1.0
            pos_pred.append(reg[b, pos])
            pos_target.append(encode_to_anchors(anchors[pos], boxes[obj]))
            pos_aspect.append(torch.log(anchors[pos, 2] / anchors[pos, 3]))
        losses, _ = _dense_losses(
            logits, reg, cls_target, pos_pred, pos_target, valid=valid, anchor_aspect=pos_aspect
        )
        return losses

    @torch.no_grad()
    def postprocess(
        self,
        logits: torch.Tensor,
        reg: torch.Tensor,
        anchors: torch.Tensor,
        levels: torch.Tensor,
        scales: list[float],
    ) -> list[dict[str, torch.Tensor]]:
        """The head's raw outputs (:meth:`dense`) → each image's detections in its pixels."""
        return _as_tensors(self.select(*self.decode(logits, reg, anchors, levels), scales), logits.device)


FAMILIES: dict[str, type[OrientedDetector]] = {"fcos_obb": OrientedFCOS, "retina_obb": OrientedRetinaNet}


def _as_tensors(selections: list[Selection], device: torch.device) -> list[dict[str, torch.Tensor]]:
    """Selections → ``{"boxes": (N, 5) float32, "scores": (N,), "labels": (N,) int64}`` tensors."""
    return [
        {
            "boxes": torch.from_numpy(sel.boxes.astype(np.float32)).reshape(-1, 5).to(device),
            "scores": torch.from_numpy(sel.scores).to(device),
            "labels": torch.from_numpy(sel.labels).to(device),
        }
        for sel in selections
    ]


def _scale_boxes(boxes: torch.Tensor, scale: float) -> torch.Tensor:
    """(N, 5) boxes with their centre and size multiplied by ``scale`` (the angle unchanged)."""
    return torch.cat([boxes[:, :4] * scale, boxes[:, 4:5]], dim=1) if len(boxes) else boxes.reshape(0, 5)


def build_oriented_detector(
    name: str,
    num_classes: int,
    *,
    image_size: int,
    pretrained: str = "none",
    score_threshold: float = 0.05,
    nms_iou: float = 0.3,
    detections_per_image: int = 100,
    trainable_backbone_layers: int | None = None,
    weights: WeightsPolicy | None = None,
) -> tuple[OrientedDetector, ModelInfo]:
    """A catalog oriented detector for ``num_classes`` project classes. A trained one is rebuilt
    with ``pretrained="none"`` and its checkpoint loaded over it."""
    if num_classes < 1:
        raise BadRequest("a detector needs at least one class")
    spec = get_oriented_spec(name)
    if trainable_backbone_layers is not None and not 0 <= trainable_backbone_layers <= 5:
        raise BadRequest(f"trainable_backbone_layers must be 0..5 for {spec.name}", details={"model": name})
    chosen = _ensure_weights(spec, pretrained, weights)
    model = FAMILIES[spec.family](
        spec,
        num_classes,
        image_size=image_size,
        score_threshold=score_threshold,
        nms_iou=nms_iou,
        detections_per_image=detections_per_image,
        weights=chosen,
        trainable_backbone_layers=trainable_backbone_layers,
    )
    info = ModelInfo(
        name=name,
        num_classes=num_classes,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        pretrained=str(chosen) if chosen is not None else None,
        extra={"image_size": image_size, "masks": False, "family": spec.family, "oriented": True},
    )
    return model, info


def rebuild_oriented(meta: dict[str, Any]) -> nn.Module:
    """The untrained oriented detector a checkpoint's ``meta`` describes (never downloads)."""
    config = meta.get("config") or {}
    model, _ = build_oriented_detector(
        meta["model"],
        len(meta["classes"]),
        image_size=int(config.get("image_size") or meta["preprocess"]["input_size"][0]),
        pretrained="none",
        score_threshold=float(config.get("score_threshold", 0.05)),
        nms_iou=float(config.get("nms_iou", 0.3)),
        detections_per_image=int(config.get("detections_per_image", 100)),
    )
    return model


def to_sample_pixels(
    output: dict[str, torch.Tensor], *, input_size: tuple[int, int], original_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """One image's output (boxes in the pixels of the decoded image, ``input_size`` (w, h)) →
    ``{"boxes": (N, 5), "corners": (N, 4, 2), "scores", "labels"}`` in the sample's pixels
    (``original_size`` (w, h)); a decoded image of another aspect ratio moves the corners."""
    boxes, corners = to_original(
        output["boxes"].detach().double().cpu().numpy(), input_size=input_size, original_size=original_size
    )
    return {
        "boxes": boxes,
        "corners": corners,
        "scores": output["scores"].detach().float().cpu().numpy().reshape(-1),
        "labels": output["labels"].detach().cpu().numpy().astype(np.int64).reshape(-1),
    }
